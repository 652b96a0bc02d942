/* Batch norm with statistics from outside (tw_bn_sums, tw_bn_forward_stats, tw_bn_backward_sums,
 * tw_bn_backward_stats), as the synchronised backbone BN uses them: the batch is split in two
 * halves ("ranks"), each half's sums are added as an all-reduce would, and both halves are
 * normalised and taken back with the global statistics. Forward output and input gradient
 * against double-precision formulas over the whole batch, in every layout, with and without the
 * ReLU, fp32 and (where the CPU has it) bf16; the padding channels must stay 0, and the sums of
 * the backward must be torch's dbeta and dgamma. The values' mean is far from 0 and the shift
 * near it, as the running mean is in training. Two shapes: a small one, and one whose planes
 * (48 x 48) span several of the bf16 path's widened chunks, with a partial one at the end; and
 * f32 rows (the projector's BN) 5000 wide. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tb.h"

/* The shape of the case being run: the whole batch N (two halves), C channels (20: padding in
 * the blocked layouts), H x W. */
static int N, HALF, C, H, W, HW;
static size_t NX, NH;

static size_t at(int n, int c, int i) { return ((size_t)n * C + c) * HW + i; }

/* Channel c's mean and 1 / sqrt(var + eps) over the whole batch, in double. */
static void stats_of(double *m, double *is, const float *x, int c, float eps) {
    double s = 0, ss = 0;
    for (int n = 0; n < N; n++)
        for (int i = 0; i < HW; i++) s += x[at(n, c, i)];
    *m = s / ((double)N * HW);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < HW; i++) ss += (x[at(n, c, i)] - *m) * (x[at(n, c, i)] - *m);
    *is = 1.0 / sqrt(ss / ((double)N * HW) + eps);
}

static void reference_forward(double *y, const float *x, const float *g, const float *b, float eps,
                              int relu) {
    for (int c = 0; c < C; c++) {
        double m, is;
        stats_of(&m, &is, x, c, eps);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = at(n, c, i);
                double pre = g[c] * (x[o] - m) * is + b[c];
                y[o] = relu && pre < 0 ? 0 : pre;
            }
    }
}

/* dx, and sums = [Σ dy', Σ dy' x̂] per channel; dy' = dy where the layer's own output y > 0 (the
 * mask the ops see: near 0 a bf16 output may round across it). */
static void reference_backward(double *dx, double *sums, const float *x, const float *dy,
                               const float *y, const float *g, float eps, int relu) {
    const double cnt = (double)N * HW;
    for (int c = 0; c < C; c++) {
        double m, is, sdy = 0, sdyx = 0;
        stats_of(&m, &is, x, c, eps);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = at(n, c, i);
                double d = relu && !(y[o] > 0) ? 0 : dy[o];
                sdy += d;
                sdyx += d * (x[o] - m) * is;
            }
        sums[c] = sdy;
        sums[C + c] = sdyx;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = at(n, c, i);
                double d = relu && !(y[o] > 0) ? 0 : dy[o];
                dx[o] = g[c] * is * (d - sdy / cnt - (x[o] - m) * is * sdyx / cnt);
            }
    }
}

/* rows: a plan of f32 rows (the projector's BN: [n, d, 1, 1] nhwc, f32 whatever the activation
 * dtype). */
