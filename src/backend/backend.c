/* Dispatch from the public op interface (backend.h) to the backend's table, plus the pieces
 * shared by all backends: layout arithmetic, plan queries and backend creation. */
#include "backend/backend_impl.h"
#include "core/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

size_t tw_layout_block(tw_layout l) {
    switch (l) {
    case TW_LAYOUT_NCHW8C: return 8;
    case TW_LAYOUT_NCHW16C: return 16;
    case TW_LAYOUT_NCHW: case TW_LAYOUT_NHWC: return 1;
    }
    return 1;
}

const char *tw_layout_name(tw_layout l) {
    switch (l) {
    case TW_LAYOUT_NCHW: return "nchw";
    case TW_LAYOUT_NHWC: return "nhwc";
    case TW_LAYOUT_NCHW8C: return "nChw8c";
    case TW_LAYOUT_NCHW16C: return "nChw16c";
    }
    return "?";
}

size_t tw_tensor_bytes(const tw_tensor *t) {
    size_t blk = tw_layout_block(t->layout);
    size_t c_padded = (t->c + blk - 1) / blk * blk;
    return (size_t)t->n * c_padded * t->h * t->w * tw_dtype_size(t->dtype);
}

tw_status tw_backend_create(tw_backend **out, tw_device dev, tw_precision prec, int device_index,
                            tw_err *err) {
    *out = NULL;
    if (dev == TW_DEVICE_CPU) return tw_cpu_backend_create(out, prec, err);
#ifdef TW_HAVE_CUDA
    return tw_cuda_backend_create(out, prec, device_index, err);
#else
    (void)device_index;
    return tw_err_set(err, TW_E_UNSUPPORTED, "this twinfuse was built without CUDA (TW_CUDA=OFF)");
#endif
}

int tw_backend_available(tw_device dev) {
#ifdef TW_HAVE_CUDA
    return dev == TW_DEVICE_CPU || dev == TW_DEVICE_CUDA;
#else
    return dev == TW_DEVICE_CPU;
#endif
}

int tw_backend_device_count(tw_device dev) {
    if (dev == TW_DEVICE_CPU) return 1;
#ifdef TW_HAVE_CUDA
    return tw_cuda_device_count();
#else
    return 0;
#endif
}

tw_device tw_backend_device(const tw_backend *be) { return be->device; }
tw_dtype tw_backend_act_dtype(const tw_backend *be) { return be->act_dtype; }

tw_tensor tw_conv_plan_y(const tw_conv_plan *p) { return ((const tw_plan_head *)p)->y; }
tw_tensor tw_conv_plan_x(const tw_conv_plan *p) { return ((const tw_plan_head *)p)->x; }
size_t tw_bn_plan_ws_bytes(const tw_bn_plan *p) { return ((const tw_plan_head *)p)->ws_bytes; }
tw_tensor tw_maxpool_plan_y(const tw_pool_plan *p) { return ((const tw_plan_head *)p)->y; }
size_t tw_maxpool_plan_ws_bytes(const tw_pool_plan *p) { return ((const tw_plan_head *)p)->ws_bytes; }
const char *tw_conv_plan_impl(const tw_conv_plan *p) { return ((const tw_plan_head *)p)->impl; }
const char *tw_conv_plan_choice(const tw_conv_plan *p) { return ((const tw_plan_head *)p)->choice; }
const char *tw_bn_plan_impl(const tw_bn_plan *p) { return ((const tw_plan_head *)p)->impl; }
const char *tw_maxpool_plan_impl(const tw_pool_plan *p) { return ((const tw_plan_head *)p)->impl; }

void tw_backend_free(tw_backend *be) {
    if (be) be->ops->backend_free(be);
}

void tw_backend_describe(const tw_backend *be, char *buf, size_t n_bytes) {
    be->ops->backend_describe(be, buf, n_bytes);
}

void tw_backend_sync(tw_backend *be) {
    be->ops->backend_sync(be);
}

void *tw_backend_stream(tw_backend *be) {
    return be->ops->stream ? be->ops->stream(be) : NULL;
}

void * tw_mem_alloc(tw_backend *be, size_t n_bytes) {
    return be->ops->mem_alloc(be, n_bytes);
}

void tw_mem_free(tw_backend *be, void *p) {
    be->ops->mem_free(be, p);
}

void tw_mem_zero(tw_backend *be, void *p, size_t n_bytes) {
    be->ops->mem_zero(be, p, n_bytes);
}

