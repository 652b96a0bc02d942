/* Batch norm with its statistics computed outside, on the CPU backend (backend.h: tw_bn_sums,
 * tw_bn_forward_stats, tw_bn_backward_sums, tw_bn_backward_stats): the synchronised backbone BN
 * takes this rank's sums from here, all-reduces them and normalises with the global statistics.
 * oneDNN's batch norm cannot take the global sums of the backward, so these are plain loops over
 * every activation layout (cpu.h: tw_cpu_geom) and dtype, OpenMP threads. Each channel's sums are
 * kept in double and added by one thread in one fixed order, so they do not depend on the thread
 * count. */
#include <omp.h>
#include <stdint.h>

#include "backend/cpu/cpu.h"
#include "core/dtype.h"

/* Channel counts the stack arrays below are sized for (ResNet18's widest is 512). */
enum { MAX_CH = 4096 };

static inline float ld(const void *p, size_t i, int is_bf16) {
    return is_bf16 ? tw_bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static inline void st(void *p, size_t i, float v, int is_bf16) {
    if (is_bf16) ((uint16_t *)p)[i] = tw_f32_to_bf16(v);
    else ((float *)p)[i] = v;
}

/* What the sums add per value: SHIFTED v = x - ref: v and v²; GRAD with d = dy', d and
 * d (x - ref). */
enum { SHIFTED, GRAD };

static inline void term(int mode, double *u, double *w, size_t i, double ref, const void *xp,
                        const void *dyp, const void *yp, int relu, int is_bf16) {
    double xv = (double)ld(xp, i, is_bf16) - ref;
    if (mode == SHIFTED) {
        *u = xv;
        *w = xv * xv;
        return;
    }
    double d = relu && !(ld(yp, i, is_bf16) > 0.0f) ? 0.0 : (double)ld(dyp, i, is_bf16);
    *u = d;
    *w = d * xv;
}

/* s1[c], s2[c] = the two sums of channel c over (n, h, w), for every channel (=). A thread owns a
 * contiguous channel range and walks it a pixel at a time (a pixel's channels are contiguous in
 * the blocked layouts), or a plane at a time in NCHW. */
static void channel_sums(double *s1, double *s2, int mode, const tw_cpu_geom *g, const void *xp,
                         const void *dyp, const void *yp, const float *ref, int relu, int is_bf16) {
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int c0 = (int)((long)g->c * t / nt), c1 = (int)((long)g->c * (t + 1) / nt);
        for (int c = c0; c < c1; c++) s1[c] = s2[c] = 0.0;
        for (int n = 0; n < g->n && c0 < c1; n++) {
            if (g->blk == 1) {
                for (int c = c0; c < c1; c++) {
                    size_t base = ((size_t)n * g->n_blk + c) * g->hw;
                    double a = 0.0, b = 0.0, r = ref[c];
#pragma omp simd reduction(+ : a, b)
                    for (size_t s = 0; s < g->hw; s++) {
                        double u, w;
                        term(mode, &u, &w, base + s, r, xp, dyp, yp, relu, is_bf16);
                        a += u;
                        b += w;
                    }
                    s1[c] += a;
                    s2[c] += b;
                }
                continue;
            }
            for (int cb = c0 / g->blk; cb <= (c1 - 1) / g->blk; cb++) {
                int k0 = c0 > cb * g->blk ? c0 - cb * g->blk : 0;
                int k1 = c1 < (cb + 1) * g->blk ? c1 - cb * g->blk : g->blk;
                size_t base = ((size_t)n * g->n_blk + cb) * g->hw * g->blk;
                double *a = s1 + cb * g->blk, *b = s2 + cb * g->blk;
                const float *r = ref + cb * g->blk;
                for (size_t s = 0; s < g->hw; s++)
#pragma omp simd
                    for (int k = k0; k < k1; k++) {
                        double u, w;
                        term(mode, &u, &w, base + s * g->blk + k, r[k], xp, dyp, yp, relu, is_bf16);
                        a[k] += u;
                        b[k] += w;
                    }
            }
        }
    }
}

void tw_cpu_bn_sums(tw_backend *be, tw_bn_plan *p, float *sums, const tw_tensor *x, const float *shift) {
    (void)be;
    (void)p;
    const tw_cpu_geom g = tw_cpu_geom_of(x);
    TW_ASSERT(g.c <= MAX_CH);
    double s1[g.c], s2[g.c];
    if (x->dtype == TW_BF16) channel_sums(s1, s2, SHIFTED, &g, x->data, NULL, NULL, shift, 0, 1);
    else channel_sums(s1, s2, SHIFTED, &g, x->data, NULL, NULL, shift, 0, 0);
    for (int c = 0; c < g.c; c++) {
        sums[c] = (float)s1[c];
        sums[g.c + c] = (float)s2[c];
    }
}

