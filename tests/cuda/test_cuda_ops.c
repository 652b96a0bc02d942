/* Every op of the CUDA backend against the CPU backend (fp32, the reference) on the same random
 * inputs, as ggml's test-backend-ops does: normalised MSE (fp32 CUDA: 1e-8, i.e. 1e-4 relative;
 * bf16 CUDA: 5e-4, bf16's 8-bit mantissa), NaN and Inf in the same places, and guard bytes
 * around every CUDA output untouched (the classification heads' ops and the synchronised BN's
 * external-statistics ops included). Also records the shape of a training step (a loss, the
 * gradient check, an update that takes its rate from a pinned upload and skips on a device flag)
 * as a CUDA graph and replays it against direct execution.
 * Exits 77 ("no CUDA device: skipped") where no GPU is visible. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backend/tb.h"
#include "backend/backend.h"
#include "core/dtype.h"
#include "core/log.h"
#include "core/rng.h"

enum { GUARD = 256 };                 /* bytes of guard pattern on each side of a CUDA output */
static const unsigned char GUARD_BYTE = 0xA7;

typedef struct guarded {
    unsigned char *base;              /* device: GUARD | data | GUARD */
    size_t n_bytes;                   /* data bytes */
    const char *what;
} guarded;

typedef struct ctx {
    tw_backend *cpu, *gpu;
    int bf16;
    double tol;                       /* normalised MSE */
    tw_rng rng;
    int n_fail, n_check;
    guarded g[64];
    int n_g;
} ctx;

/* ---- memory ---------------------------------------------------------------------------------- */

static void *gpu_guarded(ctx *t, size_t n_bytes, const char *what) {
    TW_ASSERT(t->n_g < 64);
    size_t total = n_bytes + 2 * GUARD;
    unsigned char *h = malloc(total);
    TW_ASSERT(h);
    memset(h, GUARD_BYTE, total);
    unsigned char *d = tw_mem_alloc(t->gpu, total);
    tw_mem_from_host(t->gpu, d, h, total);
    free(h);
    t->g[t->n_g++] = (guarded){d, n_bytes, what};
    return d + GUARD;
}

/* Checks and frees every guarded buffer. */
static void guards_check(ctx *t) {
    for (int i = 0; i < t->n_g; i++) {
        guarded *g = &t->g[i];
        size_t total = g->n_bytes + 2 * GUARD;
        unsigned char *h = malloc(total);
        TW_ASSERT(h);
        tw_mem_to_host(t->gpu, h, g->base, total);
        size_t bad = 0;
        for (size_t k = 0; k < GUARD; k++) bad += (h[k] != GUARD_BYTE) + (h[GUARD + g->n_bytes + k] != GUARD_BYTE);
        t->n_check++;
        if (bad) {
            printf("FAIL guard bytes around %s: %zu overwritten\n", g->what, bad);
            t->n_fail++;
        }
        free(h);
        tw_mem_free(t->gpu, g->base);
    }
    t->n_g = 0;
}

static float *dev_put(tw_backend *be, const float *host, size_t n) {
    float *d = tw_mem_alloc(be, n * sizeof *d);
    tw_mem_from_host(be, d, host, n * sizeof *d);
    return d;
}

static float *host_get(tw_backend *be, const float *dev, size_t n) {
    float *h = malloc(n * sizeof *h);
    TW_ASSERT(h);
    tw_mem_to_host(be, h, dev, n * sizeof *h);
    return h;
}

static float *rnd(ctx *t, size_t n, float scale) {
    float *x = tb_alloc_rand(&t->rng, n, scale);
    /* bf16 runs: give both backends the values a bf16 tensor can hold. */
    if (t->bf16) tb_round_bf16(x, n);
    return x;
}

/* A CUDA tensor in guarded memory, holding the NCHW host values (or zeros). */
static tw_tensor gpu_tensor(ctx *t, int n, int c, int h, int w, tw_dtype dt, tw_layout l,
                            const float *nchw, const char *what) {
    tw_tensor x = {NULL, n, c, h, w, dt, l};
    x.data = gpu_guarded(t, tw_tensor_bytes(&x), what);
    if (nchw) tb_put(t->gpu, &x, nchw);
    return x;
}

static tw_tensor cpu_tensor(ctx *t, int n, int c, int h, int w, tw_layout l, const float *nchw) {
    tw_tensor x = tb_tensor(t->cpu, n, c, h, w, TW_F32, l);
    if (nchw) tb_put(t->cpu, &x, nchw);
    return x;
}

static float *tensor_get(tw_backend *be, const tw_tensor *x) {
    float *h = malloc((size_t)x->n * x->c * x->h * x->w * sizeof *h);
    TW_ASSERT(h);
    tb_get(be, h, x);
    return h;
}

/* ---- comparison ------------------------------------------------------------------------------ */

static void compare(ctx *t, const char *what, const float *got, const float *want, size_t n) {
    double se = 0, sw = 0, max_abs = 0;
    size_t n_nonfinite_bad = 0, first_bad = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        float g = got[i], w = want[i];
        if (!isfinite(g) || !isfinite(w)) {
            int same = (isnan(g) && isnan(w)) || (isinf(g) && isinf(w) && (g > 0) == (w > 0));
            if (!same) {
                n_nonfinite_bad++;
                if (first_bad == (size_t)-1) first_bad = i;
            }
            continue;
        }
        double e = (double)g - w;
        se += e * e;
        sw += (double)w * w;
        if (fabs(e) > max_abs) max_abs = fabs(e);
    }
    double nmse = se / (sw > 1e-30 ? sw : 1e-30);
    int ok = nmse <= t->tol && n_nonfinite_bad == 0;
    t->n_check++;
    if (!ok) t->n_fail++;
    printf("%s %-46s n=%-8zu nmse=%.3e (tol %.0e) max_abs=%.3e", ok ? "PASS" : "FAIL", what, n,
           nmse, t->tol, max_abs);
    if (n_nonfinite_bad)
        printf(" non-finite mismatches=%zu first [%zu] cuda %g cpu %g", n_nonfinite_bad, first_bad,
               got[first_bad], want[first_bad]);
    printf("\n");
}

static void compare_scalar(ctx *t, const char *what, double got, double want) {
    compare(t, what, &(float){(float)got}, &(float){(float)want}, 1);
}

/* ---- convolution ----------------------------------------------------------------------------- */