void tw_mem_to_host(tw_backend *be, void *host, const void *src, size_t n_bytes) {
    be->ops->mem_to_host(be, host, src, n_bytes);
}

void tw_mem_from_host(tw_backend *be, void *dst, const void *host, size_t n_bytes) {
    be->ops->mem_from_host(be, dst, host, n_bytes);
}

void tw_mem_copy(tw_backend *be, void *dst, const void *src, size_t n_bytes) {
    be->ops->mem_copy(be, dst, src, n_bytes);
}

void *tw_mem_host_alloc(tw_backend *be, size_t n_bytes) {
    if (be->ops->mem_host_alloc) return be->ops->mem_host_alloc(be, n_bytes);
    void *p = NULL;
    if (posix_memalign(&p, 64, n_bytes ? n_bytes : 1) != 0)
        tw_fatal("posix_memalign", "out of host memory", __FILE__, __LINE__);
    return p;
}

void tw_mem_host_free(tw_backend *be, void *p) {
    if (be->ops->mem_host_free) be->ops->mem_host_free(be, p);
    else free(p);
}

void tw_mem_from_host_async(tw_backend *be, void *dst, const void *host, size_t n_bytes) {
    if (be->ops->mem_from_host_async) be->ops->mem_from_host_async(be, dst, host, n_bytes);
    else be->ops->mem_from_host(be, dst, host, n_bytes);
}

void tw_reorder(tw_backend *be, tw_tensor *dst, const tw_tensor *src) {
    be->ops->reorder(be, dst, src);
}

tw_status tw_conv_plan_make(tw_backend *be, tw_conv_plan **out, const tw_conv_desc *d, tw_err *err) {
    return be->ops->conv_plan_make(be, out, d, err);
}

void tw_conv_plan_free(tw_backend *be, tw_conv_plan *p) {
    be->ops->conv_plan_free(be, p);
}

void tw_conv_forward(tw_backend *be, tw_conv_plan *p, tw_tensor *y, const tw_tensor *x, const float *w) {
    be->ops->conv_forward(be, p, y, x, w);
}

void tw_conv_backward_data(tw_backend *be, tw_conv_plan *p, tw_tensor *dx, const tw_tensor *dy, const float *w) {
    be->ops->conv_backward_data(be, p, dx, dy, w);
}

void tw_conv_backward_weights(tw_backend *be, tw_conv_plan *p, float *dw, const tw_tensor *dy, const tw_tensor *x) {
    be->ops->conv_backward_weights(be, p, dw, dy, x);
}

tw_status tw_bn_plan_make(tw_backend *be, tw_bn_plan **out, const tw_bn_desc *d, tw_err *err) {
    return be->ops->bn_plan_make(be, out, d, err);
}

void tw_bn_plan_free(tw_backend *be, tw_bn_plan *p) {
    be->ops->bn_plan_free(be, p);
}

void tw_bn_forward_train(tw_backend *be, tw_bn_plan *p, tw_tensor *y, float *save_mean, float *save_var, void *ws, const tw_tensor *x, const float *gamma, const float *beta, float *run_mean, float *run_var) {
    be->ops->bn_forward_train(be, p, y, save_mean, save_var, ws, x, gamma, beta, run_mean, run_var);
}

void tw_bn_forward_eval(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x, const float *gamma, const float *beta, const float *run_mean, const float *run_var) {
    be->ops->bn_forward_eval(be, p, y, x, gamma, beta, run_mean, run_var);
}

void tw_bn_backward(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, float *dgamma, float *dbeta, const tw_tensor *dy, const tw_tensor *x, const float *save_mean, const float *save_var, const void *ws, const float *gamma) {
    be->ops->bn_backward(be, p, dx, dgamma, dbeta, dy, x, save_mean, save_var, ws, gamma);
}

/* A tensor of a BN plan's op: its shape, dtype and layout. */
static void check_bn_tensor(const tw_bn_plan *p, const tw_tensor *t) {
    const tw_tensor *r = &((const tw_plan_head *)p)->y;
    TW_ASSERT(t && t->n == r->n && t->c == r->c && t->h == r->h && t->w == r->w);
    TW_ASSERT(t->dtype == r->dtype && t->layout == r->layout);
}

