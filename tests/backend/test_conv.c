/* Convolution forward, backward-data and backward-weights against a direct double-precision
 * reference and against central finite differences of L = Σ r ⊙ conv(x, w), for kernels 1, 3, 7
 * at strides 1 and 2, with the input forced into each of the four layouts (fp32). Also checks
 * that the layout the plan reports is the one the output is in and that padding stays zero. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tb.h"

typedef struct { int k, s, p, c_in, c_out, hw; } conv_case;

static void ref_conv(double *y, const float *x, const float *w, const tw_conv_desc *d, int ho, int wo) {
    for (int n = 0; n < d->n; n++)
        for (int o = 0; o < d->c_out; o++)
            for (int i = 0; i < ho; i++)
                for (int j = 0; j < wo; j++) {
                    double s = 0;
                    for (int c = 0; c < d->c_in; c++)
                        for (int ki = 0; ki < d->kernel; ki++)
                            for (int kj = 0; kj < d->kernel; kj++) {
                                int yi = i * d->stride - d->pad + ki, xj = j * d->stride - d->pad + kj;
                                if (yi < 0 || yi >= d->h_in || xj < 0 || xj >= d->w_in) continue;
                                s += (double)x[((n * d->c_in + c) * d->h_in + yi) * d->w_in + xj] *
                                     w[((o * d->c_in + c) * d->kernel + ki) * d->kernel + kj];
                            }
                    y[((n * d->c_out + o) * ho + i) * wo + j] = s;
                }
}

/* dx = Σ over outputs of dy · w, dw = Σ dy · x: the two backward passes in one sweep. */
static void ref_backward(double *dx, double *dw, const float *dy, const float *x, const float *w,
                         const tw_conv_desc *d, int ho, int wo) {
    size_t nx = (size_t)d->n * d->c_in * d->h_in * d->w_in;
    size_t nw = (size_t)d->c_out * d->c_in * d->kernel * d->kernel;
    for (size_t i = 0; i < nx; i++) dx[i] = 0;
    for (size_t i = 0; i < nw; i++) dw[i] = 0;
    for (int n = 0; n < d->n; n++)
        for (int o = 0; o < d->c_out; o++)
            for (int i = 0; i < ho; i++)
                for (int j = 0; j < wo; j++) {
                    double g = dy[((n * d->c_out + o) * ho + i) * wo + j];
                    for (int c = 0; c < d->c_in; c++)
                        for (int ki = 0; ki < d->kernel; ki++)
                            for (int kj = 0; kj < d->kernel; kj++) {
                                int yi = i * d->stride - d->pad + ki, xj = j * d->stride - d->pad + kj;
                                if (yi < 0 || yi >= d->h_in || xj < 0 || xj >= d->w_in) continue;
                                size_t xo = ((size_t)(n * d->c_in + c) * d->h_in + yi) * d->w_in + xj;
                                size_t wi = ((size_t)(o * d->c_in + c) * d->kernel + ki) * d->kernel + kj;
                                dx[xo] += g * w[wi];
                                dw[wi] += g * x[xo];
                            }
                }
}

typedef struct {
    tw_backend *be;
    tw_conv_plan *plan;
    tw_tensor x, y;
    float *hx, *hw, *hy, *r;
    size_t ny;
} fd_ctx;

static double loss(fd_ctx *c) {
    tb_put(c->be, &c->x, c->hx);
    tw_conv_forward(c->be, c->plan, &c->y, &c->x, c->hw);
    tb_get(c->be, c->hy, &c->y);
    double l = 0;
    for (size_t i = 0; i < c->ny; i++) l += (double)c->r[i] * c->hy[i];
    return l;
}

