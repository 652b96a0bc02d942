/* ResNet18's structure: parameter registration with torchvision's names, torchvision's
 * initialisation, the plans for one input shape and the activation sets. The step itself
 * (forward, backward) is in resnet18_step.c. */
#include "model/resnet18.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"

static void add_unit(tw_resnet18 *m, int u, const char *conv_name, const char *bn_name, int c_in,
                     int c_out, int kernel, int stride, int relu) {
    tw_resnet18_unit *x = &m->u[u];
    x->c_in = c_in;
    x->c_out = c_out;
    x->kernel = kernel;
    x->stride = stride;
    x->pad = kernel / 2;
    x->relu = relu;
    char name[TW_PARAM_NAME_MAX];
    int wshape[4] = {c_out, c_in, kernel, kernel}, vshape[1] = {c_out};
    snprintf(name, sizeof name, "%s%s.weight", m->prefix, conv_name);
    x->w = tw_params_add(m->P, name, TW_PARAM_TRAIN, 4, wshape);
    snprintf(name, sizeof name, "%s%s.weight", m->prefix, bn_name);
    x->gamma = tw_params_add(m->P, name, TW_PARAM_TRAIN, 1, vshape);
    snprintf(name, sizeof name, "%s%s.bias", m->prefix, bn_name);
    x->beta = tw_params_add(m->P, name, TW_PARAM_TRAIN, 1, vshape);
    snprintf(name, sizeof name, "%s%s.running_mean", m->prefix, bn_name);
    x->run_mean = tw_params_add(m->P, name, TW_PARAM_BUFFER, 1, vshape);
    snprintf(name, sizeof name, "%s%s.running_var", m->prefix, bn_name);
    x->run_var = tw_params_add(m->P, name, TW_PARAM_BUFFER, 1, vshape);
    snprintf(name, sizeof name, "%s%s.num_batches_tracked", m->prefix, bn_name);
    x->n_tracked = tw_params_add(m->P, name, TW_PARAM_COUNTER, 0, NULL);
}

tw_status tw_resnet18_init(tw_resnet18 *m, tw_params *P, const char *prefix, int c_in, tw_err *err) {
    memset(m, 0, sizeof *m);
    if (c_in < 1 || c_in > 1024)
        return tw_err_set(err, TW_E_RANGE, "resnet18: %d input channels (want 1..1024)", c_in);
    if (strlen(prefix) >= TW_RESNET18_MAX_PREFIX)
        return tw_err_set(err, TW_E_RANGE, "resnet18: prefix '%s' too long", prefix);
    TW_ASSERT(!P->params);
    strcpy(m->prefix, prefix);
    m->P = P;
    m->c_in = c_in;
    m->grad_begin = P->n_params;
    add_unit(m, 0, "conv1", "bn1", c_in, 64, 7, 2, 1);
    int u = 1, c = 64;
    char conv[64], bn[64];
    for (int s = 0; s < 4; s++) {
        int c_out = 64 << s;
        for (int i = 0; i < 2; i++) {
            tw_resnet18_block *b = &m->b[2 * s + i];
            int stride = (s > 0 && i == 0) ? 2 : 1;
            snprintf(conv, sizeof conv, "layer%d.%d.conv1", s + 1, i);
            snprintf(bn, sizeof bn, "layer%d.%d.bn1", s + 1, i);
            b->conv1 = u;
            add_unit(m, u++, conv, bn, c, c_out, 3, stride, 1);
            snprintf(conv, sizeof conv, "layer%d.%d.conv2", s + 1, i);
            snprintf(bn, sizeof bn, "layer%d.%d.bn2", s + 1, i);
            b->conv2 = u;
            add_unit(m, u++, conv, bn, c_out, c_out, 3, 1, 0);
            b->down = -1;
            if (stride != 1 || c != c_out) {
                snprintf(conv, sizeof conv, "layer%d.%d.downsample.0", s + 1, i);
                snprintf(bn, sizeof bn, "layer%d.%d.downsample.1", s + 1, i);
                b->down = u;
                add_unit(m, u++, conv, bn, c, c_out, 1, stride, 0);
            }
            c = c_out;
        }
    }
    TW_ASSERT(u == TW_RESNET18_UNITS);
    m->grad_end = P->n_params;
    return TW_OK;
}