void tw_bn_sums(tw_backend *be, tw_bn_plan *p, double *sums, const tw_tensor *x, const float *shift) {
    check_bn_tensor(p, x);
    be->ops->bn_sums(be, p, sums, x, shift);
}

void tw_bn_stats_finish(tw_backend *be, float *mean, float *inv_std, double *stats, int *bad, const double *sums, const float *shift, int c, double n_global, float eps) {
    TW_ASSERT(c >= 1 && n_global >= 1.0 && eps > 0.0f);
    be->ops->bn_stats_finish(be, mean, inv_std, stats, bad, sums, shift, c, n_global, eps);
}

void tw_bn_forward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x, const float *mean, const float *inv_std, const float *gamma, const float *beta) {
    check_bn_tensor(p, x);
    check_bn_tensor(p, y);
    be->ops->bn_forward_stats(be, p, y, x, mean, inv_std, gamma, beta);
}

void tw_bn_backward_sums(tw_backend *be, tw_bn_plan *p, double *sums, float *dgamma, float *dbeta, int accumulate, const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y, const float *mean, const float *inv_std) {
    check_bn_tensor(p, dy);
    check_bn_tensor(p, x);
    check_bn_tensor(p, y);
    TW_ASSERT((dgamma == NULL) == (dbeta == NULL));
    be->ops->bn_backward_sums(be, p, sums, dgamma, dbeta, accumulate, dy, x, y, mean, inv_std);
}

void tw_bn_backward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y, const float *mean, const float *inv_std, const float *gamma, const double *global_sums, double n_global) {
    check_bn_tensor(p, dx);
    check_bn_tensor(p, dy);
    check_bn_tensor(p, x);
    check_bn_tensor(p, y);
    TW_ASSERT(n_global >= 1.0);
    be->ops->bn_backward_stats(be, p, dx, dy, x, y, mean, inv_std, gamma, global_sums, n_global);
}

void tw_bn_running_update(tw_backend *be, float *run_mean, float *run_var, const double *stats, int c, float momentum, double unbias, const int *skip) {
    TW_ASSERT(c >= 1);
    be->ops->bn_running_update(be, run_mean, run_var, stats, c, momentum, unbias, skip);
}

void tw_bn_backward_eval(tw_backend *be, tw_tensor *dx, float *dgamma, float *dbeta, const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y, const float *gamma, const float *run_mean, const float *run_var, float eps, int relu) {
    TW_ASSERT(!relu || y);
    TW_ASSERT((dgamma == NULL) == (dbeta == NULL));
    be->ops->bn_backward_eval(be, dx, dgamma, dbeta, dy, x, y, gamma, run_mean, run_var, eps, relu);
}

void tw_add_relu_forward(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b) {
    be->ops->add_relu_forward(be, y, a, b);
}

void tw_relu_backward(tw_backend *be, tw_tensor *dx, const tw_tensor *dy, const tw_tensor *y) {
    be->ops->relu_backward(be, dx, dy, y);
}

void tw_add(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b) {
    be->ops->add(be, y, a, b);
}

tw_status tw_maxpool_plan_make(tw_backend *be, tw_pool_plan **out, int n, int c, int h, int w, tw_layout layout, tw_err *err) {
    return be->ops->maxpool_plan_make(be, out, n, c, h, w, layout, err);
}

void tw_maxpool_plan_free(tw_backend *be, tw_pool_plan *p) {
    be->ops->maxpool_plan_free(be, p);
}

void tw_maxpool_forward(tw_backend *be, tw_pool_plan *p, tw_tensor *y, void *ws, const tw_tensor *x) {
    be->ops->maxpool_forward(be, p, y, ws, x);
}

void tw_maxpool_backward(tw_backend *be, tw_pool_plan *p, tw_tensor *dx, const tw_tensor *dy, const void *ws) {
    be->ops->maxpool_backward(be, p, dx, dy, ws);
}

void tw_avgpool_forward(tw_backend *be, float *y, const tw_tensor *x) {
    be->ops->avgpool_forward(be, y, x);
}

void tw_avgpool_backward(tw_backend *be, tw_tensor *dx, const float *dy) {
    be->ops->avgpool_backward(be, dx, dy);
}

