/* Batch norm with its statistics computed outside, on the CPU backend (backend.h: tw_bn_sums,
 * tw_bn_stats_finish, tw_bn_forward_stats, tw_bn_backward_sums, tw_bn_backward_stats,
 * tw_bn_running_update): the synchronised BN (the projector's rows, and the backbone's with
 * model.backbone_bn: sync) takes this rank's sums from here, all-reduces them and normalises with
 * the global statistics. oneDNN's batch norm cannot take the global sums of the backward, so these
 * are plain loops over every activation layout (cpu.h: tw_cpu_geom) and dtype, OpenMP threads.
 * Each channel's sums are kept in double and added by one thread in one fixed order, so they do
 * not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/dtype.h"


/* The plain loops below run 2-4x faster on 256/512-bit vectors than on the SSE2 baseline the
 * project compiles for: compiled for AVX-512, AVX2 and the baseline, picked at load time (as
 * eltwise.c). They work on f32; bf16 data is widened a chunk at a time into stack buffers first
 * (and the output narrowed back), so that one loop serves both dtypes and vectorises. */
#define TW_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

enum { CHUNK = 4096 };   /* f32 values per widened bf16 chunk: a row of up to 4096 channels */

TW_CLONES static void widen(float *restrict dst, const uint16_t *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = tw_bf16_to_f32(src[i]);
}

TW_CLONES static void narrow(uint16_t *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = tw_f32_to_bf16(src[i]);
}

/* a[k], b[k] += the two sums over n_rows rows of blk channels, k in [k0, k1): grad 0,
 * v = x - ref[k]: v and v²; grad 1, d = dy' (dy where y > 0 when relu): d and d (x - ref[k]).
 * blk 1 (an NCHW plane: one channel): a[0], b[0]. */
TW_CLONES static void rows_sums(double *restrict a, double *restrict b, int grad, const float *restrict x,
                                const float *restrict dy, const float *restrict y, const float *ref,
                                size_t n_rows, int blk, int k0, int k1, int relu) {
    if (blk == 1) {
        double sa = 0.0, sb = 0.0, r = ref[0];
        if (!grad) {
#pragma omp simd reduction(+ : sa, sb)
            for (size_t s = 0; s < n_rows; s++) {
                double v = (double)x[s] - r;
                sa += v;
                sb += v * v;
            }
        } else {
#pragma omp simd reduction(+ : sa, sb)
            for (size_t s = 0; s < n_rows; s++) {
                double g = dy[s];   /* loaded unconditionally so that the select vectorises */
                double d = relu && !(y[s] > 0.0f) ? 0.0 : g;
                sa += d;
                sb += d * ((double)x[s] - r);
            }
        }
        a[0] += sa;
        b[0] += sb;
        return;
    }
    for (size_t s = 0; s < n_rows; s++) {
        const float *xr = x + s * (size_t)blk, *dyr = dy + s * (size_t)blk, *yr = y + s * (size_t)blk;
        if (!grad) {
#pragma omp simd
            for (int k = k0; k < k1; k++) {
                double v = (double)xr[k] - ref[k];
                a[k] += v;
                b[k] += v * v;
            }
        } else {
#pragma omp simd
            for (int k = k0; k < k1; k++) {
                double g = dyr[k];
                double d = relu && !(yr[k] > 0.0f) ? 0.0 : g;
                a[k] += d;
                b[k] += d * ((double)xr[k] - ref[k]);
            }
        }
    }
}

/* rows_sums over one image's channel block: hw rows of blk values from element base of each
 * tensor (dy, y unused unless grad), widened from bf16 a chunk of rows at a time. */
