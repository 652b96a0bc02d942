/* Convolutions on oneDNN: forward (training), backward-data, backward-weights. The input layout
 * is fixed by the descriptor (or, with x_layout_free, the candidate layout.c ranks best); oneDNN
 * picks the output and weight layouts ("any"), and the plan reports the output layout so that BN,
 * ReLU and pooling run on the same layout. Weights arrive as torch OIHW f32, are reordered once
 * per forward and reused by backward-data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

struct tw_conv_plan {
    tw_plan_head head;
    tw_conv_desc d;
    int h_out, w_out;
    tw_cpu_prim fwd, bwd_data, bwd_w;
    tw_cpu_prim w_to_fwd;             /* user OIHW f32 -> forward weights */
    tw_cpu_prim wfwd_to_bwd;          /* forward weights -> backward-data weights (if they differ) */
    tw_cpu_prim dw_to_user;           /* backward-weights layout -> OIHW f32 (if they differ) */
    int have_bwd_data, bwd_w_same, dw_same;
    void *w_fwd, *w_bwd, *dw_buf;     /* plan-owned weight buffers in oneDNN's layouts */
    const float *w_in_fwd;            /* the user weights w_fwd holds (from the last forward) */
    dnnl_memory_t m_x, m_y, m_w_user, m_w_fwd, m_w_bwd, m_dw, m_dw_user, m_dx, m_dy;
};

static tw_status fail(tw_err *err, const tw_conv_desc *d, const char *what, dnnl_status_t s) {
    return tw_err_set(err, TW_E_UNSUPPORTED,
                      "conv %dx%d/%d pad %d, %d->%d channels at %dx%d (batch %d, %s input): "
                      "oneDNN %s: %s",
                      d->kernel, d->kernel, d->stride, d->pad, d->c_in, d->c_out, d->h_in,
                      d->w_in, d->n, tw_layout_name(d->x_layout), what, tw_cpu_dnnl_status_str(s));
}

static dnnl_memory_desc_t md_any(int n, int c, int h, int w, dnnl_data_type_t dt) {
    dnnl_dims_t dims = {n, c, h, w};
    dnnl_memory_desc_t md;
    TW_CHECK_DNNL(dnnl_memory_desc_create_with_tag(&md, 4, dims, dt, dnnl_format_tag_any));
    return md;
}

/* Creates a reorder primitive from src md to dst md on the shared scratchpad. */
static void reorder_init(tw_cpu_backend *be, tw_cpu_prim *p, const_dnnl_memory_desc_t from,
                         const_dnnl_memory_desc_t to) {
    dnnl_primitive_attr_t attr = tw_cpu_attr_make();
    dnnl_primitive_desc_t pd;
    TW_CHECK_DNNL(dnnl_reorder_primitive_desc_create(&pd, from, be->engine, to, be->engine, attr));
    tw_cpu_prim_init(be, p, pd);
    TW_CHECK_DNNL(dnnl_primitive_desc_destroy(pd));
    TW_CHECK_DNNL(dnnl_primitive_attr_destroy(attr));
}

static void run_reorder(tw_cpu_backend *be, tw_cpu_prim *p, dnnl_memory_t from, dnnl_memory_t to) {
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    tw_cpu_prim_exec(be, p, 2, args);
}

