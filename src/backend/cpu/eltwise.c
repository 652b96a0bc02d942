/* Element-wise ops on tensors of equal shape, dtype and layout: y = relu(a + b), y = a + b and
 * dx = dy * (y > 0). They walk the whole buffer, channel padding included: padding is zero in
 * every operand and each op maps zeros to zero, so it stays zero. OpenMP over plain loops that
 * GCC vectorises; bf16 is widened to f32 and rounded back to nearest even. */
#include <omp.h>
#include <stdint.h>

#include "backend/cpu/cpu.h"

static size_t n_elems(const tw_tensor *t) { return tw_tensor_bytes(t) / tw_dtype_size(t->dtype); }

static void check_same(const tw_tensor *a, const tw_tensor *b) {
    TW_ASSERT(a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w);
    TW_ASSERT(a->dtype == b->dtype && a->layout == b->layout);
    TW_ASSERT(a->dtype == TW_F32 || a->dtype == TW_BF16);
}

static inline float bf(uint16_t v) {
    union { uint32_t u; float f; } c = {(uint32_t)v << 16};
    return c.f;
}

/* tw_f32_to_bf16 (round to nearest even, NaN kept a NaN) written without a branch so that the
 * loops vectorise. */
static inline uint16_t to_bf(float f) {
    union { float f; uint32_t u; } c = {f};
    uint32_t u = c.u;
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x40u;
    return (uint16_t)(((u & 0x7fffffffu) > 0x7f800000u) ? nan : rounded);
}

void tw_cpu_add_relu_forward(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b) {
    (void)be;
    check_same(y, a);
    check_same(y, b);
    long n = (long)n_elems(y);
    if (y->dtype == TW_F32) {
        float *py = y->data;
        const float *pa = a->data, *pb = b->data;
#pragma omp parallel for simd schedule(static)
        for (long i = 0; i < n; i++) {
            float s = pa[i] + pb[i];
            py[i] = s > 0.0f ? s : 0.0f;
        }
    } else {
        uint16_t *py = y->data;
        const uint16_t *pa = a->data, *pb = b->data;
#pragma omp parallel for simd schedule(static)
        for (long i = 0; i < n; i++) {
            float s = bf(pa[i]) + bf(pb[i]);
            py[i] = to_bf(s > 0.0f ? s : 0.0f);
        }
    }
}

void tw_cpu_add(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b) {
    (void)be;
    check_same(y, a);
    check_same(y, b);
    long n = (long)n_elems(y);
    if (y->dtype == TW_F32) {
        float *py = y->data;
        const float *pa = a->data, *pb = b->data;
#pragma omp parallel for simd schedule(static)
        for (long i = 0; i < n; i++) py[i] = pa[i] + pb[i];
    } else {
        uint16_t *py = y->data;
        const uint16_t *pa = a->data, *pb = b->data;
#pragma omp parallel for simd schedule(static)
        for (long i = 0; i < n; i++) py[i] = to_bf(bf(pa[i]) + bf(pb[i]));
    }
}

void tw_cpu_relu_backward(tw_backend *be, tw_tensor *dx, const tw_tensor *dy, const tw_tensor *y) {
    (void)be;
    check_same(dx, dy);
    check_same(dx, y);
    long n = (long)n_elems(dx);
    if (dx->dtype == TW_F32) {
        float *pdx = dx->data;
        const float *pdy = dy->data, *py = y->data;
#pragma omp parallel for simd schedule(static)
        for (long i = 0; i < n; i++) {
            float g = pdy[i];   /* loaded unconditionally, so that the select vectorises */
            pdx[i] = py[i] > 0.0f ? g : 0.0f;
        }
    } else {
        /* Selecting the bf16 bits needs no rounding: y > 0 iff its sign bit is clear and it is
         * not +0 (NaN y is treated as not positive, as the f32 comparison does). */
        uint16_t *pdx = dx->data;
        const uint16_t *pdy = dy->data, *py = y->data;
#pragma omp parallel for simd schedule(static)
        for (long i = 0; i < n; i++) {
            uint16_t v = py[i], g = pdy[i];
            pdx[i] = (v != 0 && v < 0x7f81u) ? g : 0;
        }
    }
}