static void check_conv(ctx *t, int n, int ci, int h, int w, int co, int k, int s, int pad,
                       int need_dx, tw_layout gpu_x_layout) {
    char name[160];
    snprintf(name, sizeof name, "conv %dx%d/%d p%d %d->%d @%dx%d n%d x=%s", k, k, s, pad, ci, co,
             h, w, n, tw_layout_name(gpu_x_layout));
    tw_err err = {0};
    float *x = rnd(t, (size_t)n * ci * h * w, 1.f), *wt = rnd(t, (size_t)co * ci * k * k, 0.3f);
    /* A second layer of the same shape shares the plan: its forward runs between this layer's
     * forward and backward, as in a network, and must not leak into this layer's backward. */
    float *w_other = rnd(t, (size_t)co * ci * k * k, 0.3f);
    tw_conv_desc dc = {n, ci, h, w, co, k, s, pad, need_dx, TW_LAYOUT_NCHW, 0, NULL};
    tw_conv_desc dg = dc;
    dg.x_layout = gpu_x_layout;
    tw_conv_plan *pc = NULL, *pg = NULL;
    if (tw_conv_plan_make(t->cpu, &pc, &dc, &err) != TW_OK ||
        tw_conv_plan_make(t->gpu, &pg, &dg, &err) != TW_OK) {
        printf("FAIL %s: plan: %s\n", name, err.msg);
        t->n_fail++;
        return;
    }
    tw_tensor yc0 = tw_conv_plan_y(pc), yg0 = tw_conv_plan_y(pg);
    size_t ny = (size_t)yc0.n * yc0.c * yc0.h * yc0.w;
    float *dy = rnd(t, ny, 1.f);
    /* CPU */
    tw_tensor xc = cpu_tensor(t, n, ci, h, w, TW_LAYOUT_NCHW, x);
    tw_tensor yc = cpu_tensor(t, yc0.n, yc0.c, yc0.h, yc0.w, yc0.layout, NULL);
    tw_tensor dyc = cpu_tensor(t, yc0.n, yc0.c, yc0.h, yc0.w, yc0.layout, dy);
    tw_tensor dxc = cpu_tensor(t, n, ci, h, w, TW_LAYOUT_NCHW, NULL);
    float *wc = dev_put(t->cpu, wt, (size_t)co * ci * k * k);
    float *dwc = tw_mem_alloc(t->cpu, (size_t)co * ci * k * k * sizeof(float));
    float *woc = dev_put(t->cpu, w_other, (size_t)co * ci * k * k);
    tw_tensor yoc = cpu_tensor(t, yc0.n, yc0.c, yc0.h, yc0.w, yc0.layout, NULL);
    tw_conv_forward(t->cpu, pc, &yc, &xc, wc);
    tw_conv_forward(t->cpu, pc, &yoc, &xc, woc);
    if (need_dx) tw_conv_backward_data(t->cpu, pc, &dxc, &dyc, wc);
    tw_conv_backward_weights(t->cpu, pc, dwc, &dyc, &xc);
    /* CUDA */
    tw_dtype act = tw_backend_act_dtype(t->gpu);
    tw_tensor xg = gpu_tensor(t, n, ci, h, w, act, gpu_x_layout, x, "conv x");
    tw_tensor yg = gpu_tensor(t, yg0.n, yg0.c, yg0.h, yg0.w, yg0.dtype, yg0.layout, NULL, "conv y");
    tw_tensor dyg = gpu_tensor(t, yg0.n, yg0.c, yg0.h, yg0.w, yg0.dtype, yg0.layout, dy, "conv dy");
    tw_tensor dxg = gpu_tensor(t, n, ci, h, w, act, gpu_x_layout, NULL, "conv dx");
    float *wg = dev_put(t->gpu, wt, (size_t)co * ci * k * k);
    float *dwg = gpu_guarded(t, (size_t)co * ci * k * k * sizeof(float), "conv dw");
    float *wog = dev_put(t->gpu, w_other, (size_t)co * ci * k * k);
    tw_tensor yog = gpu_tensor(t, yg0.n, yg0.c, yg0.h, yg0.w, yg0.dtype, yg0.layout, NULL, "conv y (other layer)");
    tw_conv_forward(t->gpu, pg, &yg, &xg, wg);
    tw_conv_forward(t->gpu, pg, &yog, &xg, wog);
    if (need_dx) tw_conv_backward_data(t->gpu, pg, &dxg, &dyg, wg);
    tw_conv_backward_weights(t->gpu, pg, dwg, &dyg, &xg);

    char what[200];
    float *a = tensor_get(t->gpu, &yg), *b = tensor_get(t->cpu, &yc);
    snprintf(what, sizeof what, "%s fwd", name);
    compare(t, what, a, b, ny);
    free(a);
    free(b);
    if (need_dx) {
        a = tensor_get(t->gpu, &dxg);
        b = tensor_get(t->cpu, &dxc);
        snprintf(what, sizeof what, "%s bwd-data", name);
        compare(t, what, a, b, (size_t)n * ci * h * w);
        free(a);
        free(b);
    }
    a = host_get(t->gpu, dwg, (size_t)co * ci * k * k);
    b = host_get(t->cpu, dwc, (size_t)co * ci * k * k);
    snprintf(what, sizeof what, "%s bwd-weights", name);
    compare(t, what, a, b, (size_t)co * ci * k * k);
    free(a);
    free(b);
    guards_check(t);
    tw_mem_free(t->gpu, wg);
    tw_mem_free(t->gpu, wog);
    tw_conv_plan_free(t->gpu, pg);
    tb_tensor_free(t->cpu, &yoc);
    tw_mem_free(t->cpu, woc);
    free(w_other);
    tb_tensor_free(t->cpu, &xc);
    tb_tensor_free(t->cpu, &yc);
    tb_tensor_free(t->cpu, &dyc);
    tb_tensor_free(t->cpu, &dxc);
    tw_mem_free(t->cpu, wc);
    tw_mem_free(t->cpu, dwc);
    tw_conv_plan_free(t->cpu, pc);
    free(x);
    free(wt);
    free(dy);
}

/* ---- batch norm (2-D) ------------------------------------------------------------------------ */

static void check_bn(ctx *t, int n, int c, int h, int w, int relu) {
    char name[120], what[180];
    snprintf(name, sizeof name, "bn%s [%d,%d,%d,%d]", relu ? "+relu" : "", n, c, h, w);
    tw_err err = {0};
    size_t nx = (size_t)n * c * h * w;
    float *x = rnd(t, nx, 2.f), *dy = rnd(t, nx, 1.f);
    for (size_t i = 0; i < nx; i++) x[i] += 0.5f;   /* a non-zero mean */
    float *gamma = rnd(t, c, 1.f), *beta = rnd(t, c, 0.5f), *rm = rnd(t, c, 0.2f), *rv = rnd(t, c, 0.2f);
    for (int i = 0; i < c; i++) rv[i] += 1.f;
    tw_bn_desc dc = {n, c, h, w, TW_LAYOUT_NCHW, relu, 1e-5f, 0.1f, 0};
    tw_bn_desc dg = dc;
    dg.layout = TW_LAYOUT_NHWC;
    tw_bn_plan *pc = NULL, *pg = NULL;
    if (tw_bn_plan_make(t->cpu, &pc, &dc, &err) != TW_OK ||
        tw_bn_plan_make(t->gpu, &pg, &dg, &err) != TW_OK) {
        printf("FAIL %s: plan: %s\n", name, err.msg);
        t->n_fail++;
        return;
    }
    tw_backend *be[2] = {t->gpu, t->cpu};
    tw_bn_plan *p[2] = {pg, pc};
    float *out[2][8];   /* y, mean, var, run_mean, run_var, dx, dgamma, dbeta ... then y_eval */
    float *y_eval[2];
    for (int side = 0; side < 2; side++) {
        tw_backend *b = be[side];
        int g = side == 0;
        tw_dtype dt = g ? tw_backend_act_dtype(b) : TW_F32;
        tw_layout l = g ? TW_LAYOUT_NHWC : TW_LAYOUT_NCHW;
        tw_tensor xt = g ? gpu_tensor(t, n, c, h, w, dt, l, x, "bn x") : cpu_tensor(t, n, c, h, w, l, x);
        tw_tensor dyt = g ? gpu_tensor(t, n, c, h, w, dt, l, dy, "bn dy") : cpu_tensor(t, n, c, h, w, l, dy);
        tw_tensor yt = g ? gpu_tensor(t, n, c, h, w, dt, l, NULL, "bn y") : cpu_tensor(t, n, c, h, w, l, NULL);
        tw_tensor ye = g ? gpu_tensor(t, n, c, h, w, dt, l, NULL, "bn y eval") : cpu_tensor(t, n, c, h, w, l, NULL);
        tw_tensor dxt = g ? gpu_tensor(t, n, c, h, w, dt, l, NULL, "bn dx") : cpu_tensor(t, n, c, h, w, l, NULL);
        size_t ws_b = tw_bn_plan_ws_bytes(p[side]);
        void *ws = ws_b ? (g ? gpu_guarded(t, ws_b, "bn ws") : tw_mem_alloc(b, ws_b)) : NULL;
        float *ga = dev_put(b, gamma, c), *bt = dev_put(b, beta, c);
        float *rmd = dev_put(b, rm, c), *rvd = dev_put(b, rv, c);
        float *sm = g ? gpu_guarded(t, c * sizeof(float), "bn save_mean") : tw_mem_alloc(b, c * sizeof(float));
        float *sv = g ? gpu_guarded(t, c * sizeof(float), "bn save_var") : tw_mem_alloc(b, c * sizeof(float));
        float *dga = g ? gpu_guarded(t, c * sizeof(float), "bn dgamma") : tw_mem_alloc(b, c * sizeof(float));
        float *dbe = g ? gpu_guarded(t, c * sizeof(float), "bn dbeta") : tw_mem_alloc(b, c * sizeof(float));
        tw_bn_forward_train(b, p[side], &yt, sm, sv, ws, &xt, ga, bt, rmd, rvd);
        tw_bn_backward(b, p[side], &dxt, dga, dbe, &dyt, &xt, sm, sv, ws, ga);
        tw_bn_forward_eval(b, p[side], &ye, &xt, ga, bt, rmd, rvd);
        out[side][0] = tensor_get(b, &yt);
        out[side][1] = host_get(b, sm, c);
        out[side][2] = host_get(b, sv, c);
        out[side][3] = host_get(b, rmd, c);
        out[side][4] = host_get(b, rvd, c);
        out[side][5] = tensor_get(b, &dxt);
        out[side][6] = host_get(b, dga, c);
        out[side][7] = host_get(b, dbe, c);
        y_eval[side] = tensor_get(b, &ye);
        if (g) {
            guards_check(t);
        } else {
            tb_tensor_free(b, &xt); tb_tensor_free(b, &dyt); tb_tensor_free(b, &yt);
            tb_tensor_free(b, &ye); tb_tensor_free(b, &dxt);
            tw_mem_free(b, ws); tw_mem_free(b, sm); tw_mem_free(b, sv);
            tw_mem_free(b, dga); tw_mem_free(b, dbe);
        }
        tw_mem_free(b, ga); tw_mem_free(b, bt); tw_mem_free(b, rmd); tw_mem_free(b, rvd);
    }
    static const char *names[8] = {"fwd y", "save_mean", "save_var", "running_mean",
                                   "running_var", "bwd dx", "dgamma", "dbeta"};
    size_t sizes[8] = {nx, c, c, c, c, nx, c, c};
    for (int i = 0; i < 8; i++) {
        snprintf(what, sizeof what, "%s %s", name, names[i]);
        compare(t, what, out[0][i], out[1][i], sizes[i]);
        free(out[0][i]);
        free(out[1][i]);
    }
    snprintf(what, sizeof what, "%s eval y", name);
    compare(t, what, y_eval[0], y_eval[1], nx);
    free(y_eval[0]);
    free(y_eval[1]);
    tw_bn_plan_free(t->gpu, pg);
    tw_bn_plan_free(t->cpu, pc);
    free(x); free(dy); free(gamma); free(beta); free(rm); free(rv);
}