static void block_sums(double *a, double *b, int grad, const void *xp, const void *dyp, const void *yp,
                       const float *ref, size_t base, size_t hw, int blk, int k0, int k1, int relu,
                       int is_bf16) {
    if (!is_bf16) {
        rows_sums(a, b, grad, (const float *)xp + base, grad ? (const float *)dyp + base : NULL,
                  grad ? (const float *)yp + base : NULL, ref, hw, blk, k0, k1, relu);
        return;
    }
    float x[CHUNK], dy[CHUNK], y[CHUNK];
    size_t rows = CHUNK / (size_t)blk;
    TW_ASSERT(rows > 0);   /* bf16 rows up to CHUNK channels (activations: 512 at most) */
    for (size_t s0 = 0; s0 < hw; s0 += rows) {
        size_t n = (s0 + rows < hw ? rows : hw - s0), off = base + s0 * (size_t)blk, len = n * (size_t)blk;
        widen(x, (const uint16_t *)xp + off, len);
        if (grad) widen(dy, (const uint16_t *)dyp + off, len);
        if (grad && relu) widen(y, (const uint16_t *)yp + off, len);
        rows_sums(a, b, grad, x, dy, y, ref, n, blk, k0, k1, relu);
    }
}

/* s1[c], s2[c] = the two sums of channel c over (n, h, w), for every channel (=). A thread owns a
 * contiguous channel range and walks it a pixel at a time (a pixel's channels are contiguous in
 * the blocked layouts), or a plane at a time in NCHW, so each channel is added in one order. */
static void channel_sums(double *s1, double *s2, int grad, const tw_cpu_geom *g, const void *xp,
                         const void *dyp, const void *yp, const float *ref, int relu, int is_bf16) {
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int c0 = (int)((long)g->c * t / nt), c1 = (int)((long)g->c * (t + 1) / nt);
        for (int c = c0; c < c1; c++) s1[c] = s2[c] = 0.0;
        for (int n = 0; n < g->n && c0 < c1; n++) {
            if (g->blk == 1) {
                for (int c = c0; c < c1; c++)
                    block_sums(s1 + c, s2 + c, grad, xp, dyp, yp, ref + c,
                               ((size_t)n * g->n_blk + c) * g->hw, g->hw, 1, 0, 1, relu, is_bf16);
                continue;
            }
            for (int cb = c0 / g->blk; cb <= (c1 - 1) / g->blk; cb++) {
                int k0 = c0 > cb * g->blk ? c0 - cb * g->blk : 0;
                int k1 = c1 < (cb + 1) * g->blk ? c1 - cb * g->blk : g->blk;
                int o = cb * g->blk;
                block_sums(s1 + o, s2 + o, grad, xp, dyp, yp, ref + o,
                           ((size_t)n * g->n_blk + cb) * g->hw * g->blk, g->hw, g->blk, k0, k1, relu,
                           is_bf16);
            }
        }
    }
}

void tw_cpu_bn_sums(tw_backend *be, tw_bn_plan *p, double *sums, const tw_tensor *x, const float *shift) {
    (void)be;
    (void)p;
    const tw_cpu_geom g = tw_cpu_geom_of(x);
    channel_sums(sums, sums + g.c, 0, &g, x->data, NULL, NULL, shift, 0, x->dtype == TW_BF16);
}

void tw_cpu_bn_stats_finish(tw_backend *be, float *mean, float *inv_std, double *stats, int *bad,
                            const double *sums, const float *shift, int c, double n_global, float eps) {
    (void)be;
    int finite = 1;
    for (int j = 0; j < c; j++) {
        double s1 = sums[j] / n_global, var = sums[c + j] / n_global - s1 * s1;
        if (var < 0.0) var = 0.0;   /* rounding; NaN stays NaN */
        stats[j] = shift[j] + s1;
        stats[c + j] = var;
        mean[j] = (float)stats[j];
        inv_std[j] = (float)(1.0 / sqrt(var + eps));
        finite &= isfinite(stats[j]) && isfinite(var);
    }
    if (!finite) *bad = 1;
}

