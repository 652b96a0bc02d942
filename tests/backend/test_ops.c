/* The CPU backend's smaller ops in fp32, each against a double-precision reference and, where it
 * has a gradient, central finite differences: add_relu / add / relu_backward, max pool, global
 * average pool (all layouts), reorder (every layout pair, f32 and bf16), GEMM (all
 * transpositions, padded leading dimensions), bias, the projector's BN rows, Barlow Twins loss, BCE with logits,
 * scale_check, and the optimizers' segment rules (1-D segments: no decay, no LARS adaptation). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "tb.h"

static const tw_layout LAYOUTS[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C, TW_LAYOUT_NCHW16C};

static double *to_d(const float *x, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static int close_fd(const char *what, const double *an, const double *fd, size_t n) {
    return check_close_tol_d(what, an, fd, n, 2e-3, 3e-3);
}

/* ---- element-wise ---------------------------------------------------------------------- */

static int test_eltwise(tw_backend *be, tw_rng *rng) {
    int ok = 1;
    enum { N = 2, C = 20, H = 3, W = 5 };
    const size_t n = (size_t)N * C * H * W;
    for (int l = 0; l < 4; l++) {
        tw_layout lay = LAYOUTS[l];
        float *a = tb_alloc_rand(rng, n, 1.0f), *b = tb_alloc_rand(rng, n, 1.0f);
        float *got = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
        tw_tensor ta = tb_tensor(be, N, C, H, W, TW_F32, lay), tb_ = tb_tensor(be, N, C, H, W, TW_F32, lay);
        tw_tensor ty = tb_tensor(be, N, C, H, W, TW_F32, lay);
        tb_put(be, &ta, a);
        tb_put(be, &tb_, b);
        char what[96];
        tw_add_relu_forward(be, &ty, &ta, &tb_);
        tb_get(be, got, &ty);
        for (size_t i = 0; i < n; i++) want[i] = fmaxf(a[i] + b[i], 0.0f);
        snprintf(what, sizeof what, "add_relu %s", tw_layout_name(lay));
        ok &= check_close_tol(what, got, want, n, 0, 0) && tb_pad_zero(be, &ty);
        tw_add(be, &ty, &ta, &tb_);
        tb_get(be, got, &ty);
        for (size_t i = 0; i < n; i++) want[i] = a[i] + b[i];
        snprintf(what, sizeof what, "add %s", tw_layout_name(lay));
        ok &= check_close_tol(what, got, want, n, 0, 0) && tb_pad_zero(be, &ty);
        /* in place, as src/loss uses it: a += b */
        tw_add(be, &ta, &ta, &tb_);
        tb_get(be, got, &ta);
        snprintf(what, sizeof what, "add in place %s", tw_layout_name(lay));
        ok &= check_close_tol(what, got, want, n, 0, 0);
        /* relu_backward: dx = dy where y > 0. y = relu(a + b) from above. */
        tb_put(be, &ta, a);
        tw_add_relu_forward(be, &ty, &ta, &tb_);
        tw_tensor tdx = tb_tensor(be, N, C, H, W, TW_F32, lay);
        tw_relu_backward(be, &tdx, &ta, &ty);   /* dy = a */
        tb_get(be, got, &tdx);
        for (size_t i = 0; i < n; i++) want[i] = a[i] + b[i] > 0 ? a[i] : 0.0f;
        snprintf(what, sizeof what, "relu_backward %s", tw_layout_name(lay));
        ok &= check_close_tol(what, got, want, n, 0, 0) && tb_pad_zero(be, &tdx);
        tb_tensor_free(be, &ta); tb_tensor_free(be, &tb_); tb_tensor_free(be, &ty); tb_tensor_free(be, &tdx);
        free(a); free(b); free(got); free(want);
    }
    return ok;
}

/* ---- reorder ---------------------------------------------------------------------------- */