static int run_case(tw_backend *be, tw_rng *rng, const conv_case *cc, tw_layout xl, int need_dx) {
    tw_conv_desc d = {2, cc->c_in, cc->hw, cc->hw + 1, cc->c_out, cc->k, cc->s, cc->p, need_dx, xl, 0, NULL};
    tw_conv_plan *plan = NULL;
    tw_err err = {0};
    char name[160];
    snprintf(name, sizeof name, "k%d s%d %d->%d %s%s", cc->k, cc->s, cc->c_in, cc->c_out,
             tw_layout_name(xl), need_dx ? "" : " no-dx");
    if (tw_conv_plan_make(be, &plan, &d, &err) != TW_OK) {
        printf("FAIL %s: plan: %s\n", name, err.msg);
        return 0;
    }
    tw_tensor yt = tw_conv_plan_y(plan);
    int ho = yt.h, wo = yt.w;
    int ok = ho == (d.h_in + 2 * d.pad - d.kernel) / d.stride + 1 && yt.c == d.c_out && yt.dtype == TW_F32;
    if (!ok) printf("FAIL %s: plan output shape %dx%dx%d\n", name, yt.c, ho, wo);
    printf("# %s: output layout %s\n", name, tw_layout_name(yt.layout));
    size_t nx = (size_t)d.n * d.c_in * d.h_in * d.w_in, ny = (size_t)d.n * d.c_out * ho * wo;
    size_t nw = (size_t)d.c_out * d.c_in * d.kernel * d.kernel;
    fd_ctx c = {be, plan, tb_tensor(be, d.n, d.c_in, d.h_in, d.w_in, TW_F32, xl),
                tb_tensor(be, yt.n, yt.c, yt.h, yt.w, yt.dtype, yt.layout),
                tb_alloc_rand(rng, nx, 1.0f), tb_alloc_rand(rng, nw, 0.5f), malloc(ny * sizeof(float)),
                tb_alloc_rand(rng, ny, 1.0f), ny};
    tw_tensor dy = tb_tensor(be, yt.n, yt.c, yt.h, yt.w, yt.dtype, yt.layout);
    tw_tensor dx = tb_tensor(be, d.n, d.c_in, d.h_in, d.w_in, TW_F32, xl);
    float *hdx = malloc(nx * sizeof(float)), *hdw = malloc(nw * sizeof(float));
    double *ry = malloc(ny * sizeof(double)), *rdx = malloc(nx * sizeof(double)), *rdw = malloc(nw * sizeof(double));
    double *gy = malloc(ny * sizeof(double)), *gdx = malloc(nx * sizeof(double)), *gdw = malloc(nw * sizeof(double));

    loss(&c);
    ok &= tb_pad_zero(be, &c.y);
    ref_conv(ry, c.hx, c.hw, &d, ho, wo);
    for (size_t i = 0; i < ny; i++) gy[i] = c.hy[i];
    char what[200];
    snprintf(what, sizeof what, "%s fwd", name);
    ok &= tb_close_d(what, gy, ry, ny, 1e-5, 1e-5);

    tb_put(be, &dy, c.r);
    if (need_dx) tw_conv_backward_data(be, plan, &dx, &dy, c.hw);
    tw_conv_backward_weights(be, plan, hdw, &dy, &c.x);
    ref_backward(rdx, rdw, c.r, c.hx, c.hw, &d, ho, wo);
    if (need_dx) {
        ok &= tb_pad_zero(be, &dx);
        tb_get(be, hdx, &dx);
        for (size_t i = 0; i < nx; i++) gdx[i] = hdx[i];
        snprintf(what, sizeof what, "%s bwd-data", name);
        ok &= tb_close_d(what, gdx, rdx, nx, 1e-5, 1e-5);
    }
    for (size_t i = 0; i < nw; i++) gdw[i] = hdw[i];
    snprintf(what, sizeof what, "%s bwd-weights", name);
    ok &= tb_close_d(what, gdw, rdw, nw, 1e-5, 1e-5);

    /* Central differences: L is linear in x and in w, so a large step only costs rounding. */
    enum { N_FD = 8 };
    double fd[2 * N_FD], an[2 * N_FD];
    const float h = 1e-2f;
    for (int t = 0; t < 2 * N_FD; t++) {
        int on_x = t < N_FD && need_dx;
        float *v = on_x ? c.hx : c.hw;
        size_t i = tw_rng_below(rng, (uint32_t)(on_x ? nx : nw));
        float keep = v[i];
        v[i] = keep + h;
        double lp = loss(&c);
        v[i] = keep - h;
        double lm = loss(&c);
        v[i] = keep;
        fd[t] = (lp - lm) / (2.0 * h);
        an[t] = on_x ? hdx[i] : hdw[i];
    }
    snprintf(what, sizeof what, "%s finite differences", name);
    ok &= tb_close_d(what, an, fd, 2 * N_FD, 1e-3, 2e-3);

    tb_tensor_free(be, &c.x);
    tb_tensor_free(be, &c.y);
    tb_tensor_free(be, &dy);
    tb_tensor_free(be, &dx);
    free(c.hx); free(c.hw); free(c.hy); free(c.r); free(hdx); free(hdw);
    free(ry); free(rdx); free(rdw); free(gy); free(gdx); free(gdw);
    tw_conv_plan_free(be, plan);
    return ok;
}