void tw_resnet18_init_weights(tw_resnet18 *m, uint64_t seed) {
    tw_params *P = m->P;
    tw_backend *be = P->be;
    size_t max_elems = 0;
    for (int u = 0; u < TW_RESNET18_UNITS; u++) {
        size_t n = P->entries[m->u[u].w].n_elems;
        if (n > max_elems) max_elems = n;
    }
    float *h = malloc(max_elems * sizeof(float));
    TW_ASSERT(h);
    for (int u = 0; u < TW_RESNET18_UNITS; u++) {
        const tw_resnet18_unit *x = &m->u[u];
        /* kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / fan_out) with
         * fan_out = c_out k k (He et al. 2015; torch.nn.init). One Philox stream per unit. */
        size_t n = P->entries[x->w].n_elems;
        float std = sqrtf(2.0f / (float)(x->c_out * x->kernel * x->kernel));
        tw_rng r;
        tw_rng_init(&r, seed, 0x52334e31u /* "R3N1" */, (uint32_t)u, 0);
        for (size_t i = 0; i < n; i++) h[i] = std * tw_rng_normal(&r);
        tw_mem_from_host(be, tw_params_ptr(P, x->w), h, n * sizeof(float));
        for (int i = 0; i < x->c_out; i++) h[i] = 1.0f;
        tw_mem_from_host(be, tw_params_ptr(P, x->gamma), h, x->c_out * sizeof(float));
        tw_mem_from_host(be, tw_params_ptr(P, x->run_var), h, x->c_out * sizeof(float));
        tw_mem_zero(be, tw_params_ptr(P, x->beta), x->c_out * sizeof(float));
        tw_mem_zero(be, tw_params_ptr(P, x->run_mean), x->c_out * sizeof(float));
        *tw_params_counter(P, x->n_tracked) = 0;
    }
    free(h);
}

/* ---- plans ------------------------------------------------------------------------------- */

void tw_resnet18_plans_free(tw_resnet18_plans *p) {
    if (!p) return;
    for (int u = 0; u < TW_RESNET18_UNITS; u++) {
        if (p->conv[u]) tw_conv_plan_free(p->be, p->conv[u]);
        if (p->bn[u]) tw_bn_plan_free(p->be, p->bn[u]);
    }
    if (p->pool) tw_maxpool_plan_free(p->be, p->pool);
    if (p->grad_scratch) tw_mem_free(p->be, p->grad_scratch);
    if (p->sync) {
        for (int u = 0; u < TW_RESNET18_UNITS; u++) tw_syncbn_free(&p->sync->bn[u], p->be);
        free(p->sync);
    }
    free(p);
}

static int conv_out(int size, const tw_resnet18_unit *x) {
    return (size + 2 * x->pad - x->kernel) / x->stride + 1;
}

static void net_add(tw_net_shape *net, const tw_resnet18_unit *x, int n, int h, int w) {
    tw_conv_desc d = {n, x->c_in, h, w, x->c_out, x->kernel, x->stride, x->pad, 1, TW_LAYOUT_NCHW,
                      0, NULL};
    for (int i = 0; i < net->n_convs; i++) {
        const tw_conv_desc *e = &net->conv[i];
        if (e->c_in == d.c_in && e->h_in == h && e->w_in == w && e->c_out == d.c_out &&
            e->kernel == d.kernel && e->stride == d.stride && e->pad == d.pad) {
            net->count[i]++;
            return;
        }
    }
    TW_ASSERT(net->n_convs < TW_NET_MAX_SHAPES);
    net->count[net->n_convs] = 1;
    net->conv[net->n_convs++] = d;
}

void tw_resnet18_net_shape(const tw_resnet18 *m, int n, int h, int w, tw_net_shape *net) {
    memset(net, 0, sizeof *net);
    net->pool = 1;
    h = (conv_out(h, &m->u[0]) - 1) / 2 + 1;   /* the stem, then the 3x3/2 pool */
    w = (conv_out(w, &m->u[0]) - 1) / 2 + 1;
    for (int i = 0; i < TW_RESNET18_BLOCKS; i++) {
        const tw_resnet18_block *b = &m->b[i];
        const tw_resnet18_unit *c1 = &m->u[b->conv1];
        net_add(net, c1, n, h, w);
        if (b->down >= 0) net_add(net, &m->u[b->down], n, h, w);
        h = conv_out(h, c1);
        w = conv_out(w, c1);
        net_add(net, &m->u[b->conv2], n, h, w);
    }
}