static int test_reorder(tw_backend *be, tw_rng *rng) {
    int ok = 1;
    enum { N = 2, C = 19, H = 3, W = 4 };
    const size_t n = (size_t)N * C * H * W;
    float *x = tb_alloc_rand(rng, n, 3.0f), *xb = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    memcpy(xb, x, n * sizeof(float));
    tb_round_bf16(xb, n);
    const tw_dtype dts[] = {TW_F32, TW_BF16};
    int n_pairs = 0;
    for (int sl = 0; sl < 4; sl++)
        for (int dl = 0; dl < 4; dl++)
            for (int sd = 0; sd < 2; sd++)
                for (int dd = 0; dd < 2; dd++) {
                    tw_tensor s = tb_tensor(be, N, C, H, W, dts[sd], LAYOUTS[sl]);
                    tw_tensor d = tb_tensor(be, N, C, H, W, dts[dd], LAYOUTS[dl]);
                    tb_put(be, &s, x);
                    tw_reorder(be, &d, &s);
                    tb_get(be, got, &d);
                    const float *want = sd == 1 || dd == 1 ? xb : x;
                    int good = tb_pad_zero(be, &d);
                    for (size_t i = 0; i < n; i++)
                        if (got[i] != want[i]) good = 0;
                    if (!good) {
                        printf("FAIL reorder %s %s -> %s %s\n", tw_dtype_name(dts[sd]),
                               tw_layout_name(LAYOUTS[sl]), tw_dtype_name(dts[dd]),
                               tw_layout_name(LAYOUTS[dl]));
                        ok = 0;
                    }
                    n_pairs++;
                    tb_tensor_free(be, &s);
                    tb_tensor_free(be, &d);
                }
    if (ok) printf("PASS reorder: %d layout/dtype pairs exact\n", n_pairs);
    free(x); free(xb); free(got);
    return ok;
}

/* ---- pooling ---------------------------------------------------------------------------- */

static void ref_maxpool(double *y, int *arg, const float *x, int N, int C, int H, int W, int Ho, int Wo) {
    for (int nc = 0; nc < N * C; nc++)
        for (int i = 0; i < Ho; i++)
            for (int j = 0; j < Wo; j++) {
                double m = -INFINITY;
                int am = -1;
                for (int ki = 0; ki < 3; ki++)
                    for (int kj = 0; kj < 3; kj++) {
                        int yi = 2 * i - 1 + ki, xj = 2 * j - 1 + kj;
                        if (yi < 0 || yi >= H || xj < 0 || xj >= W) continue;
                        int o = (nc * H + yi) * W + xj;
                        if (x[o] > m) {
                            m = x[o];
                            am = o;
                        }
                    }
                y[(nc * Ho + i) * Wo + j] = m;
                arg[(nc * Ho + i) * Wo + j] = am;
            }
}