int main(void) {
    tw_backend *be = tb_backend(TW_PREC_FP32);
    tw_rng rng;
    tw_rng_init(&rng, 7, 1, 2, 3);
    /* Channel counts that are not multiples of 8 or 16 exercise the blocked layouts' padding. */
    const conv_case cases[] = {
        {1, 1, 0, 16, 24, 7}, {1, 2, 0, 5, 12, 8}, {3, 1, 1, 12, 16, 6},
        {3, 2, 1, 16, 20, 9}, {7, 2, 3, 3, 16, 11},
    };
    const tw_layout layouts[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C, TW_LAYOUT_NCHW16C};
    int ok = 1;
    for (size_t l = 0; l < 4; l++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            ok &= run_case(be, &rng, &cases[i], layouts[l], cases[i].k != 7);
    /* The stem skips backward-data; check a k=7 plan with it too. */
    ok &= run_case(be, &rng, &cases[4], TW_LAYOUT_NCHW, 1);

    /* One plan, two weight sets (layers of equal shape sharing a plan): backward-data of the
     * first after the forward of the second must use the first's weights. */
    {
        tw_conv_desc d = {2, 16, 6, 6, 16, 3, 1, 1, 1, TW_LAYOUT_NCHW, 0, NULL};
        tw_conv_plan *p = NULL;
        tw_err e = {0};
        if (tw_conv_plan_make(be, &p, &d, &e) != TW_OK) {
            printf("FAIL shared plan: %s\n", e.msg);
            return TB_FAIL;
        }
        tw_tensor yt = tw_conv_plan_y(p);
        size_t nx = 2 * 16 * 36, nw = 16 * 16 * 9, ny = (size_t)yt.n * yt.c * yt.h * yt.w;
        float *w1 = tb_alloc_rand(&rng, nw, 0.5f), *w2 = tb_alloc_rand(&rng, nw, 0.5f);
        float *hx = tb_alloc_rand(&rng, nx, 1.0f), *hdy = tb_alloc_rand(&rng, ny, 1.0f);
        float *got = malloc(nx * sizeof(float));
        double *want = malloc(nx * sizeof(double)), *dw = malloc(nw * sizeof(double)), *g = malloc(nx * sizeof(double));
        tw_tensor x = tb_tensor(be, 2, 16, 6, 6, TW_F32, TW_LAYOUT_NCHW);
        tw_tensor dx = tb_tensor(be, 2, 16, 6, 6, TW_F32, TW_LAYOUT_NCHW);
        tw_tensor y = tb_tensor(be, yt.n, yt.c, yt.h, yt.w, yt.dtype, yt.layout);
        tw_tensor dy = tb_tensor(be, yt.n, yt.c, yt.h, yt.w, yt.dtype, yt.layout);
        tb_put(be, &x, hx);
        tb_put(be, &dy, hdy);
        tw_conv_forward(be, p, &y, &x, w1);
        tw_conv_forward(be, p, &y, &x, w2);
        tw_conv_backward_data(be, p, &dx, &dy, w1);
        tb_get(be, got, &dx);
        ref_backward(want, dw, hdy, hx, w1, &d, yt.h, yt.w);
        for (size_t i = 0; i < nx; i++) g[i] = got[i];
        ok &= tb_close_d("shared plan: bwd-data uses its own w", g, want, nx, 1e-5, 1e-5);
        tb_tensor_free(be, &x); tb_tensor_free(be, &dx); tb_tensor_free(be, &y); tb_tensor_free(be, &dy);
        free(w1); free(w2); free(hx); free(hdy); free(got); free(want); free(dw); free(g);
        tw_conv_plan_free(be, p);
    }

    /* Bad shapes are errors, not crashes. */
    tw_conv_desc bad = {2, 3, 2, 2, 8, 7, 2, 0, 1, TW_LAYOUT_NCHW, 0, NULL};
    tw_conv_plan *p = NULL;
    tw_err err = {0};
    if (tw_conv_plan_make(be, &p, &bad, &err) != TW_E_SHAPE) {
        printf("FAIL: a 7x7 kernel on a 2x2 input did not give TW_E_SHAPE\n");
        ok = 0;
    } else {
        printf("PASS bad shape rejected: %s\n", err.msg);
    }
    tw_backend_free(be);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? TB_PASS : TB_FAIL;
}
