/* Element-wise activations on f32 rows, the companions of dense.c's GEMM and bias in the
 * classification heads: ReLU, sigmoid and the gated fusion's blend, with their backwards. Plain
 * OpenMP loops; activations on (possibly blocked) tensors are eltwise.c's. */
#include <math.h>

#include "backend/cpu/cpu.h"

void tw_cpu_relu_forward_f32(tw_backend *be, float *y, const float *x, size_t n_elems) {
    (void)be;
    const long n = (long)n_elems;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v > 0.0f ? v : (v != v ? v : 0.0f);   /* NaN stays NaN, as torch's relu */
    }
}

void tw_cpu_relu_backward_f32(tw_backend *be, float *dx, const float *dy, const float *y,
                              size_t n_elems) {
    (void)be;
    const long n = (long)n_elems;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float d = dy[i];
        dx[i] = y[i] > 0.0f ? d : 0.0f;
    }
}

void tw_cpu_sigmoid_forward(tw_backend *be, float *y, const float *x, size_t n_elems) {
    (void)be;
    const long n = (long)n_elems;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        /* e^-|x| never overflows; the two branches are the same function (torch's form). */
        float v = x[i], e = expf(-fabsf(v));
        y[i] = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}

void tw_cpu_sigmoid_backward(tw_backend *be, float *dx, const float *dy, const float *y,
                             size_t n_elems) {
    (void)be;
    const long n = (long)n_elems;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

void tw_cpu_blend_forward(tw_backend *be, float *y, const float *g, const float *a,
                          const float *b, size_t n_elems) {
    (void)be;
    const long n = (long)n_elems;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) y[i] = g[i] * a[i] + (1.0f - g[i]) * b[i];
}

void tw_cpu_blend_backward(tw_backend *be, float *dg, float *da, float *db, const float *dy,
                           const float *g, const float *a, const float *b, size_t n_elems) {
    (void)be;
    const long n = (long)n_elems;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float d = dy[i], gi = g[i];
        dg[i] = d * (a[i] - b[i]);
        da[i] = d * gi;
        db[i] = d * (1.0f - gi);
    }
}
