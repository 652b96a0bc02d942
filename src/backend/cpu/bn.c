/* Batch norm over (n, h, w) per channel on oneDNN: training forward (batch statistics, running
 * statistics updated as torch does), evaluation forward (running statistics) and backward, each
 * with the optional fused ReLU whose mask is the caller-owned workspace. Scale, shift and the
 * statistics stay f32 whatever the activation dtype. */
#include <stdio.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"

struct tw_bn_plan {
    tw_plan_head head;
    tw_bn_desc d;
    double count;                     /* values per channel: n h w */
    tw_cpu_prim fwd_train, fwd_eval, bwd;
    dnnl_memory_t m_x, m_y, m_dx, m_dy, m_mean, m_var, m_scale, m_shift, m_ws, m_dscale, m_dshift;
    float *coefs;                     /* [4, padded channels]: bn_sync.c's per-call coefficients */
    int n_coefs;                      /* padded channels */
};

/* The plan-owned coefficient scratch of the external-statistics ops, so that a step allocates
 * nothing. */
static void coefs_make(tw_bn_plan *p) {
    tw_layout l = p->d.layout;
    int blk = l == TW_LAYOUT_NCHW8C || l == TW_LAYOUT_NCHW16C ? (int)tw_layout_block(l) : 1;
    p->n_coefs = (p->d.c + blk - 1) / blk * blk;
    p->coefs = malloc((size_t)4 * p->n_coefs * sizeof(float));
    TW_ASSERT(p->coefs);
}

static tw_status fail(tw_err *err, const tw_bn_desc *d, const char *what, dnnl_status_t s) {
    return tw_err_set(err, TW_E_UNSUPPORTED, "batch norm [%d, %d, %d, %d] %s%s: oneDNN %s: %s",
                      d->n, d->c, d->h, d->w, tw_layout_name(d->layout),
                      d->fuse_relu ? " +relu" : "", what, tw_cpu_dnnl_status_str(s));
}

tw_status tw_cpu_bn_plan_make(tw_backend *base, tw_bn_plan **out, const tw_bn_desc *d,
                              tw_err *err) {
    tw_cpu_backend *be = tw_cpu_be(base);
    *out = NULL;
    if (d->n < 1 || d->c < 1 || d->h < 1 || d->w < 1)
        return tw_err_set(err, TW_E_SHAPE, "batch norm plan: bad shape [%d, %d, %d, %d]", d->n,
                          d->c, d->h, d->w);
    if (!d->f32_rows && (double)d->n * d->h * d->w < 2)
        return tw_err_set(err, TW_E_SHAPE,
                          "batch norm plan [%d, %d, %d, %d]: training needs more than one value "
                          "per channel (as torch)",
                          d->n, d->c, d->h, d->w);
    if (!(d->eps > 0) || !(d->momentum >= 0 && d->momentum <= 1))
        return tw_err_set(err, TW_E_RANGE, "batch norm plan: eps %g must be > 0 and momentum %g in [0, 1]",
                          (double)d->eps, (double)d->momentum);
    if (d->f32_rows) {
        /* Rows for the external-statistics ops only (bn_sync.c): no oneDNN primitive, and one
         * row per rank is fine (the statistics span the ranks). */
        if (d->layout != TW_LAYOUT_NHWC || d->h != 1 || d->w != 1)
            return tw_err_set(err, TW_E_SHAPE, "batch norm plan: f32 rows must be [n, d, 1, 1] nhwc, got "
                              "[%d, %d, %d, %d] %s", d->n, d->c, d->h, d->w, tw_layout_name(d->layout));
        tw_bn_plan *p = calloc(1, sizeof *p);
        TW_ASSERT(p);
        p->d = *d;
        p->count = d->n;
        coefs_make(p);
        p->head.y = (tw_tensor){NULL, d->n, d->c, 1, 1, TW_F32, TW_LAYOUT_NHWC};
        snprintf(p->head.impl, sizeof p->head.impl, "rows=plain");
        *out = p;
        return TW_OK;
    }

    tw_status st = TW_OK;
    dnnl_status_t s;
    tw_dtype act = base->act_dtype;
    tw_bn_plan *p = calloc(1, sizeof *p);
    TW_ASSERT(p);
    p->d = *d;
    p->count = (double)d->n * d->h * d->w;
    coefs_make(p);
    dnnl_memory_desc_t x_md = tw_cpu_md_make(d->n, d->c, d->h, d->w, act, d->layout);
    dnnl_memory_desc_t c_md = tw_cpu_md_vec(d->c);
    dnnl_primitive_attr_t attr = tw_cpu_attr_make();
    dnnl_primitive_desc_t ft_pd = NULL, fe_pd = NULL, b_pd = NULL;
    unsigned flags = dnnl_use_scale | dnnl_use_shift | (d->fuse_relu ? dnnl_fuse_norm_relu : 0);

    s = dnnl_batch_normalization_forward_primitive_desc_create(
        &ft_pd, be->engine, dnnl_forward_training, x_md, x_md, d->eps, flags, attr);
    if (s != dnnl_success) {
        st = fail(err, d, "forward", s);
        goto done;
    }
    s = dnnl_batch_normalization_forward_primitive_desc_create(
        &fe_pd, be->engine, dnnl_forward_inference, x_md, x_md, d->eps,
        flags | dnnl_use_global_stats, attr);
    if (s != dnnl_success) {
        st = fail(err, d, "forward (eval)", s);
        goto done;
    }
    s = dnnl_batch_normalization_backward_primitive_desc_create(
        &b_pd, be->engine, dnnl_backward, x_md, x_md, x_md, d->eps, flags, ft_pd, attr);
    if (s != dnnl_success) {
        st = fail(err, d, "backward", s);
        goto done;
    }
    /* A reference implementation here means a layout this CPU has no kernel for (nChw16c on
     * AVX2 is ~200x slower, see notes/machine-facts.md): say so instead of crawling silently. */
    const char *impl = tw_cpu_pd_impl(ft_pd);
    if (!be->quiet && strncmp(impl, "ref", 3) == 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "twinfuse: batch norm on %s [%d, %d, %d, %d] runs oneDNN's "
                 "reference code (%s) on this CPU (slow)\n", tw_layout_name(d->layout), d->n,
                 d->c, d->h, d->w, impl);
        tw_cpu_warn_once(msg);
    }

    snprintf(p->head.impl, sizeof p->head.impl, "fwd=%s bwd=%s", impl, tw_cpu_pd_impl(b_pd));
    tw_cpu_prim_init(be, &p->fwd_train, ft_pd);
    tw_cpu_prim_init(be, &p->fwd_eval, fe_pd);
    tw_cpu_prim_init(be, &p->bwd, b_pd);
    p->head.y = (tw_tensor){NULL, d->n, d->c, d->h, d->w, act, d->layout};
    const_dnnl_memory_desc_t ws_md = dnnl_primitive_desc_query_md(ft_pd, dnnl_query_workspace_md, 0);
    p->head.ws_bytes = ws_md ? dnnl_memory_desc_get_size(ws_md) : 0;
    if (p->head.ws_bytes) p->m_ws = tw_cpu_mem_make(be, ws_md);
    p->m_x = tw_cpu_mem_make(be, x_md);
    p->m_y = tw_cpu_mem_make(be, x_md);
    p->m_dx = tw_cpu_mem_make(be, x_md);
    p->m_dy = tw_cpu_mem_make(be, x_md);
    p->m_mean = tw_cpu_mem_make(be, c_md);
    p->m_var = tw_cpu_mem_make(be, c_md);
    p->m_scale = tw_cpu_mem_make(be, c_md);
    p->m_shift = tw_cpu_mem_make(be, c_md);
    p->m_dscale = tw_cpu_mem_make(be, c_md);
    p->m_dshift = tw_cpu_mem_make(be, c_md);
    *out = p;
    p = NULL;