/* y_force: -1, or the output layout to take whatever kernel it gets (TW_CPU_LAYOUT). */
tw_status tw_cpu_conv_plan_make_fixed(tw_backend *base, tw_conv_plan **out, const tw_conv_desc *d,
                                      int y_force, tw_err *err) {
    tw_cpu_backend *be = tw_cpu_be(base);
    *out = NULL;
    if (d->n < 1 || d->c_in < 1 || d->h_in < 1 || d->w_in < 1 || d->c_out < 1 || d->kernel < 1 ||
        d->stride < 1 || d->pad < 0)
        return tw_err_set(err, TW_E_SHAPE,
                          "conv plan: bad shape n=%d c_in=%d h=%d w=%d c_out=%d kernel=%d "
                          "stride=%d pad=%d",
                          d->n, d->c_in, d->h_in, d->w_in, d->c_out, d->kernel, d->stride, d->pad);
    int h_out = (d->h_in + 2 * d->pad - d->kernel) / d->stride + 1;
    int w_out = (d->w_in + 2 * d->pad - d->kernel) / d->stride + 1;
    if (d->h_in + 2 * d->pad < d->kernel || d->w_in + 2 * d->pad < d->kernel)
        return tw_err_set(err, TW_E_SHAPE, "conv plan: %dx%d kernel larger than the padded %dx%d input",
                          d->kernel, d->kernel, d->h_in + 2 * d->pad, d->w_in + 2 * d->pad);

    tw_status st = TW_OK;
    dnnl_status_t s;
    tw_dtype act = base->act_dtype;
    dnnl_data_type_t act_dt = tw_cpu_dnnl_dtype(act);
    tw_conv_plan *p = calloc(1, sizeof *p);
    TW_ASSERT(p);
    p->d = *d;
    p->h_out = h_out;
    p->w_out = w_out;

    dnnl_dims_t strides = {d->stride, d->stride}, dil = {0, 0}, pad = {d->pad, d->pad};
    dnnl_dims_t wdims = {d->c_out, d->c_in, d->kernel, d->kernel};
    dnnl_memory_desc_t x_md = tw_cpu_md_make(d->n, d->c_in, d->h_in, d->w_in, act, d->x_layout);
    dnnl_memory_desc_t y_any = md_any(d->n, d->c_out, h_out, w_out, act_dt);
    dnnl_memory_desc_t w_any = NULL, dw_any = NULL, w_user = NULL, y_fixed = NULL;
    TW_CHECK_DNNL(dnnl_memory_desc_create_with_tag(&w_any, 4, wdims, act_dt, dnnl_format_tag_any));
    TW_CHECK_DNNL(dnnl_memory_desc_create_with_tag(&dw_any, 4, wdims, dnnl_f32, dnnl_format_tag_any));
    TW_CHECK_DNNL(dnnl_memory_desc_create_with_tag(&w_user, 4, wdims, dnnl_f32, dnnl_oihw));
    dnnl_primitive_attr_t attr = tw_cpu_attr_make();
    dnnl_primitive_desc_t fwd_pd = NULL, bd_pd = NULL, bw_pd = NULL;

    s = dnnl_convolution_forward_primitive_desc_create(&fwd_pd, be->engine, dnnl_forward_training,
                                                       dnnl_convolution_direct, x_md, w_any, NULL,
                                                       y_any, strides, dil, pad, pad, attr);
    if (s != dnnl_success) {
        st = fail(err, d, "forward", s);
        goto done;
    }
    /* The output layout must be one tw_tensor can name; otherwise ask for the input's. And once
     * the input is in a layout a convolution chose (anything but the image's NCHW), keep it when
     * oneDNN has a real kernel for it: a residual block adds its input to its last conv's output,
     * and one layout from the stem to the pool needs no reorders. */
    tw_layout y_layout;
    int named = tw_cpu_layout_of(dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_dst_md, 0), d->n,
                                 d->c_out, h_out, w_out, act, &y_layout);
    tw_layout keep = y_force >= 0 ? (tw_layout)y_force : d->x_layout;
    if (named && y_layout != keep && (y_force >= 0 || d->x_layout != TW_LAYOUT_NCHW)) {
        dnnl_primitive_desc_t kept = NULL;
        y_fixed = tw_cpu_md_make(d->n, d->c_out, h_out, w_out, act, keep);
        s = dnnl_convolution_forward_primitive_desc_create(&kept, be->engine,
                                                           dnnl_forward_training,
                                                           dnnl_convolution_direct, x_md, w_any,
                                                           NULL, y_fixed, strides, dil, pad, pad,
                                                           attr);
        if (s == dnnl_success && (y_force >= 0 || strncmp(tw_cpu_pd_impl(kept), "ref", 3) != 0)) {
            TW_CHECK_DNNL(dnnl_primitive_desc_destroy(fwd_pd));
            fwd_pd = kept;
            y_layout = keep;
        } else if (kept) {
            TW_CHECK_DNNL(dnnl_primitive_desc_destroy(kept));
        }
    }
    if (!named) {
        TW_CHECK_DNNL(dnnl_primitive_desc_destroy(fwd_pd));
        fwd_pd = NULL;
        y_layout = d->x_layout;
        if (!y_fixed) y_fixed = tw_cpu_md_make(d->n, d->c_out, h_out, w_out, act, y_layout);
        s = dnnl_convolution_forward_primitive_desc_create(&fwd_pd, be->engine,
                                                           dnnl_forward_training,
                                                           dnnl_convolution_direct, x_md, w_any,
                                                           NULL, y_fixed, strides, dil, pad, pad,
                                                           attr);
        if (s != dnnl_success) {
            st = fail(err, d, "forward", s);
            goto done;
        }
    }
    const_dnnl_memory_desc_t y_md = dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_dst_md, 0);
    const_dnnl_memory_desc_t wf_md = dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_weights_md, 0);

    if (d->need_dx) {
        s = dnnl_convolution_backward_data_primitive_desc_create(&bd_pd, be->engine,
                                                                 dnnl_convolution_direct, x_md,
                                                                 w_any, y_md, strides, dil, pad,
                                                                 pad, fwd_pd, attr);
        if (s != dnnl_success) {
            st = fail(err, d, "backward-data", s);
            goto done;
        }
    }
    s = dnnl_convolution_backward_weights_primitive_desc_create(&bw_pd, be->engine,
                                                                dnnl_convolution_direct, x_md,
                                                                dw_any, NULL, y_md, strides, dil,
                                                                pad, pad, fwd_pd, attr);
    if (s != dnnl_success) {
        st = fail(err, d, "backward-weights", s);
        goto done;
    }

    p->head.x = (tw_tensor){NULL, d->n, d->c_in, d->h_in, d->w_in, act, d->x_layout};
    p->head.y = (tw_tensor){NULL, d->n, d->c_out, h_out, w_out, act, y_layout};
    snprintf(p->head.impl, sizeof p->head.impl, "fwd=%s%s%s bwd_w=%s", tw_cpu_pd_impl(fwd_pd),
             bd_pd ? " bwd_d=" : "", bd_pd ? tw_cpu_pd_impl(bd_pd) : "", tw_cpu_pd_impl(bw_pd));
    if (!be->quiet) {
        const_dnnl_primitive_desc_t passes[3] = {fwd_pd, bd_pd, bw_pd};
        static const char *names[3] = {"forward", "backward-data", "backward-weights"};
        for (int i = 0; i < 3; i++) {
            if (!passes[i] || strncmp(tw_cpu_pd_impl(passes[i]), "ref", 3) != 0) continue;
            char msg[320];
            snprintf(msg, sizeof msg, "twinfuse: conv %dx%d/%d, %d->%d channels at %dx%d (batch %d, "
                     "%s): oneDNN has only its reference kernel (%s) for the %s pass on this CPU "
                     "(slow)\n", d->kernel, d->kernel, d->stride, d->c_in, d->c_out, d->h_in,
                     d->w_in, d->n, tw_layout_name(d->x_layout), tw_cpu_pd_impl(passes[i]), names[i]);
            tw_cpu_warn_once(msg);
        }
    }
    p->head.ws_bytes = 0;
    tw_cpu_prim_init(be, &p->fwd, fwd_pd);
    p->m_x = tw_cpu_mem_make(be, x_md);
    p->m_y = tw_cpu_mem_make(be, y_md);
    p->m_w_user = tw_cpu_mem_make(be, w_user);
    p->m_w_fwd = tw_cpu_mem_make(be, wf_md);
    p->w_fwd = tw_cpu_mem_alloc(base, dnnl_memory_desc_get_size(wf_md));
    tw_cpu_mem_bind(p->m_w_fwd, p->w_fwd);
    reorder_init(be, &p->w_to_fwd, w_user, wf_md);

    if (bd_pd) {
        p->have_bwd_data = 1;
        tw_cpu_prim_init(be, &p->bwd_data, bd_pd);
        const_dnnl_memory_desc_t wb_md = dnnl_primitive_desc_query_md(bd_pd, dnnl_query_weights_md, 0);
        p->m_dx = tw_cpu_mem_make(be, x_md);
        p->m_dy = tw_cpu_mem_make(be, y_md);
        p->bwd_w_same = dnnl_memory_desc_equal(wb_md, wf_md);
        if (!p->bwd_w_same) {
            p->m_w_bwd = tw_cpu_mem_make(be, wb_md);
            p->w_bwd = tw_cpu_mem_alloc(base, dnnl_memory_desc_get_size(wb_md));
            tw_cpu_mem_bind(p->m_w_bwd, p->w_bwd);
            reorder_init(be, &p->wfwd_to_bwd, wf_md, wb_md);
        }
    }
    tw_cpu_prim_init(be, &p->bwd_w, bw_pd);
    if (!p->m_dy) p->m_dy = tw_cpu_mem_make(be, y_md);
    const_dnnl_memory_desc_t dw_md = dnnl_primitive_desc_query_md(bw_pd, dnnl_query_diff_weights_md, 0);
    p->dw_same = dnnl_memory_desc_equal(dw_md, w_user);
    p->m_dw_user = tw_cpu_mem_make(be, w_user);
    if (!p->dw_same) {
        p->m_dw = tw_cpu_mem_make(be, dw_md);
        p->dw_buf = tw_cpu_mem_alloc(base, dnnl_memory_desc_get_size(dw_md));
        tw_cpu_mem_bind(p->m_dw, p->dw_buf);
        reorder_init(be, &p->dw_to_user, dw_md, w_user);
    }
    *out = p;
    p = NULL;