void tw_cpu_bn_backward_sums(tw_backend *be, tw_bn_plan *p, double *sums, float *dgamma, float *dbeta,
                             int accumulate, const tw_tensor *dy, const tw_tensor *x,
                             const tw_tensor *y, const float *mean, const float *inv_std) {
    (void)be;
    const tw_cpu_geom g = tw_cpu_geom_of(x);
    const int relu = tw_cpu_bn_plan_relu(p);
    channel_sums(sums, sums + g.c, 1, &g, x->data, dy->data, y->data, mean, relu, x->dtype == TW_BF16);
    for (int c = 0; c < g.c; c++) {
        sums[g.c + c] *= inv_std[c];
        if (!dgamma) continue;
        dbeta[c] = (float)(accumulate ? dbeta[c] + sums[c] : sums[c]);
        dgamma[c] = (float)(accumulate ? dgamma[c] + sums[g.c + c] : sums[g.c + c]);
    }
}

void tw_cpu_bn_running_update(tw_backend *be, float *run_mean, float *run_var, const double *stats, int c,
                              float momentum, double unbias, const int *skip) {
    (void)be;
    if (skip && *skip) return;
    double m = momentum;
    for (int j = 0; j < c; j++) {
        run_mean[j] = (float)((1 - m) * run_mean[j] + m * stats[j]);
        run_var[j] = (float)((1 - m) * run_var[j] + m * stats[c + j] * unbias);
    }
}

/* out = [relu](b (v - m) + k + a u') over n_rows rows of blk values with per-channel
 * coefficients [blk], u' = u masked by mask > 0 when mask is given, no u term when u is NULL. */
TW_CLONES static void rows_affine(float *restrict out, const float *restrict v, const float *b,
                                  const float *m, const float *k, const float *restrict u,
                                  const float *a, const float *restrict mask, size_t n_rows, int blk,
                                  int relu_out) {
    for (size_t s = 0; s < n_rows; s++) {
        size_t row = s * (size_t)blk;
#pragma omp simd
        for (int j = 0; j < blk; j++) {
            float r = b[j] * (v[row + j] - m[j]) + k[j];
            if (u) {
                float g = u[row + j];
                r += a[j] * (mask && !(mask[row + j] > 0.0f) ? 0.0f : g);
            }
            if (relu_out && !(r > 0.0f)) r = r != r ? r : 0.0f;   /* NaN stays NaN */
            out[row + j] = r;
        }
    }
}

/* The same over n values of one channel (an NCHW plane): scalar coefficients. */
TW_CLONES static void plane_affine(float *restrict out, const float *restrict v, float b, float m,
                                   float k, const float *restrict u, float a,
                                   const float *restrict mask, size_t n, int relu_out) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float r = b * (v[i] - m) + k;
        if (u) {
            float g = u[i];
            r += a * (mask && !(mask[i] > 0.0f) ? 0.0f : g);
        }
        if (relu_out && !(r > 0.0f)) r = r != r ? r : 0.0f;   /* NaN stays NaN */
        out[i] = r;
    }
}

/* The per-channel coefficients of affine(), over the padded channel count (0 past the real
 * channels); a NULL when there is no u term. */
typedef struct coefs {
    float *a, *b, *m, *k;
} coefs;

/* In the plan's scratch (a step allocates nothing), zeroed. */
static coefs coefs_of(tw_bn_plan *plan, int n_ch, int with_a) {
    float *p = tw_cpu_bn_plan_coefs(plan, n_ch);
    memset(p, 0, (size_t)n_ch * 4 * sizeof(float));
    return (coefs){with_a ? p + 3 * (size_t)n_ch : NULL, p, p + n_ch, p + 2 * (size_t)n_ch};
}

/* rows_affine (plane_affine in NCHW) over every channel block of every image, f32 in place and
 * bf16 a widened chunk of whole rows at a time. */
