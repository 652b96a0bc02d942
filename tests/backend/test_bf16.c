/* bf16 precision against fp32 on the same inputs: convolutions (ResNet-like shapes), BN with and
 * without the fused ReLU, add_relu / add / relu_backward, max pool and average pool, with bf16
 * tensors in the layout the bf16 convolution picked. Skipped (77) where the CPU has no native
 * bf16. Inputs are rounded to bf16 first, so both runs see identical data.
 *
 * Tolerance: bf16 keeps 8 significant bits, unit roundoff u = 2^-9 ≈ 0.002. A convolution
 * output sees one rounding of the weights (bf16 reorder) and one of the result, each ≲ u of the
 * typical magnitude, accumulated in f32: we allow 0.02 · max|fp32| (≈ 10 u), which any indexing
 * or layout bug (errors of the order of the values themselves) exceeds by far. BN re-normalises
 * a bf16 input, with the same bound. Weight gradients take bf16 x and dy (exact in both runs)
 * and accumulate in f32: allowed 0.01 · max. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb.h"

static int compare(const char *what, const float *got, const float *want, size_t n, double rel) {
    return tb_close(what, got, want, n, 1e-6, rel);
}

/* Runs conv fwd / bwd-data / bwd-weights on backend be; returns the plan's output layout. */
static tw_layout conv_run(tw_backend *be, const tw_conv_desc *d0, tw_layout xl, const float *x,
                          const float *w, const float *dy, float *y, float *dx, float *dw) {
    tw_conv_desc d = *d0;
    d.x_layout = xl;
    tw_dtype dt = tw_backend_act_dtype(be);
    tw_conv_plan *p = NULL;
    tw_err err = {0};
    if (tw_conv_plan_make(be, &p, &d, &err) != TW_OK) {
        printf("FAIL conv plan: %s\n", err.msg);
        exit(TB_FAIL);
    }
    tw_tensor yt = tw_conv_plan_y(p);
    tw_tensor tx = tb_tensor(be, d.n, d.c_in, d.h_in, d.w_in, dt, xl);
    tw_tensor tdx = tb_tensor(be, d.n, d.c_in, d.h_in, d.w_in, dt, xl);
    tw_tensor ty = tb_tensor(be, yt.n, yt.c, yt.h, yt.w, yt.dtype, yt.layout);
    tw_tensor tdy = tb_tensor(be, yt.n, yt.c, yt.h, yt.w, yt.dtype, yt.layout);
    tb_put(be, &tx, x);
    tb_put(be, &tdy, dy);
    tw_conv_forward(be, p, &ty, &tx, w);
    tw_conv_backward_data(be, p, &tdx, &tdy, w);
    tw_conv_backward_weights(be, p, dw, &tdy, &tx);
    tb_get(be, y, &ty);
    tb_get(be, dx, &tdx);
    tw_layout out = yt.layout;
    tb_tensor_free(be, &tx); tb_tensor_free(be, &tdx); tb_tensor_free(be, &ty); tb_tensor_free(be, &tdy);
    tw_conv_plan_free(be, p);
    return out;
}