void tw_cpu_bn_backward_sums(tw_backend *be, tw_bn_plan *p, float *sums, const tw_tensor *dy,
                             const tw_tensor *x, const tw_tensor *y, const float *mean,
                             const float *inv_std) {
    (void)be;
    const tw_cpu_geom g = tw_cpu_geom_of(x);
    const int relu = tw_cpu_bn_plan_relu(p);
    TW_ASSERT(g.c <= MAX_CH);
    double s1[g.c], s2[g.c];
    if (x->dtype == TW_BF16) channel_sums(s1, s2, GRAD, &g, x->data, dy->data, y->data, mean, relu, 1);
    else channel_sums(s1, s2, GRAD, &g, x->data, dy->data, y->data, mean, relu, 0);
    for (int c = 0; c < g.c; c++) {
        sums[c] = (float)s1[c];
        sums[g.c + c] = (float)(s2[c] * inv_std[c]);
    }
}

/* out = [relu](b[c] (v - m[c]) + k[c] + a[c] u') over every value, v from vp, u' from up (up NULL:
 * no such term) masked by mask > 0 when mask is given; the padding channels' coefficients are 0. */
static void affine(void *out, const tw_cpu_geom *g, const void *vp, const float *b, const float *m,
                   const float *k, const void *up, const float *a, const void *mask, int relu_out,
                   int is_bf16) {
    const long n_planes = (long)g->n * g->n_blk;
#pragma omp parallel for schedule(static)
    for (long pl = 0; pl < n_planes; pl++) {
        int cb = (int)(pl % g->n_blk);
        size_t base = (size_t)pl * g->hw * g->blk;
        const float *bc = b + cb * g->blk, *mc = m + cb * g->blk, *kc = k + cb * g->blk;
        const float *ac = up ? a + cb * g->blk : NULL;
        for (size_t s = 0; s < g->hw; s++)
#pragma omp simd
            for (int j = 0; j < g->blk; j++) {
                size_t i = base + s * g->blk + j;
                float v = bc[j] * (ld(vp, i, is_bf16) - mc[j]) + kc[j];
                if (up) {
                    float u = ld(up, i, is_bf16);
                    if (mask && !(ld(mask, i, is_bf16) > 0.0f)) u = 0.0f;
                    v += ac[j] * u;
                }
                if (relu_out && !(v > 0.0f)) v = v != v ? v : 0.0f;   /* NaN stays NaN */
                st(out, i, v, is_bf16);
            }
    }
}

void tw_cpu_bn_forward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x,
                             const float *mean, const float *inv_std, const float *gamma,
                             const float *beta) {
    (void)be;
    const tw_cpu_geom g = tw_cpu_geom_of(x);
    const int n_ch = g.n_blk * g.blk;
    TW_ASSERT(n_ch <= MAX_CH + 16);
    /* y = (gamma inv_std) (x - mean) + beta */
    float b[n_ch], m[n_ch], k[n_ch];
    for (int c = 0; c < n_ch; c++) {
        b[c] = m[c] = k[c] = 0.0f;
        if (c >= g.c) continue;
        b[c] = (gamma ? gamma[c] : 1.0f) * inv_std[c];
        m[c] = mean[c];
        k[c] = beta ? beta[c] : 0.0f;
    }
    affine(y->data, &g, x->data, b, m, k, NULL, NULL, NULL, tw_cpu_bn_plan_relu(p), x->dtype == TW_BF16);
}

void tw_cpu_bn_backward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, const tw_tensor *dy,
                              const tw_tensor *x, const tw_tensor *y, const float *mean,
                              const float *inv_std, const float *gamma, const float *global_sums,
                              float n_global) {
    (void)be;
    const tw_cpu_geom g = tw_cpu_geom_of(x);
    const int n_ch = g.n_blk * g.blk, relu = tw_cpu_bn_plan_relu(p);
    TW_ASSERT(n_ch <= MAX_CH + 16);
    /* dx = A dy' - B (x - mean) - C with A = gamma inv_std, B = A inv_std S2 / N, C = A S1 / N
     * (torch's batch_norm_backward_elemt). */
    float a[n_ch], b[n_ch], m[n_ch], k[n_ch];
    for (int c = 0; c < n_ch; c++) {
        a[c] = b[c] = m[c] = k[c] = 0.0f;
        if (c >= g.c) continue;
        double A = (double)(gamma ? gamma[c] : 1.0f) * inv_std[c];
        a[c] = (float)A;
        b[c] = (float)(-A * inv_std[c] * global_sums[g.c + c] / n_global);
        m[c] = mean[c];
        k[c] = (float)(-A * global_sums[c] / n_global);
    }
    affine(dx->data, &g, x->data, b, m, k, dy->data, a, relu ? y->data : NULL, 0, x->dtype == TW_BF16);
}