static void affine(void *out, const tw_cpu_geom *g, const void *vp, const coefs *cf, const void *up,
                   const void *mask, int relu_out, int is_bf16) {
    const long n_planes = (long)g->n * g->n_blk;
    const size_t n_vals = g->hw * (size_t)g->blk;
    const size_t step = is_bf16 ? (g->blk == 1 ? CHUNK : CHUNK / (size_t)g->blk * (size_t)g->blk) : n_vals;
    TW_ASSERT(step > 0);   /* bf16 rows up to CHUNK channels (activations: 512 at most) */
#pragma omp parallel
    {
        float vo[CHUNK], vv[CHUNK], vu[CHUNK], vmask[CHUNK];
#pragma omp for schedule(static)
        for (long pl = 0; pl < n_planes; pl++) {
            int o = (int)(pl % g->n_blk) * g->blk;
            size_t base = (size_t)pl * n_vals;
            for (size_t s0 = 0; s0 < n_vals; s0 += step) {
                size_t len = s0 + step < n_vals ? step : n_vals - s0, off = base + s0;
                float *yo = (float *)out + off;
                const float *v = (const float *)vp + off, *u = up ? (const float *)up + off : NULL;
                const float *mk = mask ? (const float *)mask + off : NULL;
                if (is_bf16) {
                    widen(vv, (const uint16_t *)vp + off, len);
                    if (up) widen(vu, (const uint16_t *)up + off, len);
                    if (mask) widen(vmask, (const uint16_t *)mask + off, len);
                    yo = vo, v = vv, u = up ? vu : NULL, mk = mask ? vmask : NULL;
                }
                if (g->blk == 1)
                    plane_affine(yo, v, cf->b[o], cf->m[o], cf->k[o], u, up ? cf->a[o] : 0.0f, mk, len,
                                 relu_out);
                else
                    rows_affine(yo, v, cf->b + o, cf->m + o, cf->k + o, u, up ? cf->a + o : NULL, mk,
                                len / (size_t)g->blk, g->blk, relu_out);
                if (is_bf16) narrow((uint16_t *)out + off, vo, len);
            }
        }
    }
}

void tw_cpu_bn_forward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x,
                             const float *mean, const float *inv_std, const float *gamma,
                             const float *beta) {
    (void)be;
    const tw_cpu_geom g = tw_cpu_geom_of(x);
    /* y = (gamma inv_std) (x - mean) + beta */
    coefs cf = coefs_of(p, g.n_blk * g.blk, 0);
    for (int c = 0; c < g.c; c++) {
        cf.b[c] = (gamma ? gamma[c] : 1.0f) * inv_std[c];
        cf.m[c] = mean[c];
        cf.k[c] = beta ? beta[c] : 0.0f;
    }
    affine(y->data, &g, x->data, &cf, NULL, NULL, tw_cpu_bn_plan_relu(p), x->dtype == TW_BF16);
}

void tw_cpu_bn_backward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, const tw_tensor *dy,
                              const tw_tensor *x, const tw_tensor *y, const float *mean,
                              const float *inv_std, const float *gamma, const double *global_sums,
                              double n_global) {
    (void)be;
    const tw_cpu_geom g = tw_cpu_geom_of(x);
    const int relu = tw_cpu_bn_plan_relu(p);
    /* dx = A dy' - B (x - mean) - C with A = gamma inv_std, B = A inv_std S2 / N, C = A S1 / N
     * (torch's batch_norm_backward_elemt). */
    coefs cf = coefs_of(p, g.n_blk * g.blk, 1);
    for (int c = 0; c < g.c; c++) {
        double A = (double)(gamma ? gamma[c] : 1.0f) * inv_std[c];
        cf.a[c] = (float)A;
        cf.b[c] = (float)(-A * inv_std[c] * global_sums[g.c + c] / n_global);
        cf.m[c] = mean[c];
        cf.k[c] = (float)(-A * global_sums[c] / n_global);
    }
    affine(dx->data, &g, x->data, &cf, dy->data, relu ? y->data : NULL, 0, x->dtype == TW_BF16);
}