/* ---- element-wise and pooling ---------------------------------------------------------------- */

static void check_eltwise(ctx *t, int n, int c, int h, int w) {
    size_t nx = (size_t)n * c * h * w;
    float *a = rnd(t, nx, 1.f), *b = rnd(t, nx, 1.f), *dy = rnd(t, nx, 1.f);
    a[3] = NAN;                      /* NaN and Inf must come out where the CPU puts them */
    a[7] = INFINITY;
    b[11] = -INFINITY;
    float *res[2][3];
    for (int side = 0; side < 2; side++) {
        int g = side == 0;
        tw_backend *be = g ? t->gpu : t->cpu;
        tw_dtype dt = g ? tw_backend_act_dtype(be) : TW_F32;
        tw_layout l = g ? TW_LAYOUT_NHWC : TW_LAYOUT_NCHW;
#define T_(name, src) (g ? gpu_tensor(t, n, c, h, w, dt, l, src, name) : cpu_tensor(t, n, c, h, w, l, src))
        tw_tensor at = T_("a", a), bt = T_("b", b), dyt = T_("dy", dy);
        tw_tensor y1 = T_("add_relu y", NULL), y2 = T_("add y", NULL), dx = T_("relu dx", NULL);
#undef T_
        tw_add_relu_forward(be, &y1, &at, &bt);
        tw_add(be, &y2, &at, &bt);
        tw_relu_backward(be, &dx, &dyt, &y1);
        res[side][0] = tensor_get(be, &y1);
        res[side][1] = tensor_get(be, &y2);
        res[side][2] = tensor_get(be, &dx);
        if (g) {
            guards_check(t);
        } else {
            tb_tensor_free(be, &at); tb_tensor_free(be, &bt); tb_tensor_free(be, &dyt);
            tb_tensor_free(be, &y1); tb_tensor_free(be, &y2); tb_tensor_free(be, &dx);
        }
    }
    compare(t, "add_relu (with NaN, Inf)", res[0][0], res[1][0], nx);
    compare(t, "add (with NaN, Inf)", res[0][1], res[1][1], nx);
    compare(t, "relu_backward", res[0][2], res[1][2], nx);
    for (int i = 0; i < 3; i++) {
        free(res[0][i]);
        free(res[1][i]);
    }
    free(a); free(b); free(dy);
}

static void check_pool(ctx *t, int n, int c, int h, int w) {
    char name[120];
    snprintf(name, sizeof name, "maxpool [%d,%d,%d,%d]", n, c, h, w);
    tw_err err = {0};
    size_t nx = (size_t)n * c * h * w;
    float *x = rnd(t, nx, 1.f);
    x[5] = NAN;
    tw_pool_plan *pc = NULL, *pg = NULL;
    if (tw_maxpool_plan_make(t->cpu, &pc, n, c, h, w, TW_LAYOUT_NCHW, &err) != TW_OK ||
        tw_maxpool_plan_make(t->gpu, &pg, n, c, h, w, TW_LAYOUT_NHWC, &err) != TW_OK) {
        printf("FAIL %s: plan: %s\n", name, err.msg);
        t->n_fail++;
        return;
    }
    tw_tensor ys = tw_maxpool_plan_y(pc);
    size_t ny = (size_t)ys.n * ys.c * ys.h * ys.w;
    float *dy = rnd(t, ny, 1.f), *dpool = rnd(t, (size_t)n * c, 1.f);
    float *res[2][4];
    for (int side = 0; side < 2; side++) {
        int g = side == 0;
        tw_backend *be = g ? t->gpu : t->cpu;
        tw_pool_plan *p = g ? pg : pc;
        tw_tensor y0 = tw_maxpool_plan_y(p);
        tw_dtype dt = g ? tw_backend_act_dtype(be) : TW_F32;
        tw_layout l = g ? TW_LAYOUT_NHWC : TW_LAYOUT_NCHW;
        tw_tensor xt = g ? gpu_tensor(t, n, c, h, w, dt, l, x, "pool x") : cpu_tensor(t, n, c, h, w, l, x);
        tw_tensor dxt = g ? gpu_tensor(t, n, c, h, w, dt, l, NULL, "pool dx") : cpu_tensor(t, n, c, h, w, l, NULL);
        tw_tensor dat = g ? gpu_tensor(t, n, c, h, w, dt, l, NULL, "avgpool dx") : cpu_tensor(t, n, c, h, w, l, NULL);
        tw_tensor yt = g ? gpu_tensor(t, y0.n, y0.c, y0.h, y0.w, dt, y0.layout, NULL, "pool y")
                         : cpu_tensor(t, y0.n, y0.c, y0.h, y0.w, y0.layout, NULL);
        tw_tensor dyt = g ? gpu_tensor(t, y0.n, y0.c, y0.h, y0.w, dt, y0.layout, dy, "pool dy")
                          : cpu_tensor(t, y0.n, y0.c, y0.h, y0.w, y0.layout, dy);
        size_t ws_b = tw_maxpool_plan_ws_bytes(p);
        void *ws = g ? gpu_guarded(t, ws_b, "pool ws") : tw_mem_alloc(be, ws_b);
        float *avg = g ? gpu_guarded(t, (size_t)n * c * sizeof(float), "avgpool y")
                       : tw_mem_alloc(be, (size_t)n * c * sizeof(float));
        float *davg = dev_put(be, dpool, (size_t)n * c);
        tw_maxpool_forward(be, p, &yt, ws, &xt);
        tw_maxpool_backward(be, p, &dxt, &dyt, ws);
        tw_avgpool_forward(be, avg, &xt);
        tw_avgpool_backward(be, &dat, davg);
        res[side][0] = tensor_get(be, &yt);
        res[side][1] = tensor_get(be, &dxt);
        res[side][2] = host_get(be, avg, (size_t)n * c);
        res[side][3] = tensor_get(be, &dat);
        tw_mem_free(be, davg);
        if (g) {
            guards_check(t);
        } else {
            tb_tensor_free(be, &xt); tb_tensor_free(be, &dxt); tb_tensor_free(be, &dat);
            tb_tensor_free(be, &yt); tb_tensor_free(be, &dyt);
            tw_mem_free(be, ws); tw_mem_free(be, avg);
        }
    }
    char what[180];
    snprintf(what, sizeof what, "%s fwd (with NaN)", name);
    compare(t, what, res[0][0], res[1][0], ny);
    snprintf(what, sizeof what, "%s bwd", name);
    compare(t, what, res[0][1], res[1][1], nx);
    snprintf(what, sizeof what, "avgpool [%d,%d,%d,%d] fwd (with NaN)", n, c, h, w);
    compare(t, what, res[0][2], res[1][2], (size_t)n * c);
    snprintf(what, sizeof what, "avgpool [%d,%d,%d,%d] bwd", n, c, h, w);
    compare(t, what, res[0][3], res[1][3], nx);
    for (int i = 0; i < 4; i++) {
        free(res[0][i]);
        free(res[1][i]);
    }
    tw_maxpool_plan_free(t->gpu, pg);
    tw_maxpool_plan_free(t->cpu, pc);
    free(x); free(dy); free(dpool);
}

