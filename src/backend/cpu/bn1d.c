/* Batch norm over the rows of a row-major [n, d] f32 matrix with statistics the caller may
 * all-reduce across ranks (the projector's synchronised BN): local sums, the normalisation, and
 * the backward's local sums and apply step. Threads take blocks of columns; sums are kept in
 * double so that Σx² - N mean² stays accurate for the caller. */
#include "backend/cpu/cpu.h"

enum { BLK = 64 };

/* sums[j] = Σ_i x[i, j], sums[d + j] = Σ_i x[i, j]² (=). */
void tw_cpu_bn1d_sums(tw_backend *be, float *sums, const float *x, int n, int d) {
    (void)be;
    int n_blk = (d + BLK - 1) / BLK;
#pragma omp parallel for schedule(static)
    for (int jb = 0; jb < n_blk; jb++) {
        int j0 = jb * BLK, j1 = j0 + BLK < d ? j0 + BLK : d;
        double s1[BLK] = {0}, s2[BLK] = {0};
        for (int i = 0; i < n; i++) {
            const float *r = x + (size_t)i * d;
#pragma omp simd
            for (int j = j0; j < j1; j++) {
                double v = r[j];
                s1[j - j0] += v;
                s2[j - j0] += v * v;
            }
        }
        for (int j = j0; j < j1; j++) {
            sums[j] = (float)s1[j - j0];
            sums[d + j] = (float)s2[j - j0];
        }
    }
}

/* y = gamma (x - mean) inv_std + beta, then relu when asked; gamma/beta NULL: 1 and 0. */
void tw_cpu_bn1d_forward(tw_backend *be, float *y, const float *x, const float *mean,
                         const float *inv_std, const float *gamma, const float *beta, int n,
                         int d, int relu) {
    (void)be;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *yi = y + (size_t)i * d;
#pragma omp simd
        for (int j = 0; j < d; j++) {
            float g = gamma ? gamma[j] : 1.0f, b = beta ? beta[j] : 0.0f;
            float v = g * (xi[j] - mean[j]) * inv_std[j] + b;
            yi[j] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

/* sums[j] = Σ_i dy'[i, j], sums[d + j] = Σ_i dy'[i, j] x̂[i, j] (=), dy' = dy (y > 0 when relu). */
void tw_cpu_bn1d_backward_sums(tw_backend *be, float *sums, const float *dy, const float *y,
                               const float *x, const float *mean, const float *inv_std, int n,
                               int d, int relu) {
    (void)be;
    TW_ASSERT(!relu || y);
    int n_blk = (d + BLK - 1) / BLK;
#pragma omp parallel for schedule(static)
    for (int jb = 0; jb < n_blk; jb++) {
        int j0 = jb * BLK, j1 = j0 + BLK < d ? j0 + BLK : d;
        double s1[BLK] = {0}, s2[BLK] = {0};
        for (int i = 0; i < n; i++) {
            const float *dyi = dy + (size_t)i * d, *xi = x + (size_t)i * d;
            const float *yi = y ? y + (size_t)i * d : NULL;
#pragma omp simd
            for (int j = j0; j < j1; j++) {
                float g = relu && !(yi[j] > 0.0f) ? 0.0f : dyi[j];
                float xh = (xi[j] - mean[j]) * inv_std[j];
                s1[j - j0] += g;
                s2[j - j0] += (double)g * xh;
            }
        }
        for (int j = j0; j < j1; j++) {
            sums[j] = (float)s1[j - j0];
            sums[d + j] = (float)s2[j - j0];
        }
    }
}

/* dx = gamma inv_std (dy' - Σdy'/N - x̂ Σdy'x̂/N) (=), N = n_global (Ioffe & Szegedy 2015, the
 * gradient of torch.nn.BatchNorm1d in training mode). */
void tw_cpu_bn1d_backward_apply(tw_backend *be, float *dx, const float *dy, const float *y,
                                const float *x, const float *mean, const float *inv_std,
                                const float *gamma, const float *global_sums, float n_global,
                                int n, int d, int relu) {
    (void)be;
    TW_ASSERT(!relu || y);
    const float inv_n = 1.0f / n_global;
    const float *s1 = global_sums, *s2 = global_sums + d;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *dyi = dy + (size_t)i * d, *xi = x + (size_t)i * d;
        const float *yi = y ? y + (size_t)i * d : NULL;
        float *dxi = dx + (size_t)i * d;
#pragma omp simd
        for (int j = 0; j < d; j++) {
            float g = relu && !(yi[j] > 0.0f) ? 0.0f : dyi[j];
            float xh = (xi[j] - mean[j]) * inv_std[j];
            float gm = gamma ? gamma[j] : 1.0f;
            dxi[j] = gm * inv_std[j] * (g - s1[j] * inv_n - xh * s2[j] * inv_n);
        }
    }
}
