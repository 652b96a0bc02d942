/* The CPU backend (fp32) against PyTorch (float64, ref_ops.py): convolutions forward /
 * backward-data / backward-weights, BatchNorm2d over two training steps (running statistics)
 * with backward and eval, max pool, each with the input in all four layouts; and five steps of
 * Adam, AdamW, SGD (plain, Nesterov) and the official Barlow Twins LARS.
 * usage: test_torch_ref REF_FILE */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb.h"

static const tw_layout LAYOUTS[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C, TW_LAYOUT_NCHW16C};

static const float *get(tb_ref *r, const char *prefix, const char *key, size_t n) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", prefix, key);
    return tb_ref_get(r, name, n);
}

static int conv_case(tw_backend *be, tb_ref *r, const char *name, int n, int ci, int hw, int co,
                     int k, int s, int p, tw_layout xl) {
    tw_conv_desc d = {n, ci, hw, hw, co, k, s, p, 1, xl, 0, NULL};
    tw_conv_plan *plan = NULL;
    tw_err err = {0};
    if (tw_conv_plan_make(be, &plan, &d, &err) != TW_OK) {
        printf("FAIL %s: %s\n", name, err.msg);
        return 0;
    }
    tw_tensor yt = tw_conv_plan_y(plan);
    size_t nx = (size_t)n * ci * hw * hw, ny = (size_t)n * co * yt.h * yt.w, nw = (size_t)co * ci * k * k;
    tw_tensor x = tb_tensor(be, n, ci, hw, hw, TW_F32, xl), dx = tb_tensor(be, n, ci, hw, hw, TW_F32, xl);
    tw_tensor y = tb_tensor(be, yt.n, yt.c, yt.h, yt.w, yt.dtype, yt.layout);
    tw_tensor dy = tb_tensor(be, yt.n, yt.c, yt.h, yt.w, yt.dtype, yt.layout);
    float *hy = malloc(ny * sizeof(float)), *hdx = malloc(nx * sizeof(float)), *dw = malloc(nw * sizeof(float));
    tb_put(be, &x, get(r, name, "x", nx));
    tb_put(be, &dy, get(r, name, "dy", ny));
    const float *w = get(r, name, "w", nw);
    tw_conv_forward(be, plan, &y, &x, w);
    tw_conv_backward_data(be, plan, &dx, &dy, w);
    tw_conv_backward_weights(be, plan, dw, &dy, &x);
    tb_get(be, hy, &y);
    tb_get(be, hdx, &dx);
    char what[96];
    int ok = 1;
    snprintf(what, sizeof what, "torch %s %s y", name, tw_layout_name(xl));
    ok &= tb_close(what, hy, get(r, name, "y", ny), ny, 1e-5, 1e-5);
    snprintf(what, sizeof what, "torch %s %s dx", name, tw_layout_name(xl));
    ok &= tb_close(what, hdx, get(r, name, "dx", nx), nx, 1e-5, 1e-5);
    snprintf(what, sizeof what, "torch %s %s dw", name, tw_layout_name(xl));
    ok &= tb_close(what, dw, get(r, name, "dw", nw), nw, 1e-5, 1e-5);
    tb_tensor_free(be, &x); tb_tensor_free(be, &dx); tb_tensor_free(be, &y); tb_tensor_free(be, &dy);
    free(hy); free(hdx); free(dw);
    tw_conv_plan_free(be, plan);
    return ok;
}

