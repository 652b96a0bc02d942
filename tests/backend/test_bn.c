/* Batch norm (fp32) in every layout, with and without the fused ReLU: training forward, saved
 * statistics, running statistics after two steps (momentum, unbiased variance), evaluation
 * forward and backward against double-precision formulas, and the gradients of
 * L = Σ r ⊙ bn(x) against central finite differences. Also the plan's argument checks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb.h"

enum { N = 3, C = 12, H = 5, W = 4 };
#define NX ((size_t)N * C * H * W)

typedef struct {
    double mean[C], var[C], y[NX], pre[NX];
} ref_fwd;

static void reference_forward(ref_fwd *r, const float *x, const float *g, const float *b,
                              float eps, int relu) {
    const double cnt = (double)N * H * W;
    for (int c = 0; c < C; c++) {
        double s = 0, ss = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < H * W; i++) s += x[(n * C + c) * H * W + i];
        double m = s / cnt;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < H * W; i++) {
                double dv = x[(n * C + c) * H * W + i] - m;
                ss += dv * dv;
            }
        r->mean[c] = m;
        r->var[c] = ss / cnt;
        double is = 1.0 / sqrt(r->var[c] + eps);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < H * W; i++) {
                size_t o = (size_t)(n * C + c) * H * W + i;
                r->pre[o] = g[c] * (x[o] - m) * is + b[c];
                r->y[o] = relu && r->pre[o] < 0 ? 0 : r->pre[o];
            }
    }
}

typedef struct {
    tw_backend *be;
    tw_bn_plan *plan;
    tw_tensor x, y;
    float *hx, *g, *b, *hy, *r, *rm, *rv, *sm, *sv;
    void *ws;
} ctx;

static double loss(ctx *c) {
    tb_put(c->be, &c->x, c->hx);
    tw_bn_forward_train(c->be, c->plan, &c->y, c->sm, c->sv, c->ws, &c->x, c->g, c->b, c->rm, c->rv);
    tb_get(c->be, c->hy, &c->y);
    double l = 0;
    for (size_t i = 0; i < NX; i++) l += (double)c->r[i] * c->hy[i];
    return l;
}

static int run(tw_backend *be, tw_rng *rng, tw_layout layout, int relu) {
    char name[64], what[128];
    snprintf(name, sizeof name, "bn %s%s", tw_layout_name(layout), relu ? " +relu" : "");
    const float eps = 1e-5f, mom = 0.1f;
    tw_bn_desc d = {N, C, H, W, layout, relu, eps, mom, 0};
    tw_bn_plan *plan = NULL;
    tw_err err = {0};
    if (tw_bn_plan_make(be, &plan, &d, &err) != TW_OK) {
        printf("FAIL %s: plan: %s\n", name, err.msg);
        return 0;
    }
    int ok = 1;
    size_t ws_bytes = tw_bn_plan_ws_bytes(plan);
    if (relu && ws_bytes == 0) {
        printf("FAIL %s: fused ReLU plan reports no workspace\n", name);
        ok = 0;
    }
    ctx c = {be, plan, tb_tensor(be, N, C, H, W, TW_F32, layout), tb_tensor(be, N, C, H, W, TW_F32, layout),
             tb_alloc_rand(rng, NX, 2.0f), tb_alloc_rand(rng, C, 1.0f), tb_alloc_rand(rng, C, 0.5f),
             malloc(NX * sizeof(float)), tb_alloc_rand(rng, NX, 1.0f), calloc(C, sizeof(float)),
             malloc(C * sizeof(float)), malloc(C * sizeof(float)), malloc(C * sizeof(float)),
             ws_bytes ? tw_mem_alloc(be, ws_bytes) : NULL};
    for (size_t i = 0; i < NX; i++) c.hx[i] += 0.3f * (float)(i % 5);   /* non-zero means */
    for (int i = 0; i < C; i++) {
        c.g[i] += 1.5f;
        c.rv[i] = 1.0f;
    }
    /* Two training steps: running statistics as torch keeps them. */
    float *x1 = tb_alloc_rand(rng, NX, 1.0f);
    ref_fwd *r1 = malloc(sizeof *r1), *r2 = malloc(sizeof *r2);
    reference_forward(r1, x1, c.g, c.b, eps, relu);
    float *keep = c.hx;
    c.hx = x1;
    loss(&c);
    c.hx = keep;
    loss(&c);
    reference_forward(r2, c.hx, c.g, c.b, eps, relu);
    const double unb = (double)N * H * W / ((double)N * H * W - 1);
    double want_rm[C], want_rv[C], got_rm[C], got_rv[C], got_m[C], got_v[C];
    for (int i = 0; i < C; i++) {
        double m1 = mom * r1->mean[i], v1 = (1 - mom) * 1.0 + mom * r1->var[i] * unb;
        want_rm[i] = (1 - mom) * m1 + mom * r2->mean[i];
        want_rv[i] = (1 - mom) * v1 + mom * r2->var[i] * unb;
        got_rm[i] = c.rm[i];
        got_rv[i] = c.rv[i];
        got_m[i] = c.sm[i];
        got_v[i] = c.sv[i];
    }
    double *gy = malloc(NX * sizeof(double));
    for (size_t i = 0; i < NX; i++) gy[i] = c.hy[i];
    snprintf(what, sizeof what, "%s fwd train", name);
    ok &= check_close_tol_d(what, gy, r2->y, NX, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s saved mean", name);
    ok &= check_close_tol_d(what, got_m, r2->mean, C, 1e-6, 1e-5);
    snprintf(what, sizeof what, "%s saved var (biased)", name);
    ok &= check_close_tol_d(what, got_v, r2->var, C, 1e-6, 1e-5);
    snprintf(what, sizeof what, "%s running mean, 2 steps", name);
    ok &= check_close_tol_d(what, got_rm, want_rm, C, 1e-6, 1e-5);
    snprintf(what, sizeof what, "%s running var, 2 steps", name);
    ok &= check_close_tol_d(what, got_rv, want_rv, C, 1e-6, 1e-5);
    ok &= tb_pad_zero(be, &c.y);

    /* Backward with dy = r, against the closed form. */
    tw_tensor dy = tb_tensor(be, N, C, H, W, TW_F32, layout), dx = tb_tensor(be, N, C, H, W, TW_F32, layout);
    float dg[C], db[C], *hdx = malloc(NX * sizeof(float));
    tb_put(be, &dy, c.r);
    tw_bn_backward(be, plan, &dx, dg, db, &dy, &c.x, c.sm, c.sv, c.ws, c.g);
    tb_get(be, hdx, &dx);
    ok &= tb_pad_zero(be, &dx);
    double *rdx = malloc(NX * sizeof(double)), *gdx = malloc(NX * sizeof(double));
    double rdg[C], rdb[C], gdg[C], gdb[C];
    const double cnt = (double)N * H * W;
    for (int ch = 0; ch < C; ch++) {
        double is = 1.0 / sqrt(r2->var[ch] + eps), s1 = 0, s2 = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < H * W; i++) {
                size_t o = (size_t)(n * C + ch) * H * W + i;
                double g = relu && r2->pre[o] <= 0 ? 0 : c.r[o];
                s1 += g;
                s2 += g * (c.hx[o] - r2->mean[ch]) * is;
            }
        rdb[ch] = s1;
        rdg[ch] = s2;
        gdb[ch] = db[ch];
        gdg[ch] = dg[ch];
        for (int n = 0; n < N; n++)
            for (int i = 0; i < H * W; i++) {
                size_t o = (size_t)(n * C + ch) * H * W + i;
                double g = relu && r2->pre[o] <= 0 ? 0 : c.r[o];
                double xh = (c.hx[o] - r2->mean[ch]) * is;
                rdx[o] = c.g[ch] * is * (g - s1 / cnt - xh * s2 / cnt);
            }
    }
    for (size_t i = 0; i < NX; i++) gdx[i] = hdx[i];
    snprintf(what, sizeof what, "%s bwd dx", name);
    ok &= check_close_tol_d(what, gdx, rdx, NX, 1e-5, 1e-4);
    snprintf(what, sizeof what, "%s bwd dgamma", name);
    ok &= check_close_tol_d(what, gdg, rdg, C, 1e-5, 1e-4);
    snprintf(what, sizeof what, "%s bwd dbeta", name);
    ok &= check_close_tol_d(what, gdb, rdb, C, 1e-5, 1e-4);

    /* Finite differences on x, gamma and beta, in channels where no pre-activation sits near
     * the ReLU's kink (a step across it is not a derivative). */
    const float h = 2e-3f;
    int usable[C], n_usable = 0;
    for (int ch = 0; ch < C; ch++) {
        int near = 0;
        for (int n = 0; n < N && relu; n++)
            for (int i = 0; i < H * W; i++)
                if (fabs(r2->pre[(n * C + ch) * H * W + i]) < 0.05) near = 1;
        if (!near) usable[n_usable++] = ch;
    }
    enum { N_FD = 8 };
    double fd[3 * N_FD], an[3 * N_FD];
    int n_fd = 0;
    for (int t = 0; t < 3 * N_FD && n_usable > 0; t++) {
        int ch = usable[tw_rng_below(rng, (uint32_t)n_usable)];
        float *v;
        double a;
        if (t < N_FD) {
            size_t o = (size_t)(tw_rng_below(rng, N) * C + ch) * H * W + tw_rng_below(rng, H * W);
            v = &c.hx[o];
            a = hdx[o];
        } else if (t < 2 * N_FD) {
            v = &c.g[ch];
            a = dg[ch];
        } else {
            v = &c.b[ch];
            a = db[ch];
        }
        float k = *v;
        *v = k + h;
        double lp = loss(&c);
        *v = k - h;
        double lm = loss(&c);
        *v = k;
        fd[n_fd] = (lp - lm) / (2.0 * h);
        an[n_fd++] = a;
    }
    snprintf(what, sizeof what, "%s finite differences (%d channels)", name, n_usable);
    ok &= n_fd > 0 && check_close_tol_d(what, an, fd, n_fd, 3e-3, 3e-3);

    /* Evaluation: running statistics, y = g (x - rm) / sqrt(rv + eps) + b (relu). */
    tw_bn_forward_eval(be, plan, &c.y, &c.x, c.g, c.b, c.rm, c.rv);
    tb_get(be, c.hy, &c.y);
    for (int n = 0; n < N; n++)
        for (int ch = 0; ch < C; ch++)
            for (int i = 0; i < H * W; i++) {
                size_t o = (size_t)(n * C + ch) * H * W + i;
                double v = c.g[ch] * (c.hx[o] - c.rm[ch]) / sqrt(c.rv[ch] + eps) + c.b[ch];
                rdx[o] = relu && v < 0 ? 0 : v;
                gdx[o] = c.hy[o];
            }
    snprintf(what, sizeof what, "%s fwd eval", name);
    ok &= check_close_tol_d(what, gdx, rdx, NX, 1e-5, 1e-5);

    tb_tensor_free(be, &c.x); tb_tensor_free(be, &c.y); tb_tensor_free(be, &dy); tb_tensor_free(be, &dx);
    tw_mem_free(be, c.ws);
    free(c.hx); free(c.g); free(c.b); free(c.hy); free(c.r); free(c.rm); free(c.rv); free(c.sm);
    free(c.sv); free(x1); free(r1); free(r2); free(gy); free(hdx); free(rdx); free(gdx);
    tw_bn_plan_free(be, plan);
    return ok;
}

