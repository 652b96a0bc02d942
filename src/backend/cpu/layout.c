/* The CPU backend's choice of the network's activation layout, made once per network shape at
 * plan time by measurement: each candidate (the stem's input layout, and with it the layout of
 * every later layer) is planned for the whole network, rejected when a pass has only oneDNN's
 * reference kernel, and the survivors are timed on the real primitives; the fastest wins.
 * conv.c makes the stem's candidate plans; layout_cache.c keeps decisions on disk. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/cpu.h"

/* What an implementation name says about its speed: "ref:any" and "ref_..." 0, GEMM-based 1,
 * then the ISA after the colon ("jit:avx2" 3 ... "brgconv:avx512_core_amx" 6). Only for logs:
 * the choice itself is timed. */
int tw_cpu_impl_rank(const char *impl) {
    if (!impl || strncmp(impl, "ref", 3) == 0) return 0;
    if (strstr(impl, "gemm")) return 1;
    const char *isa = strchr(impl, ':');
    isa = isa ? isa + 1 : impl;
    if (strstr(isa, "amx")) return 6;
    if (strstr(isa, "avx512_core_bf16") || strstr(isa, "avx512_core_fp16")) return 5;
    if (strstr(isa, "avx512")) return 4;
    if (strstr(isa, "avx2") || strstr(isa, "avx")) return 3;
    if (strstr(isa, "sse41")) return 2;
    return 2;   /* "uni" and other ISA-agnostic JIT kernels */
}

int tw_cpu_impl_has_ref(const char *impls) {
    return strncmp(impls, "ref", 3) == 0 || strstr(impls, "=ref") != NULL;
}

int tw_cpu_layout_choose(const tw_cpu_layout_cand *c, int n_cands) {
    int best = -1;
    for (int i = 0; i < n_cands; i++) {
        if (!c[i].ok) continue;
        if (best < 0) {
            best = i;
            continue;
        }
        const tw_cpu_layout_cand *b = &c[best];
        /* A candidate with a reference kernel only when every one has one; then the fastest. A
         * tie keeps the earlier. */
        int better = c[i].has_ref != b->has_ref ? !c[i].has_ref : c[i].ms < b->ms;
        if (better) best = i;
    }
    return best;
}

/* ---- timing ------------------------------------------------------------------------------- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* Buffers for one layer's passes, filled with a smooth pattern (zeros would let some kernels
 * skip work). */
typedef struct bufs {
    tw_backend *be;
    void *p[24];
    int n;
} bufs;

static void *buf(bufs *b, size_t n_bytes, int fill) {
    void *p = tw_cpu_mem_alloc(b->be, n_bytes);
    TW_ASSERT(b->n < 24);
    b->p[b->n++] = p;
    if (fill && n_bytes >= sizeof(float)) {
        size_t n = n_bytes / sizeof(float);
        float *h = malloc(n * sizeof(float));
        TW_ASSERT(h);
        for (size_t i = 0; i < n; i++) h[i] = 0.25f + 0.5f * (float)((i * 2654435761u) % 1000) / 1000.0f;
        tw_cpu_mem_from_host(b->be, p, h, n * sizeof(float));
        free(h);
    } else {
        tw_cpu_mem_zero(b->be, p, n_bytes);
    }
    return p;
}

static void bufs_free(bufs *b) {
    for (int i = 0; i < b->n; i++) tw_cpu_mem_free(b->be, b->p[i]);
    b->n = 0;
}

static tw_tensor tensor_like(bufs *b, tw_tensor t, int fill) {
    t.data = buf(b, tw_tensor_bytes(&t), fill && t.dtype == TW_F32);
    return t;
}

static void note_ref(tw_cpu_layout_cand *c, const char *what, const char *impl) {
    if (c->has_ref || !tw_cpu_impl_has_ref(impl)) return;
    c->has_ref = 1;
    snprintf(c->ref_what, sizeof c->ref_what, "%s", what);
}

/* The best of a few runs of one layer's training passes: conv forward, BN + ReLU forward and
 * backward, conv backward-weights and backward-data (when need_dx); after one warm-up run. The
 * best, not the mean: a run the OS interrupted says nothing about the kernels. */