/* ---- dense ----------------------------------------------------------------------------------- */

static void check_gemm(ctx *t, int ta, int tb, int m, int n, int k) {
    int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *a = rnd(t, na, 1.f), *b = rnd(t, nb, 1.f), *c = rnd(t, nc, 1.f);
    float *res[2];
    for (int side = 0; side < 2; side++) {
        tw_backend *be = side == 0 ? t->gpu : t->cpu;
        float *ad = dev_put(be, a, na), *bd = dev_put(be, b, nb);
        float *cd = side == 0 ? gpu_guarded(t, nc * sizeof(float), "gemm c") : tw_mem_alloc(be, nc * sizeof(float));
        tw_mem_from_host(be, cd, c, nc * sizeof(float));
        tw_gemm(be, ta, tb, m, n, k, 0.7f, ad, lda, bd, ldb, 0.3f, cd, ldc);
        res[side] = host_get(be, cd, nc);
        tw_mem_free(be, ad);
        tw_mem_free(be, bd);
        if (side == 0) guards_check(t);
        else tw_mem_free(be, cd);
    }
    char what[120];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d m=%d n=%d k=%d (padded ld)", ta, tb, m, n, k);
    compare(t, what, res[0], res[1], nc);
    free(res[0]); free(res[1]); free(a); free(b); free(c);
}

static void check_bias(ctx *t, int n, int d) {
    size_t nd = (size_t)n * d;
    float *x = rnd(t, nd, 2.f), *dy = rnd(t, nd, 1.f), *bias = rnd(t, d, 1.f);
    float *res[2][2];
    for (int side = 0; side < 2; side++) {
        int g = side == 0;
        tw_backend *be = g ? t->gpu : t->cpu;
        float *xd = dev_put(be, x, nd), *dyd = dev_put(be, dy, nd), *bd = dev_put(be, bias, d);
        float *yb = g ? gpu_guarded(t, nd * sizeof(float), "bias y") : tw_mem_alloc(be, nd * sizeof(float));
        float *db = g ? gpu_guarded(t, d * sizeof(float), "dbias") : tw_mem_alloc(be, d * sizeof(float));
        tw_mem_copy(be, yb, xd, nd * sizeof(float));
        tw_bias_forward(be, yb, bd, n, d);
        tw_bias_backward(be, db, dyd, n, d);
        res[side][0] = host_get(be, yb, nd);
        res[side][1] = host_get(be, db, d);
        tw_mem_free(be, xd);
        tw_mem_free(be, dyd);
        tw_mem_free(be, bd);
        if (g) {
            guards_check(t);
        } else {
            tw_mem_free(be, yb);
            tw_mem_free(be, db);
        }
    }
    char what[120];
    snprintf(what, sizeof what, "bias fwd [%d,%d]", n, d);
    compare(t, what, res[0][0], res[1][0], nd);
    snprintf(what, sizeof what, "bias bwd [%d,%d]", n, d);
    compare(t, what, res[0][1], res[1][1], d);
    for (int i = 0; i < 2; i++) {
        free(res[0][i]);
        free(res[1][i]);
    }
    free(x); free(dy); free(bias);
}

/* f64 backend memory -> host f32 (for compare). */
static float *host_get_f64(tw_backend *be, const double *dev, size_t n) {
    double *h = malloc(n * sizeof *h);
    float *f = malloc(n * sizeof *f);
    TW_ASSERT(h && f);
    tw_mem_to_host(be, h, dev, n * sizeof *h);
    for (size_t i = 0; i < n; i++) f[i] = (float)h[i];
    free(h);
    return f;
}

/* The external-statistics BN ops (the synchronised BN's, backend.h: tw_bn_sums ...) in the order
 * the layer runs them, with this rank's sums standing in for the global ones: on activations
 * (rows 0: the GPU's NHWC act dtype against the CPU's NCHW f32) or on f32 rows [n, c, 1, 1]
 * (rows 1, the projector's; then h = w = 1). */