static int run(tw_backend *be, tw_rng *rng, tw_layout layout, int relu, int rows) {
    const float eps = 1e-5f;
    const int bf16 = !rows && tw_backend_act_dtype(be) == TW_BF16;
    const tw_dtype dt = bf16 ? TW_BF16 : TW_F32;
    char name[96], what[160];
    snprintf(name, sizeof name, "%s [%d, %d, %d, %d] %s%s", bf16 ? "bf16" : "fp32", N, C, H, W,
             tw_layout_name(layout), relu ? "+relu" : "");
    tw_bn_desc d = {HALF, C, H, W, layout, relu, eps, 0.1f, rows};
    tw_bn_plan *plan = NULL;
    tw_err err = {0};
    if (tw_bn_plan_make(be, &plan, &d, &err) != TW_OK) {
        printf("FAIL %s: %s\n", name, err.msg);
        return 0;
    }
    float *hx = tb_alloc_rand(rng, NX, 1.0f), *hdy = tb_alloc_rand(rng, NX, 1.0f);
    float *g = tb_alloc_rand(rng, C, 1.0f), *b = tb_alloc_rand(rng, C, 0.5f);
    for (size_t i = 0; i < NX; i++) hx[i] += 3.0f + (float)((i / HW) % C % 20) * 0.25f;
    for (int c = 0; c < C; c++) g[c] += 1.5f;
    if (bf16) {
        tb_round_bf16(hx, NX);
        tb_round_bf16(hdy, NX);
    }
    double *ry = malloc(NX * sizeof(double)), *rdx = malloc(NX * sizeof(double));
    reference_forward(ry, hx, g, b, eps, relu);

    /* the shift: close to each channel's mean, not equal to it */
    float shift[C], mean[C], inv_std[C];
    double sums[2 * C], total[2 * C], stats[2 * C];
    for (int k = 0; k < 2 * C; k++) total[k] = 0.0;
    for (int c = 0; c < C; c++) shift[c] = 3.0f + (c % 20) * 0.25f + 0.1f;
    tw_tensor x[2], y[2], dy[2], dx[2];
    for (int h = 0; h < 2; h++) {
        x[h] = tb_tensor(be, HALF, C, H, W, dt, layout);
        y[h] = tb_tensor(be, HALF, C, H, W, dt, layout);
        dy[h] = tb_tensor(be, HALF, C, H, W, dt, layout);
        dx[h] = tb_tensor(be, HALF, C, H, W, dt, layout);
        tb_put(be, &x[h], hx + h * NH);
        tb_put(be, &dy[h], hdy + h * NH);
        tw_bn_sums(be, plan, sums, &x[h], shift);
        for (int k = 0; k < 2 * C; k++) total[k] += sums[k];
    }
    const double cnt = (double)N * HW;
    int bad = 0;
    tw_bn_stats_finish(be, mean, inv_std, stats, &bad, total, shift, C, cnt, eps);
    float *got = malloc(NX * sizeof(float)), *hy = malloc(NX * sizeof(float));
    double *gotd = malloc(NX * sizeof(double));
    int ok = 1;
    for (int h = 0; h < 2; h++) {
        tw_bn_forward_stats(be, plan, &y[h], &x[h], mean, inv_std, g, b);
        ok &= tb_pad_zero(be, &y[h]);
        tb_get(be, got + h * NH, &y[h]);
    }
    for (size_t i = 0; i < NX; i++) gotd[i] = hy[i] = got[i];
    /* the statistics the finish step kept for the running update: batch mean and biased var */
    double smax = 0;
    for (int c = 0; c < C; c++) {
        double m, is;
        stats_of(&m, &is, hx, c, eps);
        double v = 1.0 / (is * is) - eps;
        smax = fmax(smax, fmax(fabs(stats[c] - m), fabs(stats[C + c] - v) / v));
    }
    snprintf(what, sizeof what, "%s statistics over 2 halves: max error %.2e, flag %d", name, smax, bad);
    printf("%s %s\n", smax < 1e-9 && !bad ? "PASS" : "FAIL", what);
    ok &= smax < 1e-9 && !bad;
    /* bf16: the output's own rounding (2^-9 relative) and the statistics' f32 rounding */
    snprintf(what, sizeof what, "%s forward over 2 halves", name);
    ok &= check_close_tol_d(what, gotd, ry, NX, bf16 ? 5e-3 : 2e-6, bf16 ? 4e-3 : 2e-6);

    /* Each half's shares of dbeta and dgamma, the first written (=), the second added (+=): the
     * sum of both halves, as the f64 sums. */
    double bsums[2 * C], btotal[2 * C];
    float dgamma[C], dbeta[C];
    for (int k = 0; k < 2 * C; k++) btotal[k] = 0.0;
    for (int h = 0; h < 2; h++) {
        tw_bn_backward_sums(be, plan, bsums, dgamma, dbeta, h, &dy[h], &x[h], &y[h], mean, inv_std);
        for (int k = 0; k < 2 * C; k++) btotal[k] += bsums[k];
    }
    double shares[2 * C];
    for (int c = 0; c < C; c++) shares[c] = dbeta[c], shares[C + c] = dgamma[c];
    snprintf(what, sizeof what, "%s dbeta, dgamma shares (= then +=)", name);
    ok &= check_close_tol_d(what, shares, btotal, 2 * C, 1e-5, 1e-6);
    for (int h = 0; h < 2; h++) {
        tw_bn_backward_stats(be, plan, &dx[h], &dy[h], &x[h], &y[h], mean, inv_std, g, btotal, cnt);
        ok &= tb_pad_zero(be, &dx[h]);
        tb_get(be, got + h * NH, &dx[h]);
    }

    double want[2 * C], have[2 * C];
    reference_backward(rdx, want, hx, hdy, hy, g, eps, relu);
    for (int k = 0; k < 2 * C; k++) have[k] = btotal[k];
    snprintf(what, sizeof what, "%s dbeta, dgamma (the backward's sums)", name);
    ok &= check_close_tol_d(what, have, want, 2 * C, 2e-5, 4e-6);
    for (size_t i = 0; i < NX; i++) gotd[i] = got[i];
    snprintf(what, sizeof what, "%s backward over 2 halves", name);
    ok &= check_close_tol_d(what, gotd, rdx, NX, bf16 ? 5e-3 : 2e-6, bf16 ? 5e-3 : 2e-6);

    for (int h = 0; h < 2; h++) {
        tb_tensor_free(be, &x[h]);
        tb_tensor_free(be, &y[h]);
        tb_tensor_free(be, &dy[h]);
        tb_tensor_free(be, &dx[h]);
    }
    free(hx); free(hdy); free(g); free(b); free(ry); free(rdx); free(got); free(hy); free(gotd);
    tw_bn_plan_free(be, plan);
    return ok;
}

int main(int argc, char **argv) {
    int use_bf16 = argc > 1 && argv[1][0] == 'b';
    tw_backend *be = tb_backend(use_bf16 ? TW_PREC_BF16 : TW_PREC_FP32);
    tw_rng rng;
    tw_rng_init(&rng, 17, 0, 0, 0);
    int ok = 1;
    const tw_layout layouts[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C, TW_LAYOUT_NCHW16C};
    const int shapes[2][4] = {{4, 20, 5, 3}, {2, 20, 48, 48}};
    for (int sh = 0; sh < 2; sh++) {
        N = shapes[sh][0], C = shapes[sh][1], H = shapes[sh][2], W = shapes[sh][3];
        HALF = N / 2, HW = H * W;
        NX = (size_t)N * C * HW, NH = (size_t)HALF * C * HW;
        for (int l = 0; l < 4; l++)
            for (int relu = 0; relu < 2; relu++) ok &= run(be, &rng, layouts[l], relu, 0);
    }
    /* f32 rows wider than a bf16 chunk (the official projector is 8192 wide) */
    N = 6, C = 5000, H = W = 1, HALF = 3, HW = 1;
    NX = (size_t)N * C, NH = (size_t)HALF * C;
    for (int relu = 0; relu < 2; relu++) ok &= run(be, &rng, TW_LAYOUT_NHWC, relu, 1);
    tw_backend_free(be);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? TW_TEST_PASS : TW_TEST_FAIL;
}