done:
    if (ft_pd) TW_CHECK_DNNL(dnnl_primitive_desc_destroy(ft_pd));
    if (fe_pd) TW_CHECK_DNNL(dnnl_primitive_desc_destroy(fe_pd));
    if (b_pd) TW_CHECK_DNNL(dnnl_primitive_desc_destroy(b_pd));
    TW_CHECK_DNNL(dnnl_primitive_attr_destroy(attr));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(x_md));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(c_md));
    if (p) tw_cpu_bn_plan_free(base, p);
    return st;
}

void tw_cpu_bn_plan_free(tw_backend *base, tw_bn_plan *p) {
    (void)base;
    if (!p) return;
    tw_cpu_prim_destroy(&p->fwd_train);
    tw_cpu_prim_destroy(&p->fwd_eval);
    tw_cpu_prim_destroy(&p->bwd);
    dnnl_memory_t ms[] = {p->m_x, p->m_y, p->m_dx, p->m_dy, p->m_mean, p->m_var,
                          p->m_scale, p->m_shift, p->m_ws, p->m_dscale, p->m_dshift};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) tw_cpu_mem_destroy(ms[i]);
    free(p->coefs);
    free(p);
}

int tw_cpu_bn_plan_relu(const tw_bn_plan *p) { return p->d.fuse_relu; }

float *tw_cpu_bn_plan_coefs(tw_bn_plan *p, int n_ch) {
    TW_ASSERT(n_ch <= p->n_coefs);
    return p->coefs;
}

static void check_t(const tw_bn_plan *p, const tw_tensor *t) {
    const tw_tensor *r = &p->head.y;
    TW_ASSERT(t->n == r->n && t->c == r->c && t->h == r->h && t->w == r->w);
    TW_ASSERT(t->layout == r->layout && t->dtype == r->dtype);
}