static int test_maxpool(tw_backend *be, tw_rng *rng) {
    int ok = 1;
    enum { N = 2, C = 12, H = 9, W = 8 };
    for (int l = 0; l < 4; l++) {
        tw_layout lay = LAYOUTS[l];
        tw_pool_plan *p = NULL;
        tw_err err = {0};
        if (tw_maxpool_plan_make(be, &p, N, C, H, W, lay, &err) != TW_OK) {
            printf("FAIL maxpool plan: %s\n", err.msg);
            return 0;
        }
        tw_tensor yt = tw_maxpool_plan_y(p);
        int Ho = yt.h, Wo = yt.w;
        if (Ho != 5 || Wo != 4 || yt.layout != lay) {
            printf("FAIL maxpool plan y %dx%d %s\n", Ho, Wo, tw_layout_name(yt.layout));
            ok = 0;
        }
        size_t nx = (size_t)N * C * H * W, ny = (size_t)N * C * Ho * Wo;
        float *x = tb_alloc_rand(rng, nx, 1.0f), *r = tb_alloc_rand(rng, ny, 1.0f);
        float *hy = malloc(ny * sizeof(float)), *hdx = malloc(nx * sizeof(float));
        double *ry = malloc(ny * sizeof(double)), *rdx = calloc(nx, sizeof(double));
        int *arg = malloc(ny * sizeof(int));
        tw_tensor tx = tb_tensor(be, N, C, H, W, TW_F32, lay), ty = tb_tensor(be, N, C, Ho, Wo, TW_F32, lay);
        tw_tensor tdx = tb_tensor(be, N, C, H, W, TW_F32, lay), tdy = tb_tensor(be, N, C, Ho, Wo, TW_F32, lay);
        void *ws = tw_maxpool_plan_ws_bytes(p) ? tw_mem_alloc(be, tw_maxpool_plan_ws_bytes(p)) : NULL;
        tb_put(be, &tx, x);
        tw_maxpool_forward(be, p, &ty, ws, &tx);
        tb_get(be, hy, &ty);
        ref_maxpool(ry, arg, x, N, C, H, W, Ho, Wo);
        char what[96];
        double *gy = to_d(hy, ny);
        snprintf(what, sizeof what, "maxpool fwd %s", tw_layout_name(lay));
        ok &= check_close_tol_d(what, gy, ry, ny, 0, 0);
        tb_put(be, &tdy, r);
        tw_maxpool_backward(be, p, &tdx, &tdy, ws);
        tb_get(be, hdx, &tdx);
        for (size_t i = 0; i < ny; i++) rdx[arg[i]] += r[i];
        double *gdx = to_d(hdx, nx);
        snprintf(what, sizeof what, "maxpool bwd %s", tw_layout_name(lay));
        ok &= check_close_tol_d(what, gdx, rdx, nx, 1e-6, 1e-6) && tb_pad_zero(be, &tdx);
        /* Finite differences at inputs whose value is at least 10 h from every other value in
         * the image: no window's maximum changes hands within the step. */
        const float h = 1e-3f;
        double fd[12], an[12];
        int n_fd = 0;
        for (int tries = 0; tries < 1000 && n_fd < 12; tries++) {
            size_t i = tw_rng_below(rng, (uint32_t)nx);
            size_t img = i / (H * W) * (H * W);
            int clear = 1;
            for (size_t k = img; k < img + H * W; k++)
                if (k != i && fabsf(x[k] - x[i]) < 10 * h) clear = 0;
            if (!clear) continue;
            double l[2];
            for (int s = 0; s < 2; s++) {
                float keep = x[i];
                x[i] = keep + (s ? -h : h);
                tb_put(be, &tx, x);
                tw_maxpool_forward(be, p, &ty, ws, &tx);
                tb_get(be, hy, &ty);
                x[i] = keep;
                l[s] = 0;
                for (size_t k = 0; k < ny; k++) l[s] += (double)r[k] * hy[k];
            }
            fd[n_fd] = (l[0] - l[1]) / (2.0 * h);
            an[n_fd++] = hdx[i];
        }
        snprintf(what, sizeof what, "maxpool finite differences %s", tw_layout_name(lay));
        ok &= n_fd > 0 && close_fd(what, an, fd, n_fd);
        tw_mem_free(be, ws);
        tb_tensor_free(be, &tx); tb_tensor_free(be, &ty); tb_tensor_free(be, &tdx); tb_tensor_free(be, &tdy);
        free(x); free(r); free(hy); free(hdx); free(ry); free(rdx); free(arg); free(gy); free(gdx);
        tw_maxpool_plan_free(be, p);
    }
    return ok;
}

static int test_avgpool(tw_backend *be, tw_rng *rng) {
    int ok = 1;
    enum { N = 3, C = 21, H = 4, W = 3 };
    const size_t nx = (size_t)N * C * H * W, ny = (size_t)N * C;
    for (int l = 0; l < 4; l++) {
        tw_layout lay = LAYOUTS[l];
        float *x = tb_alloc_rand(rng, nx, 1.0f), *dy = tb_alloc_rand(rng, ny, 1.0f);
        float y[N * C], want[N * C], *hdx = malloc(nx * sizeof(float)), *wdx = malloc(nx * sizeof(float));
        tw_tensor tx = tb_tensor(be, N, C, H, W, TW_F32, lay);
        tb_put(be, &tx, x);
        tw_avgpool_forward(be, y, &tx);
        for (size_t i = 0; i < ny; i++) {
            double s = 0;
            for (int k = 0; k < H * W; k++) s += x[i * H * W + k];
            want[i] = (float)(s / (H * W));
        }
        char what[96];
        snprintf(what, sizeof what, "avgpool fwd %s", tw_layout_name(lay));
        ok &= check_close_tol(what, y, want, ny, 1e-6, 1e-6);
        /* Fill the padding with garbage first: backward must write it as zero. */
        memset(tx.data, 0x3f, tw_tensor_bytes(&tx));
        tw_avgpool_backward(be, &tx, dy);
        tb_get(be, hdx, &tx);
        for (size_t i = 0; i < nx; i++) wdx[i] = dy[i / (H * W)] / (float)(H * W);
        snprintf(what, sizeof what, "avgpool bwd %s", tw_layout_name(lay));
        ok &= check_close_tol(what, hdx, wdx, nx, 1e-7, 1e-6) && tb_pad_zero(be, &tx);
        tb_tensor_free(be, &tx);
        free(x); free(dy); free(hdx); free(wdx);
    }
    return ok;
}

