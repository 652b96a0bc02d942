/* Element-wise ops on tensors of equal shape, dtype and layout: y = relu(a + b), y = a + b and
 * dx = dy * (y > 0). They walk the whole buffer, channel padding included: padding is zero in
 * every operand and each op maps zeros to zero, so it stays zero. Each thread runs a plain loop
 * over its slice, compiled for AVX-512, AVX2 and the baseline and picked at load time
 * (target_clones); bf16 is widened to f32 and rounded back to nearest even. */
#include <omp.h>
#include <stdint.h>

#include "backend/cpu/cpu.h"
#include "core/dtype.h"

/* The loops are memory-bound in f32, but the bf16 widening and rounding are integer work that
 * runs 2-4x faster on 256/512-bit vectors than on the SSE2 baseline the project compiles for. */
#define TW_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

static size_t n_elems(const tw_tensor *t) { return tw_tensor_bytes(t) / tw_dtype_size(t->dtype); }


enum { OP_ADD_RELU, OP_ADD, OP_RELU_BWD };

TW_CLONES static void run_f32(int op, float *y, const float *a,
                              const float *b, long n) {
    if (op == OP_ADD_RELU) {
        for (long i = 0; i < n; i++) {
            float s = a[i] + b[i];
            y[i] = s > 0.0f ? s : 0.0f;
        }
    } else if (op == OP_ADD) {
        for (long i = 0; i < n; i++) y[i] = a[i] + b[i];
    } else {   /* a = dy, b = y; dy is loaded unconditionally so that the select vectorises */
        for (long i = 0; i < n; i++) {
            float g = a[i];
            y[i] = b[i] > 0.0f ? g : 0.0f;
        }
    }
}

TW_CLONES static void run_bf16(int op, uint16_t *y, const uint16_t *a,
                               const uint16_t *b, long n) {
    if (op == OP_ADD_RELU) {
        for (long i = 0; i < n; i++) {
            float s = tw_bf16_to_f32(a[i]) + tw_bf16_to_f32(b[i]);
            y[i] = tw_f32_to_bf16(s > 0.0f ? s : 0.0f);
        }
    } else if (op == OP_ADD) {
        for (long i = 0; i < n; i++) y[i] = tw_f32_to_bf16(tw_bf16_to_f32(a[i]) + tw_bf16_to_f32(b[i]));
    } else {
        /* Selecting the bf16 bits needs no rounding: y > 0 iff its bits are in (0, 0x7f80]
         * (+0, negatives and NaN are not positive, as the f32 comparison has it). */
        for (long i = 0; i < n; i++) {
            uint16_t v = b[i], g = a[i];
            y[i] = (v != 0 && v < 0x7f81u) ? g : 0;
        }
    }
}

/* y may be a or b (in place, as src/loss's y += s does): no restrict, GCC checks the overlap at
 * run time and still vectorises. The dispatch (backend.c) checked that the three tensors agree. */
static void run(int op, tw_tensor *y, const tw_tensor *a, const tw_tensor *b) {
    const long n = (long)n_elems(y);
    const int is_f32 = y->dtype == TW_F32;
#pragma omp parallel
    {
        /* Contiguous slices, 64-byte aligned at both ends (32 elements cover either dtype). */
        long nt = omp_get_num_threads(), t = omp_get_thread_num();
        long chunk = (n + nt - 1) / nt;
        chunk = (chunk + 31) / 32 * 32;
        long i0 = t * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
        if (i0 < i1) {
            if (is_f32)
                run_f32(op, (float *)y->data + i0, (const float *)a->data + i0,
                        (const float *)b->data + i0, i1 - i0);
            else
                run_bf16(op, (uint16_t *)y->data + i0, (const uint16_t *)a->data + i0,
                         (const uint16_t *)b->data + i0, i1 - i0);
        }
    }
}

void tw_cpu_add_relu_forward(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b) {
    (void)be;
    run(OP_ADD_RELU, y, a, b);
}

void tw_cpu_add(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b) {
    (void)be;
    run(OP_ADD, y, a, b);
}

void tw_cpu_relu_backward(tw_backend *be, tw_tensor *dx, const tw_tensor *dy, const tw_tensor *y) {
    (void)be;
    run(OP_RELU_BWD, dx, dy, y);
}