/* Plans one conv + BN taking x; fills p->conv_y[u]. net: the stem's, NULL for the others. */
static tw_status unit_plan(tw_resnet18_plans *p, const tw_resnet18_unit *x, int u, const tw_tensor *in,
                           int need_dx, const tw_net_shape *net, tw_err *err) {
    /* The stem (no dx) lets the backend choose the image's layout, and with it the network's: which
     * layout has fast kernels for every layer at this size depends on the library and the ISA. */
    tw_conv_desc cd = {in->n, in->c, in->h, in->w, x->c_out, x->kernel, x->stride, x->pad,
                       need_dx, in->layout, !need_dx, net};
    tw_status st = tw_conv_plan_make(p->be, &p->conv[u], &cd, err);
    if (st != TW_OK) return st;
    p->conv_y[u] = tw_conv_plan_y(p->conv[u]);
    const tw_tensor *y = &p->conv_y[u];
    tw_bn_desc bd = {y->n, y->c, y->h, y->w, y->layout, x->relu, TW_BN_EPS,
                      TW_BN_MOMENTUM, 0};
    return tw_bn_plan_make(p->be, &p->bn[u], &bd, err);
}

tw_status tw_resnet18_plans_make(tw_resnet18_plans **out, tw_backend *be, const tw_resnet18 *m,
                                 int n, int h, int w, tw_err *err) {
    *out = NULL;
    if (n < 1 || h < 32 || w < 32)
        return tw_err_set(err, TW_E_RANGE, "resnet18: input [%d, %d, %d, %d]: want batch >= 1 and "
                          "height, width >= 32", n, m->c_in, h, w);
    tw_status st = TW_OK;
    tw_resnet18_plans *p = calloc(1, sizeof *p);
    TW_ASSERT(p);
    p->be = be;
    p->n = n;
    p->c = m->c_in;
    p->h = h;
    p->w = w;
    memcpy(p->b, m->b, sizeof p->b);
    tw_tensor image = {NULL, n, m->c_in, h, w, tw_backend_act_dtype(be), TW_LAYOUT_NCHW};
    tw_net_shape net;
    tw_resnet18_net_shape(m, n, h, w, &net);
    if ((st = unit_plan(p, &m->u[0], 0, &image, 0, &net, err)) != TW_OK) goto done;
    p->x_stem = tw_conv_plan_x(p->conv[0]);
    const tw_tensor *s = &p->conv_y[0];
    if ((st = tw_maxpool_plan_make(be, &p->pool, s->n, s->c, s->h, s->w, s->layout, err)) != TW_OK)
        goto done;
    tw_tensor cur = tw_maxpool_plan_y(p->pool);
    for (int i = 0; i < TW_RESNET18_BLOCKS; i++) {
        const tw_resnet18_block *b = &m->b[i];
        if ((st = unit_plan(p, &m->u[b->conv1], b->conv1, &cur, 1, NULL, err)) != TW_OK ||
            (st = unit_plan(p, &m->u[b->conv2], b->conv2, &p->conv_y[b->conv1], 1, NULL, err)) != TW_OK)
            goto done;
        if (b->down >= 0 && (st = unit_plan(p, &m->u[b->down], b->down, &cur, 1, NULL, err)) != TW_OK)
            goto done;
        /* The add takes both branches in one layout; the backends pick one layout per shape, so a
         * mismatch is a backend that this model does not support rather than bad input. */
        const tw_tensor *main = &p->conv_y[b->conv2], *skip = b->down >= 0 ? &p->conv_y[b->down] : &cur;
        if (main->layout != skip->layout) {
            st = tw_err_set(err, TW_E_UNSUPPORTED, "resnet18: block %d: the backend chose layout %s "
                            "for the residual branch and %s for the shortcut", i,
                            tw_layout_name(main->layout), tw_layout_name(skip->layout));
            goto done;
        }
        cur = *main;
    }
    p->grad_scratch = tw_mem_alloc(be, (m->grad_end - m->grad_begin) * sizeof(float));
    tw_mem_zero(be, p->grad_scratch, (m->grad_end - m->grad_begin) * sizeof(float));
    *out = p;
    p = NULL;
done:
    if (st != TW_OK) tw_err_prefix(err, "resnet18 plans for [%d, %d, %d, %d]: ", n, m->c_in, h, w);
    tw_resnet18_plans_free(p);
    return st;
}

/* ---- activation sets ----------------------------------------------------------------------- */

/* Assigns every tensor of a an offset in one arena starting at base (NULL: only counts) and
 * returns the arena's size. Each piece starts 64-byte aligned. */