int main(void) {
    tw_backend *be = tb_backend(TW_PREC_FP32);
    tw_rng rng;
    tw_rng_init(&rng, 11, 0, 0, 0);
    int ok = 1;
    const tw_layout layouts[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C, TW_LAYOUT_NCHW16C};
    for (int l = 0; l < 4; l++)
        for (int relu = 0; relu < 2; relu++) ok &= run(be, &rng, layouts[l], relu);

    tw_bn_plan *p = NULL;
    tw_err err = {0};
    tw_bn_desc one = {1, 8, 1, 1, TW_LAYOUT_NCHW, 0, 1e-5f, 0.1f, 0};
    if (tw_bn_plan_make(be, &p, &one, &err) != TW_E_SHAPE) {
        printf("FAIL: one value per channel was not rejected\n");
        ok = 0;
    } else {
        printf("PASS one value per channel rejected: %s\n", err.msg);
    }
    tw_bn_desc bad_eps = {2, 8, 2, 2, TW_LAYOUT_NCHW, 0, 0.0f, 0.1f, 0};
    if (tw_bn_plan_make(be, &p, &bad_eps, &err) != TW_E_RANGE) {
        printf("FAIL: eps 0 was not rejected\n");
        ok = 0;
    } else {
        printf("PASS eps 0 rejected: %s\n", err.msg);
    }
    tw_backend_free(be);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? TW_TEST_PASS : TW_TEST_FAIL;
}