void tw_cpu_bn_forward_train(tw_backend *base, tw_bn_plan *p, tw_tensor *y, float *save_mean,
                             float *save_var, void *ws, const tw_tensor *x, const float *gamma,
                             const float *beta, float *run_mean, float *run_var) {
    TW_ASSERT(!p->d.f32_rows);
    tw_cpu_backend *be = tw_cpu_be(base);
    check_t(p, x);
    check_t(p, y);
    TW_ASSERT(!p->head.ws_bytes || ws);
    tw_cpu_mem_bind(p->m_x, x->data);
    tw_cpu_mem_bind(p->m_y, y->data);
    tw_cpu_mem_bind(p->m_mean, save_mean);
    tw_cpu_mem_bind(p->m_var, save_var);
    tw_cpu_mem_bind(p->m_scale, gamma);
    tw_cpu_mem_bind(p->m_shift, beta);
    dnnl_exec_arg_t args[8] = {{DNNL_ARG_SRC, p->m_x},       {DNNL_ARG_DST, p->m_y},
                               {DNNL_ARG_MEAN, p->m_mean},   {DNNL_ARG_VARIANCE, p->m_var},
                               {DNNL_ARG_SCALE, p->m_scale}, {DNNL_ARG_SHIFT, p->m_shift}};
    int n_args = 6;
    if (p->m_ws) {
        tw_cpu_mem_bind(p->m_ws, ws);
        args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->m_ws};
    }
    tw_cpu_prim_exec(be, &p->fwd_train, n_args, args);
    /* torch.nn.BatchNorm2d: running = (1 - m) running + m batch, with the unbiased variance
     * var n / (n - 1) (n values per channel) in the running variance. */
    float m = p->d.momentum;
    double unbias = p->count / (p->count - 1.0);
    for (int c = 0; c < p->d.c; c++) {
        run_mean[c] = (1.0f - m) * run_mean[c] + m * save_mean[c];
        run_var[c] = (1.0f - m) * run_var[c] + m * (float)(save_var[c] * unbias);
    }
}

void tw_cpu_bn_forward_eval(tw_backend *base, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x,
                            const float *gamma, const float *beta, const float *run_mean,
                            const float *run_var) {
    TW_ASSERT(!p->d.f32_rows);
    tw_cpu_backend *be = tw_cpu_be(base);
    check_t(p, x);
    check_t(p, y);
    tw_cpu_mem_bind(p->m_x, x->data);
    tw_cpu_mem_bind(p->m_y, y->data);
    tw_cpu_mem_bind(p->m_mean, run_mean);
    tw_cpu_mem_bind(p->m_var, run_var);
    tw_cpu_mem_bind(p->m_scale, gamma);
    tw_cpu_mem_bind(p->m_shift, beta);
    dnnl_exec_arg_t args[7] = {{DNNL_ARG_SRC, p->m_x},       {DNNL_ARG_DST, p->m_y},
                               {DNNL_ARG_MEAN, p->m_mean},   {DNNL_ARG_VARIANCE, p->m_var},
                               {DNNL_ARG_SCALE, p->m_scale}, {DNNL_ARG_SHIFT, p->m_shift}};
    tw_cpu_prim_exec(be, &p->fwd_eval, 6, args);
}

void tw_cpu_bn_backward(tw_backend *base, tw_bn_plan *p, tw_tensor *dx, float *dgamma,
                        float *dbeta, const tw_tensor *dy, const tw_tensor *x,
                        const float *save_mean, const float *save_var, const void *ws,
                        const float *gamma) {
    TW_ASSERT(!p->d.f32_rows);
    tw_cpu_backend *be = tw_cpu_be(base);
    check_t(p, x);
    check_t(p, dx);
    check_t(p, dy);
    TW_ASSERT(!p->head.ws_bytes || ws);
    tw_cpu_mem_bind(p->m_x, x->data);
    tw_cpu_mem_bind(p->m_dx, dx->data);
    tw_cpu_mem_bind(p->m_dy, dy->data);
    tw_cpu_mem_bind(p->m_mean, save_mean);
    tw_cpu_mem_bind(p->m_var, save_var);
    tw_cpu_mem_bind(p->m_scale, gamma);
    tw_cpu_mem_bind(p->m_dscale, dgamma);
    tw_cpu_mem_bind(p->m_dshift, dbeta);
    dnnl_exec_arg_t args[10] = {{DNNL_ARG_SRC, p->m_x},
                                {DNNL_ARG_DIFF_DST, p->m_dy},
                                {DNNL_ARG_MEAN, p->m_mean},
                                {DNNL_ARG_VARIANCE, p->m_var},
                                {DNNL_ARG_SCALE, p->m_scale},
                                {DNNL_ARG_DIFF_SRC, p->m_dx},
                                {DNNL_ARG_DIFF_SCALE, p->m_dscale},
                                {DNNL_ARG_DIFF_SHIFT, p->m_dshift}};
    int n_args = 8;
    if (p->m_ws) {
        tw_cpu_mem_bind(p->m_ws, ws);
        args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->m_ws};
    }
    tw_cpu_prim_exec(be, &p->bwd, n_args, args);
}