static void check_bn_sync(ctx *t, int n, int c, int h, int w, int relu, int rows) {
    enum { N_OUT = 13 };
    size_t nx = (size_t)n * c * h * w, c2 = 2 * (size_t)c;
    double cnt = (double)n * h * w;
    float *x = rnd(t, nx, 1.f), *dy = rnd(t, nx, 1.f), *gamma = rnd(t, c, 1.f), *beta = rnd(t, c, 0.5f);
    float *shift = rnd(t, c, 0.2f), *rm = rnd(t, c, 0.2f), *rv = rnd(t, c, 0.2f);
    for (size_t i = 0; i < nx; i++) x[i] += 2.f;
    for (int i = 0; i < c; i++) shift[i] += 2.f, rv[i] += 1.f;
    if (t->bf16 && !rows) tb_round_bf16(x, nx);
    float *res[2][N_OUT];
    for (int side = 0; side < 2; side++) {
        int g = side == 0;
        tw_backend *be = g ? t->gpu : t->cpu;
        tw_dtype dt = rows || !g ? TW_F32 : tw_backend_act_dtype(be);
        tw_layout l = rows || g ? TW_LAYOUT_NHWC : TW_LAYOUT_NCHW;
        tw_bn_desc d = {n, c, h, w, l, relu, 1e-5f, 0.1f, rows};
        tw_bn_plan *p = NULL;
        tw_err err = {0};
        TW_ASSERT(tw_bn_plan_make(be, &p, &d, &err) == TW_OK);
#define T_(name, src) (g ? gpu_tensor(t, n, c, h, w, dt, l, src, name) : cpu_tensor(t, n, c, h, w, l, src))
        tw_tensor xt = T_("bn sync x", x), dyt = T_("bn sync dy", dy), yt = T_("bn sync y", NULL);
        tw_tensor dxt = T_("bn sync dx", NULL);
#undef T_
#define OUT_(nm, bytes) (g ? gpu_guarded(t, (bytes), nm) : tw_mem_alloc(be, (bytes)))
        float *ga = dev_put(be, gamma, c), *bt = dev_put(be, beta, c), *sh = dev_put(be, shift, c);
        float *rmd = OUT_("bn sync run_mean", c * sizeof(float)), *rvd = OUT_("bn sync run_var", c * sizeof(float));
        tw_mem_from_host(be, rmd, rm, c * sizeof(float));
        tw_mem_from_host(be, rvd, rv, c * sizeof(float));
        double *sums = OUT_("bn sync sums", c2 * sizeof(double)), *stats = OUT_("bn sync stats", c2 * sizeof(double));
        double *bsums = OUT_("bn sync bwd sums", c2 * sizeof(double));
        float *mean = OUT_("bn sync mean", c * sizeof(float)), *inv_std = OUT_("bn sync inv_std", c * sizeof(float));
        float *dga = OUT_("bn sync dgamma", c * sizeof(float)), *dbe = OUT_("bn sync dbeta", c * sizeof(float));
        int *bad = OUT_("bn sync bad", sizeof(int));
#undef OUT_
        tw_mem_zero(be, bad, sizeof(int));
        tw_bn_sums(be, p, sums, &xt, sh);
        tw_bn_stats_finish(be, mean, inv_std, stats, bad, sums, sh, c, cnt, 1e-5f);
        tw_bn_forward_stats(be, p, &yt, &xt, mean, inv_std, ga, bt);
        tw_bn_backward_sums(be, p, bsums, dga, dbe, 0, &dyt, &xt, &yt, mean, inv_std);
        tw_bn_backward_stats(be, p, &dxt, &dyt, &xt, &yt, mean, inv_std, ga, bsums, cnt);
        tw_bn_running_update(be, rmd, rvd, stats, c, 0.1f, cnt / (cnt - 1), NULL);
        int raised = 1, *skip = tw_mem_alloc(be, sizeof(int));   /* a second update, skipped */
        tw_mem_from_host(be, skip, &raised, sizeof raised);
        tw_bn_running_update(be, rmd, rvd, stats, c, 0.1f, cnt / (cnt - 1), skip);
        tw_mem_free(be, skip);
        int bad_h = 0;
        tw_mem_to_host(be, &bad_h, bad, sizeof bad_h);
        res[side][0] = host_get_f64(be, sums, c2);
        res[side][1] = host_get_f64(be, stats, c2);
        res[side][2] = host_get(be, mean, c);
        res[side][3] = host_get(be, inv_std, c);
        res[side][4] = tensor_get(be, &yt);
        res[side][5] = host_get_f64(be, bsums, c2);
        res[side][6] = host_get(be, dga, c);
        res[side][7] = host_get(be, dbe, c);
        res[side][8] = tensor_get(be, &dxt);
        res[side][9] = host_get(be, rmd, c);
        res[side][10] = host_get(be, rvd, c);
        res[side][11] = malloc(sizeof(float));
        res[side][11][0] = (float)bad_h + 1.0f;   /* 1 (clear) on both sides */
        /* The f32 shares accumulate (+=) onto what is there: twice the sums now. */
        tw_bn_backward_sums(be, p, bsums, dga, dbe, 1, &dyt, &xt, &yt, mean, inv_std);
        res[side][12] = host_get(be, dga, c);
        tw_mem_free(be, ga);
        tw_mem_free(be, bt);
        tw_mem_free(be, sh);
        if (g) {
            guards_check(t);
        } else {
            void *o[] = {rmd, rvd, sums, stats, bsums, mean, inv_std, dga, dbe, bad};
            for (size_t i = 0; i < sizeof o / sizeof o[0]; i++) tw_mem_free(be, o[i]);
            tb_tensor_free(be, &xt);
            tb_tensor_free(be, &dyt);
            tb_tensor_free(be, &yt);
            tb_tensor_free(be, &dxt);
        }
        tw_bn_plan_free(be, p);
    }
    static const char *names[N_OUT] = {"sums", "stats", "mean", "inv_std", "fwd", "bwd sums", "dgamma",
                                       "dbeta", "bwd dx", "running mean", "running var", "bad flag",
                                       "dgamma accumulated"};
    size_t sizes[N_OUT] = {c2, c2, c, c, nx, c2, c, c, nx, c, c, 1, c};
    for (int i = 0; i < N_OUT; i++) {
        char what[120];
        snprintf(what, sizeof what, "bn sync %s [%d,%d,%d,%d] relu=%d%s", names[i], n, c, h, w, relu,
                 rows ? " rows" : "");
        compare(t, what, res[0][i], res[1][i], sizes[i]);
        free(res[0][i]);
        free(res[1][i]);
    }
    free(x); free(dy); free(gamma); free(beta); free(shift); free(rm); free(rv);
}

/* The classification heads' ops: inference-mode BN backward (mask from the eval forward's y,
 * weights and without), f32 relu, sigmoid and blend with their backwards. */