/* ---- dense ------------------------------------------------------------------------------ */

static int test_gemm(tw_backend *be, tw_rng *rng) {
    int ok = 1;
    const int m = 13, n = 7, k = 9;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
            int lda = ac + 3, ldb = bc + 2, ldc = n + 5;
            float *a = tb_alloc_rand(rng, (size_t)ar * lda, 1.0f), *b = tb_alloc_rand(rng, (size_t)br * ldb, 1.0f);
            float *c = tb_alloc_rand(rng, (size_t)m * ldc, 1.0f), *c0 = malloc((size_t)m * ldc * sizeof(float));
            memcpy(c0, c, (size_t)m * ldc * sizeof(float));
            const float alpha = 0.7f, beta = -0.3f;
            tw_gemm(be, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            double got[13 * 12], want[13 * 12];
            int cnt = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < ldc; j++, cnt++) {
                    double s = 0;
                    for (int p = 0; p < k && j < n; p++) {
                        double av = ta ? a[p * lda + i] : a[i * lda + p];
                        double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                        s += av * bv;
                    }
                    /* columns beyond n belong to the caller and must stay untouched */
                    want[cnt] = j < n ? alpha * s + beta * c0[i * ldc + j] : c0[i * ldc + j];
                    got[cnt] = c[i * ldc + j];
                }
            char what[64];
            snprintf(what, sizeof what, "gemm trans_a=%d trans_b=%d (+guard columns)", ta, tb);
            ok &= check_close_tol_d(what, got, want, cnt, 1e-5, 1e-5);
            free(a); free(b); free(c); free(c0);
        }
    /* beta = 0 ignores whatever C held (NaN included), as BLAS does */
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1}, c[4] = {NAN, NAN, NAN, NAN};
    tw_gemm(be, 0, 0, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
    ok &= check_close_tol("gemm beta=0 over NaN", c, a, 4, 0, 0);
    return ok;
}

static int test_bias(tw_backend *be, tw_rng *rng) {
    const int m = 37, n = 150;
    float *y = tb_alloc_rand(rng, (size_t)m * n, 1.0f), *bias = tb_alloc_rand(rng, n, 1.0f);
    float *want = malloc((size_t)m * n * sizeof(float)), db[150], wdb[150];
    for (int i = 0; i < m * n; i++) want[i] = y[i] + bias[i % n];
    tw_bias_forward(be, y, bias, m, n);
    int ok = check_close_tol("bias forward", y, want, (size_t)m * n, 0, 0);
    for (int j = 0; j < n; j++) {
        double s = 0;
        for (int i = 0; i < m; i++) s += want[i * n + j];
        wdb[j] = (float)s;
    }
    tw_bias_backward(be, db, want, m, n);
    ok &= check_close_tol("bias backward", db, wdb, n, 1e-5, 1e-5);
    free(y); free(bias); free(want);
    return ok;
}

/* The projector's BN: a plan of f32 rows and the external-statistics ops on one rank, the
 * statistics finished as src/model/syncbn.c does; L = Σ r ⊙ y, with and without affine and relu,
 * against finite differences. */
static tw_tensor rows_t(float *p, int n, int d) { return (tw_tensor){p, n, d, 1, 1, TW_F32, TW_LAYOUT_NHWC}; }