#define TIME_RUNS 4
static double time_conv_bn(tw_backend *base, tw_conv_plan *cp, tw_bn_plan *bp, int need_dx) {
    bufs b = {base, {0}, 0};
    tw_tensor x = tensor_like(&b, tw_conv_plan_x(cp), 1), y = tensor_like(&b, tw_conv_plan_y(cp), 0);
    tw_tensor z = tensor_like(&b, y, 0), dz = tensor_like(&b, y, 1), dy = tensor_like(&b, y, 0);
    tw_tensor dx = need_dx ? tensor_like(&b, x, 0) : x;
    size_t n_w = (size_t)x.c * y.c * 49;   /* enough for any kernel up to 7x7 */
    float *w = buf(&b, n_w * sizeof(float), 1), *dw = buf(&b, n_w * sizeof(float), 0);
    size_t c_bytes = (size_t)((y.c + 15) / 16 * 16) * sizeof(float);
    float *gamma = buf(&b, c_bytes, 1), *beta = buf(&b, c_bytes, 1), *mean = buf(&b, c_bytes, 0);
    float *var = buf(&b, c_bytes, 0), *rmean = buf(&b, c_bytes, 0), *rvar = buf(&b, c_bytes, 1);
    float *dg = buf(&b, c_bytes, 0), *db = buf(&b, c_bytes, 0);
    void *ws = buf(&b, tw_bn_plan_ws_bytes(bp) + 64, 0);
    double best = 1e30;
    for (int r = 0; r <= TIME_RUNS; r++) {
        double t0 = now_ms();
        tw_cpu_conv_forward(base, cp, &y, &x, w);
        tw_cpu_bn_forward_train(base, bp, &z, mean, var, ws, &y, gamma, beta, rmean, rvar);
        tw_cpu_bn_backward(base, bp, &dy, dg, db, &dz, &y, mean, var, ws, gamma);
        tw_cpu_conv_backward_weights(base, cp, dw, &dy, &x);
        if (need_dx) tw_cpu_conv_backward_data(base, cp, &dx, &dy, w);
        double t = now_ms() - t0;
        if (r > 0 && t < best) best = t;
    }
    bufs_free(&b);
    return best;
}

static double time_pool(tw_backend *base, tw_pool_plan *pp, const tw_tensor *x_like) {
    bufs b = {base, {0}, 0};
    tw_tensor x = tensor_like(&b, *x_like, 1), dx = tensor_like(&b, *x_like, 0);
    tw_tensor y = tensor_like(&b, tw_maxpool_plan_y(pp), 0), dy = tensor_like(&b, y, 1);
    void *ws = buf(&b, tw_maxpool_plan_ws_bytes(pp) + 64, 0);
    double best = 1e30;
    for (int r = 0; r <= TIME_RUNS; r++) {
        double t0 = now_ms();
        tw_cpu_maxpool_forward(base, pp, &y, ws, &x);
        tw_cpu_maxpool_backward(base, pp, &dx, &dy, ws);
        double t = now_ms() - t0;
        if (r > 0 && t < best) best = t;
    }
    bufs_free(&b);
    return best;
}

/* One layer in layout l: plans made, kernels checked, timed (x count). 0 when a plan fails. */
static int time_layer(tw_cpu_backend *be, const tw_conv_desc *d, int count, tw_layout l,
                      tw_cpu_layout_cand *c) {
    tw_backend *base = &be->base;
    tw_conv_desc cd = *d;
    cd.x_layout = l;
    cd.x_layout_free = 0;
    cd.net = NULL;
    tw_conv_plan *cp = NULL;
    tw_bn_plan *bp = NULL;
    int ok = tw_cpu_conv_plan_make_fixed(base, &cp, &cd, (int)l, NULL) == TW_OK;
    if (ok) {
        tw_tensor y = tw_conv_plan_y(cp);
        tw_bn_desc bd = {y.n, y.c, y.h, y.w, y.layout, 1, 1e-5f, 0.1f, 0};
        ok = tw_cpu_bn_plan_make(base, &bp, &bd, NULL) == TW_OK;
    }
    if (ok) {
        char what[96], bn_what[96];
        snprintf(what, sizeof what, "conv %dx%d/%d %d->%d at %dx%d", d->kernel, d->kernel,
                 d->stride, d->c_in, d->c_out, d->h_in, d->w_in);
        note_ref(c, what, tw_conv_plan_impl(cp));
        snprintf(bn_what, sizeof bn_what, "batch norm %d at %dx%d", d->c_out,
                 tw_conv_plan_y(cp).h, tw_conv_plan_y(cp).w);
        note_ref(c, bn_what, tw_bn_plan_impl(bp));
        if (!c->has_ref) {
            double ms = time_conv_bn(base, cp, bp, d->need_dx);
            c->ms += count * ms;
            if (getenv("TW_VERBOSE"))
                tw_warn("twinfuse:   %s in %s: %.3f ms x %d (%s)\n", what, tw_layout_name(l), ms,
                        count, tw_conv_plan_impl(cp));
        }
    }
    if (cp) tw_cpu_conv_plan_free(base, cp);
    if (bp) tw_cpu_bn_plan_free(base, bp);
    return ok;
}

