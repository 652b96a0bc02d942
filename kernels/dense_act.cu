/* Kernels of the f32 element-wise activations on rows (src/backend/cuda/dense_act.c): ReLU,
 * sigmoid and the gated blend with their backwards. */
#include "kcommon.cuh"

/* op: 0 relu, 1 relu backward, 2 sigmoid, 3 sigmoid backward. */
__global__ void act_kernel(int op, float *out, const float *a, const float *b, size_t n) {
    for (size_t i = tw_gtid(); i < n; i += tw_gstride()) {
        float v = a[i];
        if (op == 0) {
            out[i] = v > 0.f ? v : (v != v ? v : 0.f);
        } else if (op == 1) {
            out[i] = b[i] > 0.f ? v : 0.f;
        } else if (op == 2) {
            float e = expf(-fabsf(v));
            out[i] = v >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
        } else {
            out[i] = v * b[i] * (1.f - b[i]);
        }
    }
}

extern "C" cudaError_t tw_k_act(cudaStream_t s, unsigned grid, int op, float *out, const float *a,
                                const float *b, size_t n_elems) {
    act_kernel<<<grid, TW_K_THREADS, 0, s>>>(op, out, a, b, n_elems);
    return cudaGetLastError();
}

__global__ void blend_kernel(float *y, const float *g, const float *a, const float *b, size_t n) {
    for (size_t i = tw_gtid(); i < n; i += tw_gstride()) y[i] = g[i] * a[i] + (1.f - g[i]) * b[i];
}

__global__ void blend_backward_kernel(float *dg, float *da, float *db, const float *dy,
                                      const float *g, const float *a, const float *b, size_t n) {
    for (size_t i = tw_gtid(); i < n; i += tw_gstride()) {
        float d = dy[i], gi = g[i];
        dg[i] = d * (a[i] - b[i]);
        da[i] = d * gi;
        db[i] = d * (1.f - gi);
    }
}

extern "C" cudaError_t tw_k_blend(cudaStream_t s, unsigned grid, float *y, const float *g,
                                  const float *a, const float *b, size_t n_elems) {
    blend_kernel<<<grid, TW_K_THREADS, 0, s>>>(y, g, a, b, n_elems);
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_blend_backward(cudaStream_t s, unsigned grid, float *dg, float *da,
                                           float *db, const float *dy, const float *g,
                                           const float *a, const float *b, size_t n_elems) {
    blend_backward_kernel<<<grid, TW_K_THREADS, 0, s>>>(dg, da, db, dy, g, a, b, n_elems);
    return cudaGetLastError();
}