static int bn_case(tw_backend *be, tb_ref *r, tw_layout l) {
    enum { N = 4, C = 8, H = 5, W = 5 };
    const size_t nx = (size_t)N * C * H * W;
    tw_bn_desc d = {N, C, H, W, l, 0, 1e-5f, 0.1f, 0};
    tw_bn_plan *plan = NULL;
    tw_err err = {0};
    if (tw_bn_plan_make(be, &plan, &d, &err) != TW_OK) {
        printf("FAIL bn: %s\n", err.msg);
        return 0;
    }
    tw_tensor x = tb_tensor(be, N, C, H, W, TW_F32, l), y = tb_tensor(be, N, C, H, W, TW_F32, l);
    tw_tensor dx = tb_tensor(be, N, C, H, W, TW_F32, l), dy = tb_tensor(be, N, C, H, W, TW_F32, l);
    float rm[C] = {0}, rv[C], sm[C], sv[C], dg[C], db[C], *h = malloc(nx * sizeof(float));
    for (int c = 0; c < C; c++) rv[c] = 1.0f;   /* torch's initial running statistics */
    const float *g = get(r, "bn", "gamma", C), *b = get(r, "bn", "beta", C);
    tb_put(be, &x, get(r, "bn", "x1", nx));
    tw_bn_forward_train(be, plan, &y, sm, sv, NULL, &x, g, b, rm, rv);
    tb_put(be, &x, get(r, "bn", "x2", nx));
    tw_bn_forward_train(be, plan, &y, sm, sv, NULL, &x, g, b, rm, rv);
    int ok = 1;
    char what[96];
    tb_get(be, h, &y);
    snprintf(what, sizeof what, "torch bn %s y (step 2)", tw_layout_name(l));
    ok &= tb_close(what, h, get(r, "bn", "y2", nx), nx, 1e-5, 1e-5);
    snprintf(what, sizeof what, "torch bn %s running mean", tw_layout_name(l));
    ok &= tb_close(what, rm, get(r, "bn", "run_mean", C), C, 1e-6, 1e-5);
    snprintf(what, sizeof what, "torch bn %s running var (unbiased)", tw_layout_name(l));
    ok &= tb_close(what, rv, get(r, "bn", "run_var", C), C, 1e-6, 1e-5);
    tb_put(be, &dy, get(r, "bn", "dy", nx));
    tw_bn_backward(be, plan, &dx, dg, db, &dy, &x, sm, sv, NULL, g);
    tb_get(be, h, &dx);
    snprintf(what, sizeof what, "torch bn %s dx", tw_layout_name(l));
    ok &= tb_close(what, h, get(r, "bn", "dx", nx), nx, 1e-5, 1e-5);
    snprintf(what, sizeof what, "torch bn %s dgamma", tw_layout_name(l));
    ok &= tb_close(what, dg, get(r, "bn", "dgamma", C), C, 1e-5, 1e-5);
    snprintf(what, sizeof what, "torch bn %s dbeta", tw_layout_name(l));
    ok &= tb_close(what, db, get(r, "bn", "dbeta", C), C, 1e-5, 1e-5);
    tw_bn_forward_eval(be, plan, &y, &x, g, b, rm, rv);
    tb_get(be, h, &y);
    snprintf(what, sizeof what, "torch bn %s y eval", tw_layout_name(l));
    ok &= tb_close(what, h, get(r, "bn", "y_eval", nx), nx, 1e-5, 1e-5);
    tb_tensor_free(be, &x); tb_tensor_free(be, &y); tb_tensor_free(be, &dx); tb_tensor_free(be, &dy);
    free(h);
    tw_bn_plan_free(be, plan);
    return ok;
}

static int maxpool_case(tw_backend *be, tb_ref *r, tw_layout l) {
    enum { N = 2, C = 8, H = 11, W = 10, HO = 6, WO = 5 };
    const size_t nx = (size_t)N * C * H * W, ny = (size_t)N * C * HO * WO;
    tw_pool_plan *p = NULL;
    tw_err err = {0};
    if (tw_maxpool_plan_make(be, &p, N, C, H, W, l, &err) != TW_OK) {
        printf("FAIL maxpool: %s\n", err.msg);
        return 0;
    }
    tw_tensor x = tb_tensor(be, N, C, H, W, TW_F32, l), dx = tb_tensor(be, N, C, H, W, TW_F32, l);
    tw_tensor y = tb_tensor(be, N, C, HO, WO, TW_F32, l), dy = tb_tensor(be, N, C, HO, WO, TW_F32, l);
    size_t wsb = tw_maxpool_plan_ws_bytes(p);
    void *ws = wsb ? tw_mem_alloc(be, wsb) : NULL;
    float *h = malloc(nx * sizeof(float));
    tb_put(be, &x, get(r, "maxpool", "x", nx));
    tb_put(be, &dy, get(r, "maxpool", "dy", ny));
    tw_maxpool_forward(be, p, &y, ws, &x);
    tw_maxpool_backward(be, p, &dx, &dy, ws);
    int ok = 1;
    char what[96];
    tb_get(be, h, &y);
    snprintf(what, sizeof what, "torch maxpool %s y", tw_layout_name(l));
    ok &= tb_close(what, h, get(r, "maxpool", "y", ny), ny, 0, 0);
    tb_get(be, h, &dx);
    snprintf(what, sizeof what, "torch maxpool %s dx", tw_layout_name(l));
    ok &= tb_close(what, h, get(r, "maxpool", "dx", nx), nx, 1e-6, 1e-6);
    tw_mem_free(be, ws);
    tb_tensor_free(be, &x); tb_tensor_free(be, &y); tb_tensor_free(be, &dx); tb_tensor_free(be, &dy);
    free(h);
    tw_maxpool_plan_free(be, p);
    return ok;
}