static double rows_loss(tw_backend *be, tw_bn_plan *p, float *y, float *x, const float *g, const float *b,
                        const float *r, int n, int d, float *mean, float *inv_std) {
    double sums[2 * 40], stats[2 * 40];
    float zero[40] = {0};
    int bad = 0;
    tw_tensor tx = rows_t(x, n, d), ty = rows_t(y, n, d);
    tw_bn_sums(be, p, sums, &tx, zero);
    tw_bn_stats_finish(be, mean, inv_std, stats, &bad, sums, zero, d, n, 1e-5f);
    tw_bn_forward_stats(be, p, &ty, &tx, mean, inv_std, g, b);
    double l = 0;
    for (int i = 0; i < n * d; i++) l += (double)r[i] * y[i];
    return bad ? NAN : l;
}

static int test_bn_rows(tw_backend *be, tw_rng *rng) {
    int ok = 1;
    enum { n = 16, d = 40 };
    for (int variant = 0; variant < 3; variant++) {
        int relu = variant == 2, affine = variant >= 1;
        tw_bn_desc desc = {n, d, 1, 1, TW_LAYOUT_NHWC, relu, 1e-5f, 0.1f, 1};
        tw_bn_plan *p = NULL;
        tw_err err = {0};
        TW_ASSERT(tw_bn_plan_make(be, &p, &desc, &err) == TW_OK);
        float *x = tb_alloc_rand(rng, n * d, 2.0f), *r = tb_alloc_rand(rng, n * d, 1.0f);
        float *g = affine ? tb_alloc_rand(rng, d, 1.0f) : NULL, *b = affine ? tb_alloc_rand(rng, d, 1.0f) : NULL;
        float y[n * d], dx[n * d], mean[d], inv_std[d];
        double sums[2 * d];
        for (int i = 0; i < n * d; i++) x[i] += (float)(i % d) * 0.1f;
        if (g) for (int j = 0; j < d; j++) g[j] += 1.5f;
        rows_loss(be, p, y, x, g, b, r, n, d, mean, inv_std);
        /* the sums themselves (shift 0) */
        double ws[2 * d];
        float zero[d];
        for (int j = 0; j < d; j++) zero[j] = 0.0f;
        tw_tensor tx = rows_t(x, n, d), ty = rows_t(y, n, d), tr = rows_t(r, n, d), tdx = rows_t(dx, n, d);
        tw_bn_sums(be, p, sums, &tx, zero);
        for (int j = 0; j < d; j++) {
            ws[j] = ws[d + j] = 0;
            for (int i = 0; i < n; i++) {
                ws[j] += x[i * d + j];
                ws[d + j] += (double)x[i * d + j] * x[i * d + j];
            }
        }
        ok &= variant > 0 || check_close_tol_d("bn rows sums", sums, ws, 2 * d, 1e-9, 1e-12);
        tw_bn_backward_sums(be, p, sums, NULL, NULL, 0, &tr, &tx, &ty, mean, inv_std);
        tw_bn_backward_stats(be, p, &tdx, &tr, &tx, &ty, mean, inv_std, g, sums, n);
        /* dgamma = Σdy'x̂ and dbeta = Σdy' are the sums; check them and dx by differences. */
        const float h = 1e-3f;
        double fd[36], an[36];
        int n_fd = 0;
        for (int t = 0; t < 36; t++) {
            int which = t < 12 ? 0 : t < 24 ? 1 : 2;
            if (which > 0 && !affine) continue;
            int i = (int)tw_rng_below(rng, n * d), j = i % d;
            if (relu) {   /* skip columns with an output near the kink */
                int near = 0;
                for (int q = 0; q < n; q++) {
                    double pre = (g ? g[j] : 1) * (x[q * d + j] - mean[j]) * inv_std[j] + (b ? b[j] : 0);
                    if (fabs(pre) < 0.05) near = 1;
                }
                if (near) continue;
            }
            float *v = which == 0 ? &x[i] : which == 1 ? &g[j] : &b[j];
            float keep = *v, tmp_y[n * d], tm[d], ti[d];
            *v = keep + h;
            double lp = rows_loss(be, p, tmp_y, x, g, b, r, n, d, tm, ti);
            *v = keep - h;
            double lm = rows_loss(be, p, tmp_y, x, g, b, r, n, d, tm, ti);
            *v = keep;
            fd[n_fd] = (lp - lm) / (2.0 * h);
            an[n_fd++] = which == 0 ? dx[i] : which == 1 ? sums[d + j] : sums[j];
        }
        char what[64];
        snprintf(what, sizeof what, "bn rows finite differences affine=%d relu=%d", affine, relu);
        ok &= n_fd > 4 && close_fd(what, an, fd, n_fd);
        free(x); free(r); free(g); free(b);
        tw_bn_plan_free(be, p);
    }
    return ok;
}