/* bf16 input in layout xl16 (what the previous bf16 layer produced); *y16 = its output layout. */
static int test_conv(tw_backend *b32, tw_backend *b16, tw_rng *rng, int ci, int co, int hw, int k,
                     int s, tw_layout xl16, tw_layout *y16) {
    tw_conv_desc d = {4, ci, hw, hw, co, k, s, k / 2, 1, TW_LAYOUT_NCHW, 0, NULL};
    int ho = (hw + 2 * (k / 2) - k) / s + 1;
    size_t nx = (size_t)d.n * ci * hw * hw, ny = (size_t)d.n * co * ho * ho, nw = (size_t)co * ci * k * k;
    float *x = tb_alloc_rand(rng, nx, 1.0f), *w = tb_alloc_rand(rng, nw, 0.1f), *dy = tb_alloc_rand(rng, ny, 1.0f);
    tb_round_bf16(x, nx);
    tb_round_bf16(dy, ny);
    float *y[2], *dx[2], *dw[2];
    for (int i = 0; i < 2; i++) {
        y[i] = malloc(ny * sizeof(float));
        dx[i] = malloc(nx * sizeof(float));
        dw[i] = malloc(nw * sizeof(float));
    }
    tw_layout l16 = conv_run(b16, &d, xl16, x, w, dy, y[1], dx[1], dw[1]);
    conv_run(b32, &d, TW_LAYOUT_NCHW, x, w, dy, y[0], dx[0], dw[0]);
    *y16 = l16;
    char what[96];
    int ok = 1;
    snprintf(what, sizeof what, "bf16 conv %dx%d/%d %d->%d @%d (%s->%s) y", k, k, s, ci, co, hw,
             tw_layout_name(xl16), tw_layout_name(l16));
    ok &= compare(what, y[1], y[0], ny, 0.02);
    snprintf(what, sizeof what, "bf16 conv %dx%d/%d %d->%d @%d dx", k, k, s, ci, co, hw);
    ok &= compare(what, dx[1], dx[0], nx, 0.02);
    snprintf(what, sizeof what, "bf16 conv %dx%d/%d %d->%d @%d dw (f32)", k, k, s, ci, co, hw);
    ok &= compare(what, dw[1], dw[0], nw, 0.01);
    for (int i = 0; i < 2; i++) {
        free(y[i]); free(dx[i]); free(dw[i]);
    }
    free(x); free(w); free(dy);
    return ok;
}

static int test_bn(tw_backend *b32, tw_backend *b16, tw_rng *rng, tw_layout l16, int relu) {
    enum { N = 4, C = 32, H = 6, W = 6 };
    const size_t nx = (size_t)N * C * H * W;
    float *x = tb_alloc_rand(rng, nx, 2.0f), *dy = tb_alloc_rand(rng, nx, 1.0f);
    float *g = tb_alloc_rand(rng, C, 0.5f), *b = tb_alloc_rand(rng, C, 0.5f);
    for (int c = 0; c < C; c++) g[c] += 1.0f;
    tb_round_bf16(x, nx);
    tb_round_bf16(dy, nx);
    float *y[2], *dx[2], dg[2][C], db[2][C], sm[2][C], sv[2][C], rm[2][C], rv[2][C];
    tw_backend *bes[2] = {b32, b16};
    for (int i = 0; i < 2; i++) {
        tw_backend *be = bes[i];
        tw_dtype dt = tw_backend_act_dtype(be);
        tw_layout l = i ? l16 : TW_LAYOUT_NCHW;
        tw_bn_desc d = {N, C, H, W, l, relu, 1e-5f, 0.1f, 0};
        tw_bn_plan *p = NULL;
        tw_err err = {0};
        if (tw_bn_plan_make(be, &p, &d, &err) != TW_OK) {
            printf("FAIL bn plan: %s\n", err.msg);
            return 0;
        }
        size_t wsb = tw_bn_plan_ws_bytes(p);
        void *ws = wsb ? tw_mem_alloc(be, wsb) : NULL;
        tw_tensor tx = tb_tensor(be, N, C, H, W, dt, l), ty = tb_tensor(be, N, C, H, W, dt, l);
        tw_tensor tdx = tb_tensor(be, N, C, H, W, dt, l), tdy = tb_tensor(be, N, C, H, W, dt, l);
        for (int c = 0; c < C; c++) {
            rm[i][c] = 0;
            rv[i][c] = 1;
        }
        tb_put(be, &tx, x);
        tb_put(be, &tdy, dy);
        tw_bn_forward_train(be, p, &ty, sm[i], sv[i], ws, &tx, g, b, rm[i], rv[i]);
        tw_bn_backward(be, p, &tdx, dg[i], db[i], &tdy, &tx, sm[i], sv[i], ws, g);
        y[i] = malloc(nx * sizeof(float));
        dx[i] = malloc(nx * sizeof(float));
        tb_get(be, y[i], &ty);
        tb_get(be, dx[i], &tdx);
        tw_mem_free(be, ws);
        tb_tensor_free(be, &tx); tb_tensor_free(be, &ty); tb_tensor_free(be, &tdx); tb_tensor_free(be, &tdy);
        tw_bn_plan_free(be, p);
    }
    int ok = 1;
    char what[96];
    const char *r = relu ? " +relu" : "";
    snprintf(what, sizeof what, "bf16 bn%s %s y", r, tw_layout_name(l16));
    ok &= compare(what, y[1], y[0], nx, 0.02);
    snprintf(what, sizeof what, "bf16 bn%s mean / var (f32)", r);
    ok &= compare(what, sm[1], sm[0], C, 1e-4) & compare(what, sv[1], sv[0], C, 1e-4);
    snprintf(what, sizeof what, "bf16 bn%s running stats (f32)", r);
    ok &= compare(what, rm[1], rm[0], C, 1e-4) & compare(what, rv[1], rv[0], C, 1e-4);
    snprintf(what, sizeof what, "bf16 bn%s dx", r);
    ok &= compare(what, dx[1], dx[0], nx, 0.02);
    snprintf(what, sizeof what, "bf16 bn%s dgamma / dbeta (f32)", r);
    ok &= compare(what, dg[1], dg[0], C, 0.02) & compare(what, db[1], db[0], C, 0.01);
    for (int i = 0; i < 2; i++) {
        free(y[i]); free(dx[i]);
    }
    free(x); free(dy); free(g); free(b);
    return ok;
}