static size_t acts_layout(tw_resnet18_acts *a, const tw_resnet18_plans *p, char *base) {
    size_t at = 0;
    const int bwd = !a->eval_only;   /* the train forward's state and the gradients */
#define PLACE(ptr, n_bytes)                                   \
    do {                                                      \
        (ptr) = base ? (void *)(base + at) : NULL;            \
        at += ((n_bytes) + 63) / 64 * 64;                     \
    } while (0)
#define TENSOR(t, desc)                                       \
    do {                                                      \
        (t) = (desc);                                         \
        PLACE((t).data, tw_tensor_bytes(&(t)));               \
    } while (0)
    TENSOR(a->x, p->x_stem);
    for (int u = 0; u < TW_RESNET18_UNITS; u++) {
        int c = p->conv_y[u].c;
        TENSOR(a->conv_y[u], p->conv_y[u]);
        TENSOR(a->bn_y[u], p->conv_y[u]);
        if (!bwd) continue;
        TENSOR(a->d_conv_y[u], p->conv_y[u]);
        TENSOR(a->d_bn_y[u], p->conv_y[u]);
        PLACE(a->save_mean[u], c * sizeof(float));
        PLACE(a->save_var[u], c * sizeof(float));
        size_t ws = tw_bn_plan_ws_bytes(p->bn[u]);
        PLACE(a->bn_ws[u], ws);
        if (!ws) a->bn_ws[u] = NULL;
    }
    TENSOR(a->pool_y, tw_maxpool_plan_y(p->pool));
    if (bwd) TENSOR(a->d_pool_y, tw_maxpool_plan_y(p->pool));
    size_t pool_ws = tw_maxpool_plan_ws_bytes(p->pool);
    PLACE(a->pool_ws, pool_ws);
    if (!pool_ws) a->pool_ws = NULL;
    /* Block i's output has its conv2's shape; its input is the pool's or block i-1's output. */
    tw_tensor in = tw_maxpool_plan_y(p->pool);
    for (int i = 0; i < TW_RESNET18_BLOCKS; i++) {
        const tw_resnet18_block *b = &p->b[i];
        TENSOR(a->block_y[i], p->conv_y[b->conv2]);
        if (bwd) {
            TENSOR(a->d_block_y[i], p->conv_y[b->conv2]);
            TENSOR(a->d_main[i], in);
            if (b->down >= 0) TENSOR(a->d_down[i], in);
            else a->d_down[i] = (tw_tensor){0};
        }
        in = p->conv_y[b->conv2];
    }
    PLACE(a->feats, (size_t)p->n * TW_RESNET18_FEATS * sizeof(float));
#undef TENSOR
#undef PLACE
    return at;
}

static void acts_make(tw_resnet18_acts *a, const tw_resnet18_plans *p, int eval_only) {
    memset(a, 0, sizeof *a);
    a->eval_only = eval_only;
    a->n_bytes = acts_layout(a, p, NULL);
    a->arena = tw_mem_alloc(p->be, a->n_bytes);
    /* Zeroed once so that the channel padding of blocked layouts never holds NaN. */
    tw_mem_zero(p->be, a->arena, a->n_bytes);
    acts_layout(a, p, a->arena);
}

void tw_resnet18_acts_make(tw_resnet18_acts *a, const tw_resnet18_plans *p) { acts_make(a, p, 0); }

void tw_resnet18_acts_make_eval(tw_resnet18_acts *a, const tw_resnet18_plans *p) { acts_make(a, p, 1); }

void tw_resnet18_acts_free(tw_resnet18_acts *a, tw_backend *be) {
    if (a->arena) tw_mem_free(be, a->arena);
    memset(a, 0, sizeof *a);
}

void tw_resnet18_plans_sync(tw_resnet18_plans *p, tw_resnet18 *m, const tw_reducer *red, int *bad) {
    TW_ASSERT(!p->sync);
    p->sync = calloc(1, sizeof *p->sync);
    TW_ASSERT(p->sync);
    p->sync->red = *red;
    for (int u = 0; u < TW_RESNET18_UNITS; u++) {
        const tw_resnet18_unit *x = &m->u[u];
        const tw_tensor *y = &p->conv_y[u];
        tw_bn_desc bd = {y->n, y->c, y->h, y->w, y->layout, x->relu, TW_BN_EPS,
                         TW_BN_MOMENTUM, 0};
        tw_syncbn *bn = &p->sync->bn[u];
        tw_syncbn_init_2d(bn, p->be, p->bn[u], &bd, red->n_ranks, bad);
        bn->run_mean = tw_params_ptr(m->P, x->run_mean);
        bn->run_var = tw_params_ptr(m->P, x->run_var);
        bn->n_batches = tw_params_counter(m->P, x->n_tracked);
    }
}