/* ---- losses ----------------------------------------------------------------------------- */

static int test_losses(tw_backend *be, tw_rng *rng) {
    int ok = 1;
    enum { d = 24 };
    float *c = tb_alloc_rand(rng, d * d, 0.5f), dc[d * d], dc2[d * d];
    const float lambda = 0.0051f;
    /* The paper's loss (every diagonal target 1), then DeCUR's (targets 0 past common), scaled. */
    const int commons[2] = {d, d / 3};
    const float scales[2] = {1.0f, 0.5f};
    for (int variant = 0; variant < 2; variant++) {
        int common = commons[variant];
        float scale = scales[variant];
        double l0 = tw_bt_loss(be, dc, c, d, common, lambda, scale), want = 0;
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) {
                double v = c[i * d + j], t = i < common ? 1.0 : 0.0;
                want += i == j ? (t - v) * (t - v) : lambda * v * v;
            }
        want *= scale;
        ok &= check_close_tol_d(variant ? "bt_loss value (common d/3, scale 0.5)" : "bt_loss value", &l0, &want, 1,
                                1e-6, 1e-6);
        double fd[12], an[12];
        const float h = 1e-2f;
        for (int t = 0; t < 12; t++) {
            /* Diagonal entries before and past common, then anywhere. */
            int i = t < 3 ? (int)tw_rng_below(rng, (uint32_t)common) * (d + 1)
                  : t < 6 && common < d ? (common + (int)tw_rng_below(rng, (uint32_t)(d - common))) * (d + 1)
                                        : (int)tw_rng_below(rng, d * d);
            float keep = c[i];
            c[i] = keep + h;
            double lp = tw_bt_loss(be, dc2, c, d, common, lambda, scale);
            c[i] = keep - h;
            double lm = tw_bt_loss(be, dc2, c, d, common, lambda, scale);
            c[i] = keep;
            fd[t] = (lp - lm) / (2.0 * h);
            an[t] = dc[i];
        }
        ok &= close_fd(variant ? "bt_loss finite differences (common d/3, scale 0.5)"
                               : "bt_loss finite differences (diagonal + off)", an, fd, 12);
    }
    free(c);

    enum { n = 6, k = 19 };
    float *z = tb_alloc_rand(rng, n * k, 4.0f), t_[n * k], dz[n * k], dz2[n * k];
    for (int i = 0; i < n * k; i++) t_[i] = tw_rng_uniform(rng) < 0.3f ? 1.0f : 0.0f;
    z[0] = 200.0f;   /* far outside exp's range: the stable form must stay finite */
    z[1] = -200.0f;
    t_[0] = 0.0f;
    t_[1] = 1.0f;
    double bl = tw_bce_logits(be, dz, z, t_, n, k), bw = 0;
    for (int i = 0; i < n * k; i++) {
        double x = z[i];
        bw += (x > 0 ? x : 0) - x * t_[i] + log1p(exp(-fabs(x)));
    }
    bw /= n * k;
    ok &= check_close_tol_d("bce value (with |logit| = 200)", &bl, &bw, 1, 1e-6, 1e-6);
    double fd[10], an[10];
    const float h = 1e-2f;
    for (int t = 0; t < 10; t++) {
        int i = t < 2 ? t : (int)tw_rng_below(rng, n * k);
        float keep = z[i];
        z[i] = keep + h;
        double lp = tw_bce_logits(be, dz2, z, t_, n, k);
        z[i] = keep - h;
        double lm = tw_bce_logits(be, dz2, z, t_, n, k);
        z[i] = keep;
        fd[t] = (lp - lm) / (2.0 * h);
        an[t] = dz[i];
    }
    ok &= check_close_tol_d("bce finite differences", an, fd, 10, 1e-5, 2e-3);
    free(z);
    return ok;
}