done:
    if (fwd_pd) TW_CHECK_DNNL(dnnl_primitive_desc_destroy(fwd_pd));
    if (bd_pd) TW_CHECK_DNNL(dnnl_primitive_desc_destroy(bd_pd));
    if (bw_pd) TW_CHECK_DNNL(dnnl_primitive_desc_destroy(bw_pd));
    TW_CHECK_DNNL(dnnl_primitive_attr_destroy(attr));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(x_md));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(y_any));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(w_any));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(dw_any));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(w_user));
    if (y_fixed) TW_CHECK_DNNL(dnnl_memory_desc_destroy(y_fixed));
    if (p) tw_cpu_conv_plan_free(base, p);
    return st;
}

const tw_conv_desc *tw_cpu_conv_plan_desc(const tw_conv_plan *p) { return &p->d; }

/* The candidates for a free stem: its input layout, and the output layout it is asked for (-1:
 * the input's, or oneDNN's pick for plain NCHW). The image stays NCHW or is reordered once. */
typedef struct stem_cand {
    tw_layout x;
    int y_force;
} stem_cand;

static void report_add(char *report, size_t n_bytes, const tw_cpu_layout_cand *c, int chosen) {
    size_t len = strlen(report);
    if (len + 1 >= n_bytes) return;
    if (!c->ok)
        snprintf(report + len, n_bytes - len, "%s%s->%s: no plan", len ? "; " : "",
                 tw_layout_name(c->x), tw_layout_name(c->y));
    else if (c->has_ref)
        snprintf(report + len, n_bytes - len, "%s%s->%s: reference kernel in %s%s", len ? "; " : "",
                 tw_layout_name(c->x), tw_layout_name(c->y), c->ref_what, chosen ? " (chosen)" : "");
    else
        snprintf(report + len, n_bytes - len, "%s%s->%s %.2f ms%s", len ? "; " : "",
                 tw_layout_name(c->x), tw_layout_name(c->y), c->ms, chosen ? " (chosen)" : "");
}