static void check_act(ctx *t, int n, int c, int h, int w, int relu) {
    char what[160];
    size_t nx = (size_t)n * c * h * w;
    float *x = rnd(t, nx, 2.f), *dy = rnd(t, nx, 1.f), *g3 = rnd(t, nx, 0.5f);
    float *gamma = rnd(t, c, 1.f), *beta = rnd(t, c, 0.5f), *rm = rnd(t, c, 0.2f), *rv = rnd(t, c, 0.2f);
    for (int i = 0; i < c; i++) rv[i] += 1.f;
    for (size_t i = 0; i < nx; i++) g3[i] += 0.5f;
    float *res[2][9];
    for (int side = 0; side < 2; side++) {
        int g = side == 0;
        tw_backend *be = g ? t->gpu : t->cpu;
        tw_dtype dt = g ? tw_backend_act_dtype(be) : TW_F32;
        tw_layout l = g ? TW_LAYOUT_NHWC : TW_LAYOUT_NCHW;
        tw_bn_desc d = {n, c, h, w, l, relu, 1e-5f, 0.1f, 0};
        tw_bn_plan *p = NULL;
        tw_err err = {0};
        TW_ASSERT(tw_bn_plan_make(be, &p, &d, &err) == TW_OK);
#define T_(name, src) (g ? gpu_tensor(t, n, c, h, w, dt, l, src, name) : cpu_tensor(t, n, c, h, w, l, src))
        tw_tensor xt = T_("bn eval x", x), dyt = T_("bn eval dy", dy), yt = T_("bn eval y", NULL);
        tw_tensor dxt = T_("bn eval dx", NULL), dx2 = T_("bn eval dx (no weights)", NULL);
#undef T_
#define OUT_(nm, cnt) (g ? gpu_guarded(t, (cnt) * sizeof(float), nm) : tw_mem_alloc(be, (cnt) * sizeof(float)))
        float *ga = dev_put(be, gamma, c), *bt = dev_put(be, beta, c), *rmd = dev_put(be, rm, c);
        float *rvd = dev_put(be, rv, c), *xd = dev_put(be, x, nx), *dyd = dev_put(be, dy, nx);
        float *gd = dev_put(be, g3, nx);
        float *dga = OUT_("bn eval dgamma", c), *dbe = OUT_("bn eval dbeta", c);
        float *ry = OUT_("relu y", nx), *rdx = OUT_("relu dx", nx), *sy = OUT_("sigmoid y", nx);
        float *sdx = OUT_("sigmoid dx", nx), *by = OUT_("blend y", nx), *bdg = OUT_("blend dg", nx);
        float *bda = OUT_("blend da", nx), *bdb = OUT_("blend db", nx);
#undef OUT_
        tw_bn_forward_eval(be, p, &yt, &xt, ga, bt, rmd, rvd);
        tw_bn_backward_eval(be, &dxt, dga, dbe, &dyt, &xt, relu ? &yt : NULL, ga, rmd, rvd, 1e-5f, relu);
        tw_bn_backward_eval(be, &dx2, NULL, NULL, &dyt, &xt, relu ? &yt : NULL, ga, rmd, rvd, 1e-5f, relu);
        tw_relu_forward_f32(be, ry, xd, nx);
        tw_relu_backward_f32(be, rdx, dyd, ry, nx);
        tw_sigmoid_forward(be, sy, xd, nx);
        tw_sigmoid_backward(be, sdx, dyd, sy, nx);
        tw_blend_forward(be, by, gd, xd, dyd, nx);
        tw_blend_backward(be, bdg, bda, bdb, dyd, gd, xd, sy, nx);
        res[side][0] = tensor_get(be, &dxt);
        res[side][1] = host_get(be, dga, c);
        res[side][2] = host_get(be, dbe, c);
        res[side][3] = tensor_get(be, &dx2);
        res[side][4] = host_get(be, rdx, nx);
        res[side][5] = host_get(be, sdx, nx);
        res[side][6] = host_get(be, by, nx);
        res[side][7] = host_get(be, bdg, nx);
        res[side][8] = host_get(be, bdb, nx);
        float *in[7] = {ga, bt, rmd, rvd, xd, dyd, gd};
        for (int i = 0; i < 7; i++) tw_mem_free(be, in[i]);
        if (g) {
            guards_check(t);
        } else {
            tb_tensor_free(be, &xt); tb_tensor_free(be, &dyt); tb_tensor_free(be, &yt);
            tb_tensor_free(be, &dxt); tb_tensor_free(be, &dx2);
            float *o[10] = {dga, dbe, ry, rdx, sy, sdx, by, bdg, bda, bdb};
            for (int i = 0; i < 10; i++) tw_mem_free(be, o[i]);
        }
        tw_bn_plan_free(be, p);
    }
    static const char *names[9] = {"bn eval bwd dx", "bn eval bwd dgamma", "bn eval bwd dbeta",
                                   "bn eval bwd dx (no weights)", "relu_f32 fwd+bwd",
                                   "sigmoid fwd+bwd", "blend fwd", "blend bwd dg", "blend bwd db"};
    size_t sizes[9] = {nx, c, c, nx, nx, nx, nx, nx, nx};
    for (int i = 0; i < 9; i++) {
        snprintf(what, sizeof what, "%s [%d,%d,%d,%d] relu=%d", names[i], n, c, h, w, relu);
        compare(t, what, res[0][i], res[1][i], sizes[i]);
        free(res[0][i]);
        free(res[1][i]);
    }
    free(x); free(dy); free(g3); free(gamma); free(beta); free(rm); free(rv);
}

static void check_losses(ctx *t, int d, int n, int k) {
    size_t dd = (size_t)d * d, nk = (size_t)n * k;
    float *c = rnd(t, dd, 0.5f), *logits = rnd(t, nk, 4.f), *targets = malloc(nk * sizeof(float));
    TW_ASSERT(targets);
    for (size_t i = 0; i < nk; i++) targets[i] = tw_rng_uniform(&t->rng) < 0.3f;
    double loss[2][2];
    float *grad[2][2];
    for (int side = 0; side < 2; side++) {
        tw_backend *be = side == 0 ? t->gpu : t->cpu;
        float *cd = dev_put(be, c, dd), *ld = dev_put(be, logits, nk), *td = dev_put(be, targets, nk);
        float *dc = side == 0 ? gpu_guarded(t, dd * sizeof(float), "bt dc") : tw_mem_alloc(be, dd * sizeof(float));
        float *dl = side == 0 ? gpu_guarded(t, nk * sizeof(float), "bce dlogits") : tw_mem_alloc(be, nk * sizeof(float));
        loss[side][0] = tw_bt_loss(be, dc, cd, d, d / 2, 0.0051f, 0.75f);   /* DeCUR targets past d/2 */
        loss[side][1] = tw_bce_logits(be, dl, ld, td, n, k);
        grad[side][0] = host_get(be, dc, dd);
        grad[side][1] = host_get(be, dl, nk);
        tw_mem_free(be, cd); tw_mem_free(be, ld); tw_mem_free(be, td);
        if (side == 0) {
            guards_check(t);
        } else {
            tw_mem_free(be, dc);
            tw_mem_free(be, dl);
        }
    }
    compare_scalar(t, "bt_loss value", loss[0][0], loss[1][0]);
    compare(t, "bt_loss dc", grad[0][0], grad[1][0], dd);
    compare_scalar(t, "bce_logits value", loss[0][1], loss[1][1]);
    compare(t, "bce_logits dlogits", grad[0][1], grad[1][1], nk);
    for (int i = 0; i < 2; i++) {
        free(grad[0][i]);
        free(grad[1][i]);
    }
    free(c); free(logits); free(targets);
}

/* ---- optimizers ------------------------------------------------------------------------------ */