void tw_gemm(tw_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    be->ops->gemm(be, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void tw_bias_forward(tw_backend *be, float *y, const float *bias, int m, int n) {
    be->ops->bias_forward(be, y, bias, m, n);
}

void tw_bias_backward(tw_backend *be, float *dbias, const float *dy, int m, int n) {
    be->ops->bias_backward(be, dbias, dy, m, n);
}

void tw_relu_forward_f32(tw_backend *be, float *y, const float *x, size_t n_elems) {
    be->ops->relu_forward_f32(be, y, x, n_elems);
}

void tw_relu_backward_f32(tw_backend *be, float *dx, const float *dy, const float *y, size_t n_elems) {
    be->ops->relu_backward_f32(be, dx, dy, y, n_elems);
}

void tw_sigmoid_forward(tw_backend *be, float *y, const float *x, size_t n_elems) {
    be->ops->sigmoid_forward(be, y, x, n_elems);
}

void tw_sigmoid_backward(tw_backend *be, float *dx, const float *dy, const float *y, size_t n_elems) {
    be->ops->sigmoid_backward(be, dx, dy, y, n_elems);
}

void tw_blend_forward(tw_backend *be, float *y, const float *g, const float *a, const float *b, size_t n_elems) {
    be->ops->blend_forward(be, y, g, a, b, n_elems);
}

void tw_blend_backward(tw_backend *be, float *dg, float *da, float *db, const float *dy, const float *g, const float *a, const float *b, size_t n_elems) {
    be->ops->blend_backward(be, dg, da, db, dy, g, a, b, n_elems);
}

double tw_bt_loss(tw_backend *be, float *dc, const float *c, int d, float lambda) {
    return be->ops->bt_loss(be, dc, c, d, lambda);
}

double tw_bce_logits(tw_backend *be, float *dlogits, const float *logits, const float *targets, int n, int k) {
    return be->ops->bce_logits(be, dlogits, logits, targets, n, k);
}

tw_update_vals tw_adam_vals(const tw_adam_hparams *h, double lr, int64_t t) {
    TW_ASSERT(t >= 1);
    double bc1 = 1.0 - pow(h->beta1, (double)t), bc2 = 1.0 - pow(h->beta2, (double)t);
    return (tw_update_vals){(float)lr, (float)(lr / bc1), (float)sqrt(bc2),
                            h->decoupled ? (float)(1.0 - lr * h->weight_decay) : 1.0f};
}

tw_update_vals tw_rate_vals(double lr) { return (tw_update_vals){(float)lr, 0.0f, 1.0f, 1.0f}; }

void tw_adam_update(tw_backend *be, float *p, float *m, float *v, const float *g, const tw_param_seg *segs, int n_segs, const tw_adam_hparams *h, const tw_update_vals *vals, const int *skip) {
    be->ops->adam_update(be, p, m, v, g, segs, n_segs, h, vals, skip);
}

void tw_lars_update(tw_backend *be, float *p, float *mu, const float *g, const tw_param_seg *segs, int n_segs, const tw_lars_hparams *h, const tw_update_vals *vals, const int *skip) {
    be->ops->lars_update(be, p, mu, g, segs, n_segs, h, vals, skip);
}

void tw_sgd_update(tw_backend *be, float *p, float *mu, const float *g, const tw_param_seg *segs, int n_segs, const tw_sgd_hparams *h, const tw_update_vals *vals, const int *skip) {
    be->ops->sgd_update(be, p, mu, g, segs, n_segs, h, vals, skip);
}

void tw_scale_check(tw_backend *be, float *x, size_t n, float a, int *bad) {
    be->ops->scale_check(be, x, n, a, bad);
}

double tw_read_flag(tw_backend *be, const int *flag) { return be->ops->read_flag(be, flag); }

tw_status tw_backend_graph_begin(tw_backend *be, tw_err *err) {
    if (!be->ops->graph_begin)
        return tw_err_set(err, TW_E_UNSUPPORTED, "%s backend: no graph recording",
                          be->device == TW_DEVICE_CPU ? "cpu" : "cuda");
    return be->ops->graph_begin(be, err);
}

tw_status tw_backend_graph_end(tw_backend *be, tw_err *err) {
    if (!be->ops->graph_end)
        return tw_err_set(err, TW_E_UNSUPPORTED, "%s backend: no graph recording",
                          be->device == TW_DEVICE_CPU ? "cpu" : "cuda");
    return be->ops->graph_end(be, err);
}

void tw_backend_graph_replay(tw_backend *be, double *values, int n_values) {
    TW_ASSERT(be->ops->graph_replay);   /* only after a successful tw_backend_graph_end */
    be->ops->graph_replay(be, values, n_values);
}