/* ---- scale_check and the optimizers' segment rules ------------------------------------- */

static int test_scale_and_segments(tw_backend *be) {
    int ok = 1;
    float x[5] = {1, 2, 3, 4, 5};
    int flag = 0;   /* the CPU backend's memory is the host's */
    tw_scale_check(be, x, 5, 0.5f, &flag);
    float want[5] = {0.5f, 1, 1.5f, 2, 2.5f};
    ok &= flag == 0 && tw_read_flag(be, &flag) == 0.0 && check_close_tol("scale_check finite", x, want, 5, 0, 0);
    x[3] = INFINITY;
    tw_scale_check(be, x, 5, 2.0f, &flag);
    if (flag != 1 || tw_read_flag(be, &flag) != 1.0) {
        printf("FAIL scale_check did not report Inf\n");
        ok = 0;
    }
    flag = 0;
    x[3] = NAN;
    tw_scale_check(be, x, 5, 2.0f, &flag);
    if (flag != 1) {
        printf("FAIL scale_check did not report NaN\n");
        ok = 0;
    }
    tw_scale_check(be, want, 5, 1.0f, &flag);   /* finite: a raised flag stays raised */
    if (flag != 1) {
        printf("FAIL scale_check lowered a raised flag\n");
        ok = 0;
    }
    /* A 1-D segment: LARS with q = 1 and no decay is plain momentum SGD; a 2-D one with zero
     * gradient and zero decay does not move. */
    float p[6] = {1, 2, 3, 4, 5, 6}, mu[6] = {0}, g[6] = {1, 1, 1, 0, 0, 0};
    tw_param_seg segs[2] = {{0, 3, 1}, {3, 3, 0}};
    tw_update_plan *plan_1d = NULL, *plan_2d = NULL;
    tw_err err = {0};
    if (tw_update_plan_make(be, &plan_1d, segs, 1, &err) != TW_OK ||
        tw_update_plan_make(be, &plan_2d, segs + 1, 1, &err) != TW_OK) {
        printf("FAIL update plan: %s\n", err.msg);
        return 0;
    }
    /* A plan holds its own copy of the table: the caller's may change after. */
    segs[0] = segs[1];
    tw_lars_hparams lh = {0.9f, 0.5f, 0.001f};
    tw_update_vals lr = tw_rate_vals(0.1);
    tw_lars_update(be, plan_1d, p, mu, g, &lh, &lr, NULL);
    float wp[6] = {0.9f, 1.9f, 2.9f, 4, 5, 6};
    ok &= check_close_tol("lars 1-D segment: no wd, q = 1", p, wp, 6, 1e-7, 0);
    tw_sgd_hparams sh = {0.0f, 0.0f, 0};
    tw_sgd_update(be, plan_2d, p, mu, g, &sh, &lr, NULL);
    ok &= check_close_tol("sgd zero gradient leaves p", p, wp, 6, 0, 0);
    tw_update_plan_free(be, plan_1d);
    tw_update_plan_free(be, plan_2d);
    return ok;
}

int main(void) {
    tw_backend *be = tb_backend(TW_PREC_FP32);
    tw_rng rng;
    tw_rng_init(&rng, 5, 0, 0, 0);
    int ok = 1;
    ok &= test_eltwise(be, &rng);
    ok &= test_reorder(be, &rng);
    ok &= test_maxpool(be, &rng);
    ok &= test_avgpool(be, &rng);
    ok &= test_gemm(be, &rng);
    ok &= test_bias(be, &rng);
    ok &= test_bn_rows(be, &rng);
    ok &= test_losses(be, &rng);
    ok &= test_scale_and_segments(be);
    tw_backend_free(be);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? TW_TEST_PASS : TW_TEST_FAIL;
}