static void check_optim(ctx *t) {
    /* A 2-D tensor, a 1-D one (no decay, no adaptation), a large 2-D one, a gap left alone. */
    tw_param_seg segs[3] = {{0, 1000, 0}, {1000, 64, 1}, {1064, 70000, 0}};
    size_t n = 1064 + 70000 + 36;
    float *p0 = tb_alloc_rand(&t->rng, n, 1.f), *s0 = tb_alloc_rand(&t->rng, n, 0.1f);
    float *s1 = tb_alloc_rand(&t->rng, n, 0.1f);
    for (size_t i = 0; i < n; i++) s1[i] = s1[i] * s1[i];   /* Adam's v >= 0 */
    for (int kind = 0; kind < 5; kind++) {
        static const char *names[5] = {"adam", "adamw", "lars", "sgd", "sgd nesterov"};
        float *res[2][3];
        for (int side = 0; side < 2; side++) {
            tw_backend *be = side == 0 ? t->gpu : t->cpu;
            float *p = dev_put(be, p0, n), *m = dev_put(be, s0, n), *v = dev_put(be, s1, n);
            float *g = tw_mem_alloc(be, n * sizeof(float));
            tw_update_vals *vals = tw_mem_alloc(be, sizeof *vals);
            int *skip = tw_mem_alloc(be, sizeof(int));
            tw_update_plan *plan = NULL;
            tw_err err = {0};
            if (tw_update_plan_make(be, &plan, segs, 3, &err) != TW_OK) {
                printf("FAIL %s: update plan: %s\n", names[kind], err.msg);
                t->n_fail++;
                return;
            }
            /* Steps 1-3, then a 4th with the skip flag raised, which must change nothing. */
            for (int step = 1; step <= 4; step++) {
                int raised = step == 4;
                tw_mem_from_host(be, skip, &raised, sizeof raised);
                tw_rng gr;
                tw_rng_init(&gr, 99, (uint32_t)kind, (uint32_t)step, 0);
                float *gh = tb_alloc_rand(&gr, n, 0.5f);
                gh[segs[0].offset + 5] = 0.f;
                tw_mem_from_host(be, g, gh, n * sizeof(float));
                free(gh);
                if (kind <= 1) {
                    tw_adam_hparams h = {0.9, 0.999, 1e-8, 0.05, kind == 1};
                    tw_update_vals hv = tw_adam_vals(&h, 1e-2, step);
                    tw_mem_from_host(be, vals, &hv, sizeof hv);
                    tw_adam_update(be, plan, p, m, v, g, &h, vals, skip);
                } else if (kind == 2) {
                    tw_lars_hparams h = {0.9f, 1.5e-6f, 0.001f};
                    tw_update_vals hv = tw_rate_vals(0.2);
                    tw_mem_from_host(be, vals, &hv, sizeof hv);
                    tw_lars_update(be, plan, p, m, g, &h, vals, skip);
                } else {
                    tw_sgd_hparams h = {0.9f, 1e-4f, kind == 4};
                    tw_update_vals hv = tw_rate_vals(0.05);
                    tw_mem_from_host(be, vals, &hv, sizeof hv);
                    tw_sgd_update(be, plan, p, m, g, &h, vals, skip);
                }
            }
            tw_update_plan_free(be, plan);
            tw_mem_free(be, vals);
            tw_mem_free(be, skip);
            res[side][0] = host_get(be, p, n);
            res[side][1] = host_get(be, m, n);
            res[side][2] = host_get(be, v, n);
            tw_mem_free(be, p); tw_mem_free(be, m); tw_mem_free(be, v); tw_mem_free(be, g);
        }
        char what[120];
        snprintf(what, sizeof what, "%s: params after 3 steps and a skipped one", names[kind]);
        compare(t, what, res[0][0], res[1][0], n);
        snprintf(what, sizeof what, "%s: state after 3 steps and a skipped one", names[kind]);
        compare(t, what, res[0][1], res[1][1], n);
        if (kind <= 1) {
            snprintf(what, sizeof what, "%s: second moment after 3 steps", names[kind]);
            compare(t, what, res[0][2], res[1][2], n);
        }
        for (int i = 0; i < 3; i++) {
            free(res[0][i]);
            free(res[1][i]);
        }
    }
    /* scale_check: the flag it raises (read with tw_read_flag), and the scaled values. */
    for (int bad = 0; bad < 2; bad++) {
        float *x = tb_alloc_rand(&t->rng, n, 1.f);
        if (bad) x[n / 2] = NAN;
        int ok[2];
        float *res[2];
        for (int side = 0; side < 2; side++) {
            tw_backend *be = side == 0 ? t->gpu : t->cpu;
            float *xd = dev_put(be, x, n);
            int *flag = tw_mem_alloc(be, sizeof(int));
            tw_mem_zero(be, flag, sizeof(int));
            tw_scale_check(be, xd, n, 0.25f, flag);
            ok[side] = tw_read_flag(be, flag) == 0.0;
            tw_mem_free(be, flag);
            res[side] = host_get(be, xd, n);
            tw_mem_free(be, xd);
        }
        t->n_check++;
        int pass = ok[0] == ok[1] && ok[0] == !bad;
        if (!pass) t->n_fail++;
        printf("%s scale_check %s: cuda says %d, cpu says %d\n", pass ? "PASS" : "FAIL",
               bad ? "with a NaN" : "all finite", ok[0], ok[1]);
        compare(t, bad ? "scale_check values (with NaN)" : "scale_check values", res[0], res[1], n);
        free(res[0]);
        free(res[1]);
        free(x);
    }
    free(p0); free(s0); free(s1);
}

/* ---- asynchronous upload from pinned host memory ---------------------------------------------- */

/* Two uploads queued back to back from two host buffers, then one sync: both must land intact. */
static void check_async_upload(ctx *t) {
    size_t n = 1 << 20;
    tw_backend *be = t->gpu;
    float *h[2], *d[2];
    for (int k = 0; k < 2; k++) {
        h[k] = tw_mem_host_alloc(be, n * sizeof(float));
        tb_fill(&t->rng, h[k], n, 1.f);
        d[k] = gpu_guarded(t, n * sizeof(float), "async upload");
        tw_mem_from_host_async(be, d[k], h[k], n * sizeof(float));
    }
    tw_backend_sync(be);
    for (int k = 0; k < 2; k++) {
        float *got = host_get(be, d[k], n);
        int same = memcmp(got, h[k], n * sizeof(float)) == 0;
        t->n_check++;
        if (!same) t->n_fail++;
        printf("%s async upload %d of 2 (%zu floats) arrives bit-exact\n", same ? "PASS" : "FAIL", k + 1, n);
        free(got);
        tw_mem_host_free(be, h[k]);
    }
    guards_check(t);
}

/* ---- CUDA graph ------------------------------------------------------------------------------ */

/* Records the shape of a training step once: add_relu, gemm, bt_loss, the gradient check into a
 * flag, an SGD update whose rate comes through a pinned upload and which skips on the flag, the
 * flag's value; replays it on new inputs written into the same buffers, with a new rate in the
 * pinned table each time (the second inputs hold a NaN: the update must be skipped), and
 * compares with running the same ops directly. */
enum { GRAPH_RUNS = 2 };

typedef struct graph_bufs {
    float *a, *b, *c, *dc, *y, *p, *mu;
    int *flag;
    tw_update_vals *vals, *vals_host;   /* device, pinned host */
    tw_update_plan *plan;               /* one segment: p */
} graph_bufs;

/* The ops of one step; returns the loss and *flag_value (both NaN while recording). */
static double graph_ops(tw_backend *be, graph_bufs *g, int d, double *flag_value) {
    size_t dd = (size_t)d * d;
    tw_tensor at = {g->a, 1, 1, d, d, TW_F32, TW_LAYOUT_NCHW}, bt = {g->b, 1, 1, d, d, TW_F32, TW_LAYOUT_NCHW};
    tw_tensor ct = {g->c, 1, 1, d, d, TW_F32, TW_LAYOUT_NCHW};
    tw_sgd_hparams h = {0.9f, 1e-3f, 0};
    tw_mem_zero(be, g->flag, sizeof(int));
    tw_add_relu_forward(be, &ct, &at, &bt);
    tw_gemm(be, 1, 0, d, d, d, 1.f / d, g->c, d, g->a, d, 0.f, g->y, d);
    double loss = tw_bt_loss(be, g->dc, g->y, d, d, 0.005f, 1.0f);
    tw_scale_check(be, g->dc, dd, 0.5f, g->flag);
    tw_mem_from_host_async(be, g->vals, g->vals_host, sizeof *g->vals);
    tw_sgd_update(be, g->plan, g->p, g->mu, g->dc, &h, g->vals, g->flag);
    *flag_value = tw_read_flag(be, g->flag);
    return loss;
}