/* add_relu / add / relu_backward and the pools in bf16, every layout, against f32 results
 * rounded to bf16 (the ops compute in f32 and round once). */
static int test_small(tw_backend *b16, tw_rng *rng) {
    enum { N = 2, C = 24, H = 7, W = 7 };
    const size_t n = (size_t)N * C * H * W;
    const tw_layout ls[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C, TW_LAYOUT_NCHW16C};
    float *a = tb_alloc_rand(rng, n, 1.0f), *b = tb_alloc_rand(rng, n, 1.0f);
    float *got = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    tb_round_bf16(a, n);
    tb_round_bf16(b, n);
    int ok = 1;
    char what[96];
    for (int li = 0; li < 4; li++) {
        tw_layout l = ls[li];
        tw_tensor ta = tb_tensor(b16, N, C, H, W, TW_BF16, l), tb_ = tb_tensor(b16, N, C, H, W, TW_BF16, l);
        tw_tensor ty = tb_tensor(b16, N, C, H, W, TW_BF16, l);
        tb_put(b16, &ta, a);
        tb_put(b16, &tb_, b);
        tw_add_relu_forward(b16, &ty, &ta, &tb_);
        tb_get(b16, got, &ty);
        for (size_t i = 0; i < n; i++) want[i] = fmaxf(a[i] + b[i], 0.0f);
        tb_round_bf16(want, n);
        snprintf(what, sizeof what, "bf16 add_relu %s (exact rounding)", tw_layout_name(l));
        ok &= tb_close(what, got, want, n, 0, 0) && tb_pad_zero(b16, &ty);
        tw_relu_backward(b16, &ta, &tb_, &ty);   /* dx = b where y > 0 */
        tb_get(b16, got, &ta);
        for (size_t i = 0; i < n; i++) want[i] = a[i] + b[i] > 0 && want[i] > 0 ? b[i] : 0.0f;
        snprintf(what, sizeof what, "bf16 relu_backward %s", tw_layout_name(l));
        ok &= tb_close(what, got, want, n, 0, 0);
        tb_put(b16, &ta, a);
        tw_add(b16, &ty, &ta, &tb_);
        tb_get(b16, got, &ty);
        for (size_t i = 0; i < n; i++) want[i] = a[i] + b[i];
        tb_round_bf16(want, n);
        snprintf(what, sizeof what, "bf16 add %s (exact rounding)", tw_layout_name(l));
        ok &= tb_close(what, got, want, n, 0, 0);

        /* max pool: picks one of the bf16 inputs, so exact; backward routes dy exactly. */
        tw_pool_plan *p = NULL;
        tw_err err = {0};
        if (tw_maxpool_plan_make(b16, &p, N, C, H, W, l, &err) != TW_OK) {
            printf("FAIL bf16 maxpool plan: %s\n", err.msg);
            return 0;
        }
        tw_tensor yt = tw_maxpool_plan_y(p);
        tw_tensor tpy = tb_tensor(b16, N, C, yt.h, yt.w, TW_BF16, l);
        void *ws = tw_maxpool_plan_ws_bytes(p) ? tw_mem_alloc(b16, tw_maxpool_plan_ws_bytes(p)) : NULL;
        tw_maxpool_forward(b16, p, &tpy, ws, &ta);
        size_t ny = (size_t)N * C * yt.h * yt.w;
        float *py = malloc(ny * sizeof(float)), *wy = malloc(ny * sizeof(float));
        tb_get(b16, py, &tpy);
        for (int nc = 0; nc < N * C; nc++)
            for (int i = 0; i < yt.h; i++)
                for (int j = 0; j < yt.w; j++) {
                    float m = -INFINITY;
                    for (int ki = 2 * i - 1; ki <= 2 * i + 1; ki++)
                        for (int kj = 2 * j - 1; kj <= 2 * j + 1; kj++)
                            if (ki >= 0 && ki < H && kj >= 0 && kj < W) m = fmaxf(m, a[(nc * H + ki) * W + kj]);
                    wy[(nc * yt.h + i) * yt.w + j] = m;
                }
        snprintf(what, sizeof what, "bf16 maxpool %s", tw_layout_name(l));
        ok &= tb_close(what, py, wy, ny, 0, 0);
        tw_maxpool_backward(b16, p, &tb_, &tpy, ws);   /* dy = y: dx sums to Σy per image */
        tb_get(b16, got, &tb_);
        double sg = 0, sw = 0;
        for (size_t i = 0; i < n; i++) sg += got[i];
        for (size_t i = 0; i < ny; i++) sw += py[i];
        snprintf(what, sizeof what, "bf16 maxpool backward %s (mass kept)", tw_layout_name(l));
        ok &= tb_close_d(what, &sg, &sw, 1, 1e-3, 0.01);
        free(py); free(wy);
        tw_mem_free(b16, ws);
        tb_tensor_free(b16, &tpy);
        tw_maxpool_plan_free(b16, p);

        float avg[N * C], wavg[N * C];
        tw_avgpool_forward(b16, avg, &ta);
        for (int i = 0; i < N * C; i++) {
            double s = 0;
            for (int k = 0; k < H * W; k++) s += a[i * H * W + k];
            wavg[i] = (float)(s / (H * W));
        }
        snprintf(what, sizeof what, "bf16 avgpool %s", tw_layout_name(l));
        ok &= tb_close(what, avg, wavg, N * C, 1e-6, 1e-5);
        tw_avgpool_backward(b16, &ta, wavg);
        tb_get(b16, got, &ta);
        for (size_t i = 0; i < n; i++) want[i] = wavg[i / (H * W)] / (H * W);
        tb_round_bf16(want, n);
        snprintf(what, sizeof what, "bf16 avgpool backward %s", tw_layout_name(l));
        ok &= tb_close(what, got, want, n, 0, 0) && tb_pad_zero(b16, &ta);
        tb_tensor_free(b16, &ta); tb_tensor_free(b16, &tb_); tb_tensor_free(b16, &ty);
    }
    free(a); free(b); free(got); free(want);
    return ok;
}