/* With x_layout_free the stem decides the layout of the whole network: its output layout is every
 * later layer's. Each candidate is planned for the stem and for d->net's layers in that layout,
 * rejected where a pass has only oneDNN's reference kernel, and timed (layout.c); the fastest is
 * kept, and remembered on disk (layout_cache.c). TW_CPU_LAYOUT forces the network's layout: then
 * only the stem's input layout is timed. */
tw_status tw_cpu_conv_plan_make(tw_backend *base, tw_conv_plan **out, const tw_conv_desc *d,
                                tw_err *err) {
    tw_cpu_backend *be = tw_cpu_be(base);
    *out = NULL;
    if (!d->x_layout_free) return tw_cpu_conv_plan_make_fixed(base, out, d, -1, err);
    tw_layout forced;
    int force = tw_cpu_layout_forced(&forced);
    if (force < 0)
        return tw_err_set(err, TW_E_RANGE, "TW_CPU_LAYOUT=%s: want nchw, nhwc, nChw8c or nChw16c",
                          getenv("TW_CPU_LAYOUT"));
    tw_conv_desc fixed = *d;
    fixed.x_layout_free = 0;
    fixed.net = NULL;
    char key[1024], report[TW_PLAN_CHOICE_BYTES] = "";
    const tw_net_shape *net = force ? NULL : d->net;
    tw_cpu_layout_key(be, d, net, key, sizeof key);
    if (force) snprintf(key + strlen(key), sizeof key - strlen(key), ";forced=%s", tw_layout_name(forced));

    tw_layout cx, cy;
    tw_conv_plan *p = NULL;
    if (tw_cpu_layout_cache_get(key, &cx, &cy, report, sizeof report)) {
        fixed.x_layout = cx;
        if (tw_cpu_conv_plan_make_fixed(base, &p, &fixed, (int)cy, NULL) == TW_OK &&
            p->head.y.layout == cy) {
            snprintf(p->head.choice, sizeof p->head.choice, "%s [cached]", report);
            if (getenv("TW_VERBOSE"))
                tw_warn("twinfuse: stem %d->%d %dx%d: layout from the cache: %s\n", d->c_in,
                        d->c_out, d->h_in, d->w_in, p->head.choice);
            *out = p;
            return TW_OK;
        }
        tw_cpu_conv_plan_free(base, p);
        p = NULL;
        report[0] = '\0';
    }

    static const stem_cand all[] = {{TW_LAYOUT_NCHW, -1}, {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC},
                                    {TW_LAYOUT_NHWC, -1}, {TW_LAYOUT_NCHW8C, -1},
                                    {TW_LAYOUT_NCHW16C, -1}};
    enum { N_CANDS = sizeof all / sizeof all[0] };
    tw_conv_plan *plan[N_CANDS] = {NULL};
    tw_cpu_layout_cand cand[N_CANDS];
    memset(cand, 0, sizeof cand);
    be->quiet = 1;
    for (int i = 0; i < N_CANDS; i++) {
        stem_cand sc = all[i];
        if (force) {
            if (sc.x != TW_LAYOUT_NCHW && sc.x != forced) continue;
            if (sc.x == TW_LAYOUT_NCHW && sc.y_force >= 0) continue;
            sc.y_force = (int)forced;
        }
        fixed.x_layout = sc.x;
        cand[i].x = sc.x;
        cand[i].y = sc.y_force >= 0 ? (tw_layout)sc.y_force : sc.x;
        if (tw_cpu_conv_plan_make_fixed(base, &plan[i], &fixed, sc.y_force, NULL) != TW_OK) continue;
        /* Two requests may end in the same pair of layouts: time it once. */
        int dup = 0;
        for (int j = 0; j < i && !dup; j++)
            dup = plan[j] && plan[j]->head.x.layout == plan[i]->head.x.layout &&
                  plan[j]->head.y.layout == plan[i]->head.y.layout;
        if (dup) {
            tw_cpu_conv_plan_free(base, plan[i]);
            plan[i] = NULL;
            continue;
        }
        tw_cpu_layout_time(be, plan[i], net, &cand[i]);
    }
    be->quiet = 0;
    int best = tw_cpu_layout_choose(cand, N_CANDS);
    for (int i = 0; i < N_CANDS; i++) {
        if (plan[i]) report_add(report, sizeof report, &cand[i], i == best);
        if (i == best) p = plan[i];
        else tw_cpu_conv_plan_free(base, plan[i]);
    }
    if (!p) return tw_cpu_conv_plan_make_fixed(base, out, &fixed, -1, err);
    tw_layout kx = p->head.x.layout, ky = p->head.y.layout;
    if (tw_cpu_layout_cache_put(key, &kx, &ky, report, sizeof report) &&
        (kx != p->head.x.layout || ky != p->head.y.layout)) {
        /* Another process of this job decided first: run its layout, as every process will. */
        tw_conv_plan *theirs = NULL;
        fixed.x_layout = kx;
        if (tw_cpu_conv_plan_make_fixed(base, &theirs, &fixed, (int)ky, NULL) == TW_OK &&
            theirs->head.y.layout == ky) {
            tw_cpu_conv_plan_free(base, p);
            p = theirs;
            best = -1;
            snprintf(report + strlen(report), sizeof report - strlen(report), " [cached]");
        } else {
            tw_cpu_conv_plan_free(base, theirs);
        }
    }
    snprintf(p->head.choice, sizeof p->head.choice, "%s", report);
    if (getenv("TW_VERBOSE"))
        tw_warn("twinfuse: stem %d->%d %dx%d batch %d: layouts timed over the network: %s\n",
                d->c_in, d->c_out, d->h_in, d->w_in, d->n, report);
    if (best >= 0 && cand[best].has_ref) {
        char msg[400];
        snprintf(msg, sizeof msg, "twinfuse: every activation layout runs oneDNN's reference "
                 "kernel somewhere in this network on this CPU (first: %s, in %s); training will be "
                 "slow\n", cand[best].ref_what, tw_layout_name(p->head.y.layout));
        tw_cpu_warn_once(msg);
    }
    *out = p;
    return TW_OK;
}

