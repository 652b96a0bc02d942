/* Pooling: ResNet's 3x3/2 pad 1 max pool on oneDNN (its argmax workspace is caller-owned, so one
 * plan serves both Barlow Twins views), and the global average pool to a plain [n, c] f32 matrix
 * and back, as OpenMP loops over any layout. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

struct tw_pool_plan {
    tw_plan_head head;                /* x, y: the input's and output's shape, dtype, layout */
    tw_cpu_prim fwd, bwd;
    dnnl_memory_t m_x, m_y, m_dx, m_dy, m_ws;
};

tw_status tw_cpu_maxpool_plan_make(tw_backend *base, tw_pool_plan **out, int n, int c, int h,
                                   int w, tw_layout layout, tw_err *err) {
    tw_cpu_backend *be = tw_cpu_be(base);
    *out = NULL;
    if (n < 1 || c < 1 || h < 1 || w < 1)
        return tw_err_set(err, TW_E_SHAPE, "max pool plan: bad shape [%d, %d, %d, %d]", n, c, h, w);
    tw_dtype act = base->act_dtype;
    int ho = (h + 2 - 3) / 2 + 1, wo = (w + 2 - 3) / 2 + 1;
    tw_status st = TW_OK;
    dnnl_status_t s;
    tw_pool_plan *p = calloc(1, sizeof *p);
    TW_ASSERT(p);
    p->head.x = (tw_tensor){NULL, n, c, h, w, act, layout};
    p->head.y = (tw_tensor){NULL, n, c, ho, wo, act, layout};
    dnnl_memory_desc_t x_md = tw_cpu_md_make(n, c, h, w, act, layout);
    dnnl_memory_desc_t y_md = tw_cpu_md_make(n, c, ho, wo, act, layout);
    dnnl_primitive_attr_t attr = tw_cpu_attr_make();
    dnnl_primitive_desc_t f_pd = NULL, b_pd = NULL;
    dnnl_dims_t strides = {2, 2}, kernel = {3, 3}, dil = {0, 0}, pad = {1, 1};
    s = dnnl_pooling_forward_primitive_desc_create(&f_pd, be->engine, dnnl_forward_training,
                                                   dnnl_pooling_max, x_md, y_md, strides, kernel,
                                                   dil, pad, pad, attr);
    if (s == dnnl_success)
        s = dnnl_pooling_backward_primitive_desc_create(&b_pd, be->engine, dnnl_pooling_max, x_md,
                                                        y_md, strides, kernel, dil, pad, pad,
                                                        f_pd, attr);
    if (s != dnnl_success) {
        st = tw_err_set(err, TW_E_UNSUPPORTED, "max pool [%d, %d, %d, %d] %s: oneDNN: %s", n, c,
                        h, w, tw_layout_name(layout), tw_cpu_dnnl_status_str(s));
        goto done;
    }
    snprintf(p->head.impl, sizeof p->head.impl, "fwd=%s bwd=%s", tw_cpu_pd_impl(f_pd),
             tw_cpu_pd_impl(b_pd));
    tw_cpu_prim_init(be, &p->fwd, f_pd);
    tw_cpu_prim_init(be, &p->bwd, b_pd);
    const_dnnl_memory_desc_t ws_md = dnnl_primitive_desc_query_md(f_pd, dnnl_query_workspace_md, 0);
    p->head.ws_bytes = ws_md ? dnnl_memory_desc_get_size(ws_md) : 0;
    if (p->head.ws_bytes) p->m_ws = tw_cpu_mem_make(be, ws_md);
    p->m_x = tw_cpu_mem_make(be, x_md);
    p->m_dx = tw_cpu_mem_make(be, x_md);
    p->m_y = tw_cpu_mem_make(be, y_md);
    p->m_dy = tw_cpu_mem_make(be, y_md);
    *out = p;
    p = NULL;
done:
    if (f_pd) TW_CHECK_DNNL(dnnl_primitive_desc_destroy(f_pd));
    if (b_pd) TW_CHECK_DNNL(dnnl_primitive_desc_destroy(b_pd));
    TW_CHECK_DNNL(dnnl_primitive_attr_destroy(attr));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(x_md));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(y_md));
    if (p) tw_cpu_maxpool_plan_free(base, p);
    return st;
}

void tw_cpu_maxpool_plan_free(tw_backend *base, tw_pool_plan *p) {
    (void)base;
    if (!p) return;
    tw_cpu_prim_destroy(&p->fwd);
    tw_cpu_prim_destroy(&p->bwd);
    dnnl_memory_t ms[] = {p->m_x, p->m_y, p->m_dx, p->m_dy, p->m_ws};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) tw_cpu_mem_destroy(ms[i]);
    free(p);
}

void tw_cpu_maxpool_forward(tw_backend *base, tw_pool_plan *p, tw_tensor *y, void *ws,
                            const tw_tensor *x) {
    tw_cpu_backend *be = tw_cpu_be(base);
    tw_cpu_mem_bind(p->m_x, x->data);
    tw_cpu_mem_bind(p->m_y, y->data);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->m_x}, {DNNL_ARG_DST, p->m_y}};
    int n_args = 2;
    if (p->m_ws) {
        tw_cpu_mem_bind(p->m_ws, ws);
        args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->m_ws};
    }
    tw_cpu_prim_exec(be, &p->fwd, n_args, args);
}