int main(void) {
    tw_backend *b16 = tb_backend(TW_PREC_BF16);   /* exits 77 without native bf16 */
    tw_backend *b32 = tb_backend(TW_PREC_FP32);
    if (tw_backend_act_dtype(b16) != TW_BF16) {
        printf("FAIL: precision bf16 gave a backend with f32 activations\n");
        return TB_FAIL;
    }
    tw_rng rng;
    tw_rng_init(&rng, 3, 1, 4, 1);
    int ok = 1;
    /* The stem takes the image in NCHW; the other layers take the layout the stem picked. */
    tw_layout l16 = TW_LAYOUT_NCHW, l;
    ok &= test_conv(b32, b16, &rng, 3, 64, 24, 7, 2, TW_LAYOUT_NCHW, &l16);
    ok &= test_conv(b32, b16, &rng, 64, 64, 10, 3, 1, l16, &l);
    ok &= test_conv(b32, b16, &rng, 64, 128, 10, 3, 2, l16, &l);
    ok &= test_conv(b32, b16, &rng, 64, 128, 10, 1, 2, l16, &l);
    ok &= test_bn(b32, b16, &rng, l16, 0);
    ok &= test_bn(b32, b16, &rng, l16, 1);
    ok &= test_small(b16, &rng);
    tw_backend_free(b16);
    tw_backend_free(b32);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? TB_PASS : TB_FAIL;
}