void tw_cpu_conv_plan_free(tw_backend *base, tw_conv_plan *p) {
    if (!p) return;
    tw_cpu_prim_destroy(&p->fwd);
    tw_cpu_prim_destroy(&p->bwd_data);
    tw_cpu_prim_destroy(&p->bwd_w);
    tw_cpu_prim_destroy(&p->w_to_fwd);
    tw_cpu_prim_destroy(&p->wfwd_to_bwd);
    tw_cpu_prim_destroy(&p->dw_to_user);
    dnnl_memory_t ms[] = {p->m_x, p->m_y, p->m_w_user, p->m_w_fwd, p->m_w_bwd,
                          p->m_dw, p->m_dw_user, p->m_dx, p->m_dy};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) tw_cpu_mem_destroy(ms[i]);
    tw_cpu_mem_free(base, p->w_fwd);
    tw_cpu_mem_free(base, p->w_bwd);
    tw_cpu_mem_free(base, p->dw_buf);
    free(p);
}

static void check_x(const tw_conv_plan *p, const tw_tensor *x, tw_dtype act) {
    TW_ASSERT(x->n == p->d.n && x->c == p->d.c_in && x->h == p->d.h_in && x->w == p->d.w_in);
    TW_ASSERT(x->layout == p->d.x_layout && x->dtype == act);
}

