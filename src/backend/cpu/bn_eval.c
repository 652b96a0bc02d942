/* Batch norm frozen in inference mode, backward (a fine-tuned backbone's BN under trained
 * layers) on the CPU backend, in every activation layout and dtype. Plain loops, OpenMP threads;
 * the training-mode batch norm is oneDNN's (bn.c), the synchronised one bn_sync.c's. */
#include <math.h>
#include <omp.h>
#include <stdint.h>

#include "backend/cpu/cpu.h"
#include "core/dtype.h"

static inline float ld(const void *p, size_t i, int is_bf16) {
    return is_bf16 ? tw_bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

void tw_cpu_bn_backward_eval(tw_backend *be, tw_tensor *dx, float *dgamma, float *dbeta,
                             const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y,
                             const float *gamma, const float *run_mean, const float *run_var,
                             float eps, int relu) {
    (void)be;   /* the shapes were checked by the dispatch (backend.c) */
    const tw_cpu_geom g = tw_cpu_geom_of(dx);
    const int is_bf16 = dx->dtype == TW_BF16;
    const void *dyp = dy->data, *xp = x->data, *yp = relu ? y->data : NULL;
    /* dx: one (n, channel block) plane per iteration. */
    const long n_planes = (long)g.n * g.n_blk;
#pragma omp parallel for schedule(static)
    for (long pl = 0; pl < n_planes; pl++) {
        int cb = (int)(pl % g.n_blk);
        size_t base = (size_t)pl * g.hw * g.blk;
        for (size_t s = 0; s < g.hw; s++)
            for (int k = 0; k < g.blk; k++) {
                int c = cb * g.blk + k;
                size_t i = base + s * g.blk + k;
                float v = 0.0f;
                if (c < g.c) {
                    float d = ld(dyp, i, is_bf16);
                    if (relu && !(ld(yp, i, is_bf16) > 0.0f)) d = 0.0f;
                    v = gamma[c] / sqrtf(run_var[c] + eps) * d;
                }
                if (is_bf16) ((uint16_t *)dx->data)[i] = tw_f32_to_bf16(v);
                else ((float *)dx->data)[i] = v;
            }
    }
    if (!dgamma) return;
    /* The weight gradients: each thread owns a contiguous channel range and sums each of its
     * channels over (n, h, w) in one fixed order, in double, so the result does not depend on
     * the thread count. The range is walked a pixel at a time (the channels of a pixel are
     * contiguous in every blocked layout), so each cache line is read once. */
    TW_ASSERT(g.c <= 4096);
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int c0 = (int)((long)g.c * t / nt), c1 = (int)((long)g.c * (t + 1) / nt);
        double sdy[c1 > c0 ? c1 - c0 : 1], sdyx[c1 > c0 ? c1 - c0 : 1];
        for (int c = c0; c < c1; c++) sdy[c - c0] = sdyx[c - c0] = 0.0;
        for (int n = 0; n < g.n && c0 < c1; n++)
            for (int cb = c0 / g.blk; cb <= (c1 - 1) / g.blk; cb++) {
                int k0 = c0 > cb * g.blk ? c0 - cb * g.blk : 0;
                int k1 = c1 < (cb + 1) * g.blk ? c1 - cb * g.blk : g.blk;
                size_t base = ((size_t)n * g.n_blk + cb) * g.hw * g.blk;
                for (size_t s = 0; s < g.hw; s++)
                    for (int k = k0; k < k1; k++) {
                        size_t i = base + s * g.blk + k;
                        int c = cb * g.blk + k;
                        if (relu && !(ld(yp, i, is_bf16) > 0.0f)) continue;
                        double d = ld(dyp, i, is_bf16);
                        sdy[c - c0] += d;
                        sdyx[c - c0] += d * ((double)ld(xp, i, is_bf16) - run_mean[c]);
                    }
            }
        for (int c = c0; c < c1; c++) {
            dbeta[c] = (float)sdy[c - c0];
            dgamma[c] = (float)(sdyx[c - c0] / sqrt((double)run_var[c] + (double)eps));
        }
    }
}