enum { NW = 128, NB = 16, NP = NW + NB, STEPS = 5 };

/* The flat buffer holds the weight then the bias, as src/model's arena does. */
static void grads_of(tb_ref *r, int t, float *g) {
    char key[16];
    snprintf(key, sizeof key, "gw%d", t);
    memcpy(g, get(r, "opt", key, NW), NW * sizeof(float));
    snprintf(key, sizeof key, "gb%d", t);
    memcpy(g + NW, get(r, "opt", key, NB), NB * sizeof(float));
}

static int opt_case(tw_backend *be, tb_ref *r, const char *name) {
    float p[NP], m[NP] = {0}, v[NP] = {0}, g[NP];
    memcpy(p, get(r, "opt", "w0", NW), NW * sizeof(float));
    memcpy(p + NW, get(r, "opt", "b0", NB), NB * sizeof(float));
    const tw_param_seg segs[2] = {{0, NW, 0}, {NW, NB, 1}};
    for (int t = 0; t < STEPS; t++) {
        grads_of(r, t, g);
        if (strcmp(name, "adam") == 0) {
            tw_adam_hparams h = {0.9, 0.999, 1e-8, 0.05, 0};
            tw_update_vals vals = tw_adam_vals(&h, 0.01, t + 1);
            tw_adam_update(be, p, m, v, g, segs, 2, &h, &vals, NULL);
        } else if (strcmp(name, "adamw") == 0) {
            tw_adam_hparams h = {0.8, 0.99, 1e-6, 0.1, 1};
            tw_update_vals vals = tw_adam_vals(&h, 0.01, t + 1);
            tw_adam_update(be, p, m, v, g, segs, 2, &h, &vals, NULL);
        } else if (strcmp(name, "sgd") == 0 || strcmp(name, "sgd_nesterov") == 0) {
            tw_sgd_hparams h = {0.9f, 1e-3f, strcmp(name, "sgd_nesterov") == 0};
            tw_update_vals vals = tw_rate_vals(0.05);
            tw_sgd_update(be, p, m, g, segs, 2, &h, &vals, NULL);
        } else {
            tw_lars_hparams h = {0.9f, 0.05f, 0.001f};   /* wd large enough to matter */
            tw_update_vals vals = tw_rate_vals(0.2);
            tw_lars_update(be, p, m, g, segs, 2, &h, &vals, NULL);
        }
    }
    char what[96];
    int ok = 1;
    snprintf(what, sizeof what, "torch %s weight after %d steps", name, STEPS);
    ok &= tb_close(what, p, get(r, name, "w", NW), NW, 2e-6, 1e-5);
    snprintf(what, sizeof what, "torch %s bias (1-D) after %d steps", name, STEPS);
    ok &= tb_close(what, p + NW, get(r, name, "b", NB), NB, 2e-6, 1e-5);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s REF_FILE\n", argv[0]);
        return TB_FAIL;
    }
    tb_ref *r = tb_ref_open(argv[1]);
    tw_backend *be = tb_backend(TW_PREC_FP32);
    int ok = 1;
    for (int l = 0; l < 4; l++) {
        ok &= conv_case(be, r, "conv3s2", 2, 16, 9, 24, 3, 2, 1, LAYOUTS[l]);
        ok &= conv_case(be, r, "conv7s2", 2, 3, 15, 16, 7, 2, 3, LAYOUTS[l]);
        ok &= conv_case(be, r, "conv1s1", 2, 32, 6, 16, 1, 1, 0, LAYOUTS[l]);
        ok &= conv_case(be, r, "conv3s1", 2, 20, 7, 20, 3, 1, 1, LAYOUTS[l]);
        ok &= bn_case(be, r, LAYOUTS[l]);
        ok &= maxpool_case(be, r, LAYOUTS[l]);
    }
    const char *opts[] = {"adam", "adamw", "sgd", "sgd_nesterov", "lars"};
    for (int i = 0; i < 5; i++) ok &= opt_case(be, r, opts[i]);
    tw_backend_free(be);
    tb_ref_close(r);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? TB_PASS : TB_FAIL;
}