static void check_y(const tw_conv_plan *p, const tw_tensor *y) {
    const tw_tensor *t = &p->head.y;
    TW_ASSERT(y->n == t->n && y->c == t->c && y->h == t->h && y->w == t->w);
    TW_ASSERT(y->layout == t->layout && y->dtype == t->dtype);
}

void tw_cpu_conv_forward(tw_backend *base, tw_conv_plan *p, tw_tensor *y, const tw_tensor *x,
                         const float *w) {
    tw_cpu_backend *be = tw_cpu_be(base);
    check_x(p, x, base->act_dtype);
    check_y(p, y);
    tw_cpu_mem_bind(p->m_w_user, w);
    run_reorder(be, &p->w_to_fwd, p->m_w_user, p->m_w_fwd);
    p->w_in_fwd = w;
    tw_cpu_mem_bind(p->m_x, x->data);
    tw_cpu_mem_bind(p->m_y, y->data);
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, p->m_x}, {DNNL_ARG_WEIGHTS, p->m_w_fwd}, {DNNL_ARG_DST, p->m_y}};
    tw_cpu_prim_exec(be, &p->fwd, 3, args);
}

void tw_cpu_conv_backward_data(tw_backend *base, tw_conv_plan *p, tw_tensor *dx,
                               const tw_tensor *dy, const float *w) {
    tw_cpu_backend *be = tw_cpu_be(base);
    TW_ASSERT(p->have_bwd_data);
    check_x(p, dx, base->act_dtype);
    check_y(p, dy);
    /* The forward of this step normally holds w in the plan's layout already; a plan shared by
     * layers of equal shape (or a backward without forward) reorders w again. */
    if (w != p->w_in_fwd) {
        tw_cpu_mem_bind(p->m_w_user, w);
        run_reorder(be, &p->w_to_fwd, p->m_w_user, p->m_w_fwd);
        p->w_in_fwd = w;
    }
    dnnl_memory_t m_w = p->m_w_fwd;
    if (!p->bwd_w_same) {
        run_reorder(be, &p->wfwd_to_bwd, p->m_w_fwd, p->m_w_bwd);
        m_w = p->m_w_bwd;
    }
    tw_cpu_mem_bind(p->m_dx, dx->data);
    tw_cpu_mem_bind(p->m_dy, dy->data);
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_DIFF_DST, p->m_dy}, {DNNL_ARG_WEIGHTS, m_w}, {DNNL_ARG_DIFF_SRC, p->m_dx}};
    tw_cpu_prim_exec(be, &p->bwd_data, 3, args);
}

void tw_cpu_conv_backward_weights(tw_backend *base, tw_conv_plan *p, float *dw,
                                  const tw_tensor *dy, const tw_tensor *x) {
    tw_cpu_backend *be = tw_cpu_be(base);
    check_x(p, x, base->act_dtype);
    check_y(p, dy);
    tw_cpu_mem_bind(p->m_x, x->data);
    tw_cpu_mem_bind(p->m_dy, dy->data);
    tw_cpu_mem_bind(p->m_dw_user, dw);
    dnnl_memory_t m_dw = p->dw_same ? p->m_dw_user : p->m_dw;
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, p->m_x}, {DNNL_ARG_DIFF_DST, p->m_dy}, {DNNL_ARG_DIFF_WEIGHTS, m_dw}};
    tw_cpu_prim_exec(be, &p->bwd_w, 3, args);
    if (!p->dw_same) run_reorder(be, &p->dw_to_user, p->m_dw, p->m_dw_user);
}