/* Batch for timing: the ranking of layouts does not change with the batch beyond a few images,
 * and a large batch would make the first plan of a shape slow. */
#define TIME_MAX_BATCH 16

void tw_cpu_layout_time(tw_cpu_backend *be, tw_conv_plan *stem, const tw_net_shape *net,
                        tw_cpu_layout_cand *c) {
    tw_backend *base = &be->base;
    tw_tensor sx = tw_conv_plan_x(stem), sy = tw_conv_plan_y(stem);
    c->ok = 1;
    c->x = sx.layout;
    c->y = sy.layout;
    c->ms = 0;
    note_ref(c, "the stem convolution", tw_conv_plan_impl(stem));
    int n = sx.n < TIME_MAX_BATCH ? sx.n : TIME_MAX_BATCH;
    /* The stem at the timing batch, with its BN. */
    tw_conv_desc sd = *tw_cpu_conv_plan_desc(stem);
    sd.n = n;
    sd.x_layout = sx.layout;
    sd.x_layout_free = 0;
    sd.net = NULL;
    tw_conv_plan *s2 = NULL;
    tw_bn_plan *bp = NULL;
    if (!c->has_ref && tw_cpu_conv_plan_make_fixed(base, &s2, &sd, (int)sy.layout, NULL) == TW_OK) {
        tw_tensor y = tw_conv_plan_y(s2);
        tw_bn_desc bd = {y.n, y.c, y.h, y.w, y.layout, 1, 1e-5f, 0.1f, 0};
        if (tw_cpu_bn_plan_make(base, &bp, &bd, NULL) == TW_OK) {
            note_ref(c, "the stem's batch norm", tw_bn_plan_impl(bp));
            if (!c->has_ref) c->ms += time_conv_bn(base, s2, bp, 0);
        } else {
            c->ok = 0;
        }
    }
    if (s2) tw_cpu_conv_plan_free(base, s2);
    if (bp) tw_cpu_bn_plan_free(base, bp);
    if (!net || !c->ok) return;
    if (net->pool) {
        tw_pool_plan *pp = NULL;
        if (tw_cpu_maxpool_plan_make(base, &pp, n, sy.c, sy.h, sy.w, sy.layout, NULL) != TW_OK) {
            c->ok = 0;
            return;
        }
        note_ref(c, "the max pool", tw_maxpool_plan_impl(pp));
        tw_tensor x = {NULL, n, sy.c, sy.h, sy.w, sy.dtype, sy.layout};
        if (!c->has_ref) c->ms += time_pool(base, pp, &x);
        tw_cpu_maxpool_plan_free(base, pp);
    }
    for (int i = 0; i < net->n_convs && c->ok; i++) {
        tw_conv_desc d = net->conv[i];
        d.n = n;
        c->ok = time_layer(be, &d, net->count[i], sy.layout, c);
    }
}

int tw_cpu_layout_forced(tw_layout *out) {
    const char *env = getenv("TW_CPU_LAYOUT");
    if (!env || !*env) return 0;
    static const tw_layout all[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C,
                                    TW_LAYOUT_NCHW16C};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(env, tw_layout_name(all[i])) == 0) {
            *out = all[i];
            return 1;
        }
    }
    return -1;
}

/* Said once per process and message, on rank 0: a plan for the same layer is made again for
 * every activation set, model and sweep cell. The one process-wide table of this backend: what
 * was said is a fact about the process, not about one backend. */
#define WARNED_MAX 256
static unsigned long g_warned[WARNED_MAX];
static int g_n_warned;

void tw_cpu_warn_once(const char *msg) {
    if (tw_log_rank() != 0) return;
    unsigned long h = 5381;
    for (const char *s = msg; *s; s++) h = h * 33 + (unsigned char)*s;
    int seen = 0;
#pragma omp critical(tw_cpu_warn_once)
    {
        for (int i = 0; i < g_n_warned && !seen; i++) seen = g_warned[i] == h;
        if (!seen && g_n_warned < WARNED_MAX) g_warned[g_n_warned++] = h;
    }
    if (!seen) tw_warn("%s", msg);
}