void tw_cpu_maxpool_backward(tw_backend *base, tw_pool_plan *p, tw_tensor *dx,
                             const tw_tensor *dy, const void *ws) {
    tw_cpu_backend *be = tw_cpu_be(base);
    tw_cpu_mem_bind(p->m_dx, dx->data);
    tw_cpu_mem_bind(p->m_dy, dy->data);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, p->m_dy}, {DNNL_ARG_DIFF_SRC, p->m_dx}};
    int n_args = 2;
    if (p->m_ws) {
        tw_cpu_mem_bind(p->m_ws, ws);
        args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->m_ws};
    }
    tw_cpu_prim_exec(be, &p->bwd, n_args, args);
}

/* ---- global average pool ----------------------------------------------------------------- */

static inline float load_f(const void *base, size_t i, tw_dtype dt) {
    if (dt == TW_F32) return ((const float *)base)[i];
    return tw_bf16_to_f32(((const uint16_t *)base)[i]);
}

static inline void store_f(void *base, size_t i, tw_dtype dt, float v) {
    if (dt == TW_F32)
        ((float *)base)[i] = v;
    else
        ((uint16_t *)base)[i] = tw_f32_to_bf16(v);
}

/* y[n, c] = mean over (h, w). Parallel over images; each layout walks memory in order. */
void tw_cpu_avgpool_forward(tw_backend *be, float *y, const tw_tensor *x) {
    (void)be;
    const int N = x->n, C = x->c;
    const size_t HW = (size_t)x->h * x->w, B = tw_layout_block(x->layout);
    const size_t Cp = (C + B - 1) / B * B;
    const float inv = 1.0f / (float)HW;
    const tw_dtype dt = x->dtype;
    const void *px = x->data;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *yn = y + (size_t)n * C;
        if (x->layout == TW_LAYOUT_NCHW) {
            for (int c = 0; c < C; c++) {
                size_t o = ((size_t)n * C + c) * HW;
                float s = 0.0f;
                for (size_t i = 0; i < HW; i++) s += load_f(px, o + i, dt);
                yn[c] = s * inv;
            }
        } else if (x->layout == TW_LAYOUT_NHWC) {
            for (int c = 0; c < C; c++) yn[c] = 0.0f;
            for (size_t i = 0; i < HW; i++) {
                size_t o = ((size_t)n * HW + i) * C;
                for (int c = 0; c < C; c++) yn[c] += load_f(px, o + c, dt);
            }
            for (int c = 0; c < C; c++) yn[c] *= inv;
        } else {
            for (size_t cb = 0; cb < Cp / B; cb++) {
                float s[16] = {0};
                size_t o = ((size_t)n * (Cp / B) + cb) * HW * B;
                for (size_t i = 0; i < HW; i++)
                    for (size_t b = 0; b < B; b++) s[b] += load_f(px, o + i * B + b, dt);
                for (size_t b = 0; b < B && cb * B + b < (size_t)C; b++) yn[cb * B + b] = s[b] * inv;
            }
        }
    }
}

/* dx[n, c, h, w] = dy[n, c] / (h w) (=); blocked padding channels are written as zero. */
void tw_cpu_avgpool_backward(tw_backend *be, tw_tensor *dx, const float *dy) {
    (void)be;
    const int N = dx->n, C = dx->c;
    const size_t HW = (size_t)dx->h * dx->w, B = tw_layout_block(dx->layout);
    const size_t Cp = (C + B - 1) / B * B;
    const float inv = 1.0f / (float)HW;
    const tw_dtype dt = dx->dtype;
    void *pdx = dx->data;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *dyn = dy + (size_t)n * C;
        if (dx->layout == TW_LAYOUT_NCHW) {
            for (int c = 0; c < C; c++) {
                size_t o = ((size_t)n * C + c) * HW;
                float v = dyn[c] * inv;
                for (size_t i = 0; i < HW; i++) store_f(pdx, o + i, dt, v);
            }
        } else if (dx->layout == TW_LAYOUT_NHWC) {
            for (size_t i = 0; i < HW; i++) {
                size_t o = ((size_t)n * HW + i) * C;
                for (int c = 0; c < C; c++) store_f(pdx, o + c, dt, dyn[c] * inv);
            }
        } else {
            for (size_t cb = 0; cb < Cp / B; cb++) {
                float v[16];
                for (size_t b = 0; b < B; b++)
                    v[b] = cb * B + b < (size_t)C ? dyn[cb * B + b] * inv : 0.0f;
                size_t o = ((size_t)n * (Cp / B) + cb) * HW * B;
                for (size_t i = 0; i < HW; i++)
                    for (size_t b = 0; b < B; b++) store_f(pdx, o + i * B + b, dt, v[b]);
            }
        }
    }
}