static void check_graph(ctx *t) {
    int d = 48;
    size_t dd = (size_t)d * d, nb = dd * sizeof(float);
    tw_backend *be = t->gpu;
    tw_err err = {0};
    graph_bufs g;
    float **bufs[] = {&g.a, &g.b, &g.c, &g.dc, &g.y, &g.p, &g.mu};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) *bufs[i] = tw_mem_alloc(be, nb);
    g.flag = tw_mem_alloc(be, sizeof(int));
    g.vals = tw_mem_alloc(be, sizeof *g.vals);
    g.vals_host = tw_mem_host_alloc(be, sizeof *g.vals_host);
    tw_param_seg seg = {0, dd, 0};
    if (tw_update_plan_make(be, &g.plan, &seg, 1, &err) != TW_OK) {
        printf("FAIL graph: update plan: %s\n", err.msg);
        t->n_fail++;
        return;
    }
    /* Inputs per run (the second with a NaN), and one starting point for p and mu. */
    float *in[GRAPH_RUNS][2], *p0 = rnd(t, dd, 1.f), *mu0 = rnd(t, dd, 0.1f);
    for (int r = 0; r < GRAPH_RUNS; r++)
        for (int i = 0; i < 2; i++) in[r][i] = rnd(t, dd, 0.3f);
    in[1][0][7] = NAN;
    double loss[2][GRAPH_RUNS], flag[2][GRAPH_RUNS];
    float *res[2][GRAPH_RUNS][2];
    for (int mode = 0; mode < 2; mode++) {   /* 0: direct, 1: recorded and replayed */
        if (mode == 1) {
            double v_loss, v_flag;
            tw_status st = tw_backend_graph_begin(be, &err);
            if (st == TW_OK) {
                v_loss = graph_ops(be, &g, d, &v_flag);
                st = tw_backend_graph_end(be, &err);
                t->n_check++;
                if (!isnan(v_loss) || !isnan(v_flag)) {
                    printf("FAIL graph: values read while recording gave %g, %g, want NaN\n", v_loss, v_flag);
                    t->n_fail++;
                }
            }
            if (st != TW_OK) {
                printf("FAIL graph: %s\n", err.msg);
                t->n_fail++;
                return;
            }
        }
        for (int r = 0; r < GRAPH_RUNS; r++) {
            tw_mem_from_host(be, g.a, in[r][0], nb);
            tw_mem_from_host(be, g.b, in[r][1], nb);
            tw_mem_from_host(be, g.p, p0, nb);
            tw_mem_from_host(be, g.mu, mu0, nb);
            *g.vals_host = tw_rate_vals(0.05 * (r + 1));
            if (mode == 0) {
                loss[0][r] = graph_ops(be, &g, d, &flag[0][r]);
            } else {
                double v[2];
                tw_backend_graph_replay(be, v, 2);
                loss[1][r] = v[0];
                flag[1][r] = v[1];
            }
            res[mode][r][0] = host_get(be, g.dc, dd);
            res[mode][r][1] = host_get(be, g.p, dd);
        }
    }
    for (int r = 0; r < GRAPH_RUNS; r++) {
        char what[80];
        t->n_check++;
        int pass = flag[0][r] == r && flag[1][r] == r &&
                   (r ? isnan(loss[0][r]) && isnan(loss[1][r]) : isfinite(loss[1][r]));
        if (!pass) t->n_fail++;
        printf("%s graph replay %d: flag direct %g, replayed %g (want %d); loss %g, %g\n", pass ? "PASS" : "FAIL",
               r, flag[0][r], flag[1][r], r, loss[0][r], loss[1][r]);
        if (r == 0) {
            snprintf(what, sizeof what, "graph replay %d: loss", r);
            compare(t, what, &(float){(float)loss[1][r]}, &(float){(float)loss[0][r]}, 1);
            snprintf(what, sizeof what, "graph replay %d: dc", r);
            compare(t, what, res[1][r][0], res[0][r][0], dd);
        }
        snprintf(what, sizeof what, "graph replay %d: p after the update (%s)", r, r ? "skipped" : "rate 0.05");
        compare(t, what, res[1][r][1], r ? p0 : res[0][r][1], dd);
        for (int m = 0; m < 2; m++) {
            free(res[m][r][0]);
            free(res[m][r][1]);
        }
        free(in[r][0]);
        free(in[r][1]);
    }
    free(p0);
    free(mu0);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) tw_mem_free(be, *bufs[i]);
    tw_mem_free(be, g.flag);
    tw_mem_free(be, g.vals);
    tw_mem_host_free(be, g.vals_host);
    tw_update_plan_free(be, g.plan);
}

/* ---- main ------------------------------------------------------------------------------------ */

/* harness: a second CPU backend stands in for the GPU, so that the comparisons, the guards and
 * the host packing are exercised on machines without one. The graph check cannot run there: it
 * is reported skipped, and the harness's exit code covers only the checks that ran. */
static int run(tw_backend *cpu, tw_precision prec, int harness) {
    ctx t = {0};
    tw_err err = {0};
    t.cpu = cpu;
    tw_device dev = harness ? TW_DEVICE_CPU : TW_DEVICE_CUDA;
    if (tw_backend_create(&t.gpu, dev, prec, 0, &err) != TW_OK) {
        printf("FAIL %s backend (%s): %s\n", harness ? "second cpu" : "cuda",
               prec == TW_PREC_BF16 ? "bf16" : "fp32", err.msg);
        return 1;
    }
    char line[300];
    tw_backend_describe(t.gpu, line, sizeof line);
    printf("# under test: %s\n", line);
    t.bf16 = tw_backend_act_dtype(t.gpu) == TW_BF16;
    t.tol = t.bf16 ? 5e-4 : 1e-8;
    tw_rng_init(&t.rng, 2026, (uint32_t)t.bf16, 0, 0);

    check_conv(&t, 2, 3, 32, 32, 16, 7, 2, 3, 0, TW_LAYOUT_NCHW);    /* stem: NCHW image */
    check_conv(&t, 2, 12, 20, 20, 16, 7, 2, 3, 1, TW_LAYOUT_NCHW);
    check_conv(&t, 2, 16, 9, 9, 32, 3, 1, 1, 1, TW_LAYOUT_NHWC);
    check_conv(&t, 3, 16, 10, 10, 32, 3, 2, 1, 1, TW_LAYOUT_NHWC);
    check_conv(&t, 2, 32, 8, 8, 64, 1, 2, 0, 1, TW_LAYOUT_NHWC);     /* downsample shortcut */
    check_bn(&t, 4, 64, 7, 7, 1);
    check_bn(&t, 3, 40, 5, 9, 0);
    check_eltwise(&t, 2, 24, 5, 7);
    check_pool(&t, 2, 16, 15, 15);
    check_pool(&t, 3, 8, 8, 10);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) check_gemm(&t, ta, tb, 37, 45, 29);
    check_bias(&t, 24, 70);
    check_bn_sync(&t, 4, 64, 7, 7, 1, 0);
    check_bn_sync(&t, 3, 40, 5, 9, 0, 0);
    check_bn_sync(&t, 24, 70, 1, 1, 1, 1);   /* the projector's rows */
    check_bn_sync(&t, 16, 33, 1, 1, 0, 1);
    check_act(&t, 4, 64, 5, 5, 1);
    check_act(&t, 3, 40, 2, 3, 0);
    check_losses(&t, 64, 12, 19);
    if (!t.bf16) check_optim(&t);   /* the optimizers are f32 whatever the precision */
    check_async_upload(&t);
    if (!harness) {
        check_graph(&t);
    } else {
        /* What the CPU backend does say: it has no recording. That is not the graph check, which
         * needs a GPU (cuda.ops, skipped without one): reported as skipped, counted in no total. */
        t.n_check++;
        int unsupported = tw_backend_graph_begin(t.gpu, &err) == TW_E_UNSUPPORTED;
        if (!unsupported) t.n_fail++;
        printf("%s cpu backend: graph_begin returns unsupported (%s)\n", unsupported ? "PASS" : "FAIL",
               err.msg);
        printf("SKIP graph record and replay: the harness's cpu backend records no graph "
               "(checked by cuda.ops on a GPU)\n");
    }
    printf("# %s %s: %d of %d checks failed%s\n", harness ? "harness" : "cuda",
           t.bf16 ? "bf16" : "fp32", t.n_fail, t.n_check,
           harness ? "; graph record and replay skipped" : "");
    tw_backend_free(t.gpu);
    return t.n_fail != 0;
}

int main(int argc, char **argv) {
    int harness = argc > 1 && strcmp(argv[1], "--harness") == 0;
    if (argc > 1 && !harness) {
        printf("usage: %s [--harness]\n", argv[0]);
        return TW_TEST_FAIL;
    }
    if (!harness && tw_backend_device_count(TW_DEVICE_CUDA) <= 0) {
        printf("no CUDA device: skipped\n");
        return TW_TEST_SKIP;
    }
    tw_backend *cpu = tb_backend(TW_PREC_FP32);
    int fail = run(cpu, TW_PREC_FP32, harness);
    if (!harness) fail |= run(cpu, TW_PREC_BF16, harness);
    tw_backend_free(cpu);
    return fail ? TW_TEST_FAIL : TW_TEST_PASS;
}
