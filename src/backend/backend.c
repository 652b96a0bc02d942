/* Dispatch from the public op interface (backend.h, ops.def) to the backend's table, with the
 * argument checks every backend would otherwise repeat, plus the pieces shared by all backends:
 * layout arithmetic, plan queries, the optimizers' per-step values and backend creation. */
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

tw_update_vals tw_adam_vals(const tw_adam_hparams *h, double lr, int64_t t) {
    TW_ASSERT(t >= 1);
    double bc1 = 1.0 - pow(h->beta1, (double)t), bc2 = 1.0 - pow(h->beta2, (double)t);
    return (tw_update_vals){(float)lr, (float)(lr / bc1), (float)sqrt(bc2),
                            h->decoupled ? (float)(1.0 - lr * h->weight_decay) : 1.0f};
}

tw_update_vals tw_rate_vals(double lr) { return (tw_update_vals){(float)lr, 0.0f, 1.0f, 1.0f}; }

/* ---- the checks every backend would otherwise repeat (ops.def: TW_OP_CHECKED) ---------------- */

/* Equal shape, dtype and layout, and a dtype activations have. */
static void check_same(const tw_tensor *a, const tw_tensor *b) {
    TW_ASSERT(a && b);
    TW_ASSERT(a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w);
    TW_ASSERT(a->dtype == b->dtype && a->layout == b->layout);
    TW_ASSERT(a->dtype == TW_F32 || a->dtype == TW_BF16);
}

/* A tensor against a plan's x or y: shape, dtype and layout. */
static void check_like(const tw_tensor *t, const tw_tensor *r) {
    TW_ASSERT(t && t->n == r->n && t->c == r->c && t->h == r->h && t->w == r->w);
    TW_ASSERT(t->dtype == r->dtype && t->layout == r->layout);
}

/* A tensor of a BN plan's op: the plan's shape, dtype and layout. */
static void check_bn_tensor(const tw_bn_plan *p, const tw_tensor *t) {
    check_like(t, &((const tw_plan_head *)p)->y);
}

static void check_maxpool_forward(tw_backend *be, tw_pool_plan *p, tw_tensor *y, void *ws,
                                  const tw_tensor *x) {
    (void)be;
    const tw_plan_head *h = (const tw_plan_head *)p;
    check_like(x, &h->x);
    check_like(y, &h->y);
    TW_ASSERT(!h->ws_bytes || ws);
}

static void check_maxpool_backward(tw_backend *be, tw_pool_plan *p, tw_tensor *dx,
                                   const tw_tensor *dy, const void *ws) {
    (void)be;
    const tw_plan_head *h = (const tw_plan_head *)p;
    check_like(dx, &h->x);
    check_like(dy, &h->y);
    TW_ASSERT(!h->ws_bytes || ws);
}

static void check_reorder(tw_backend *be, tw_tensor *dst, const tw_tensor *src) {
    (void)be;
    TW_ASSERT(dst->n == src->n && dst->c == src->c && dst->h == src->h && dst->w == src->w);
}

/* The library-statistics ops; a fused ReLU needs its workspace. */
static void check_bn_forward_train(tw_backend *be, tw_bn_plan *p, tw_tensor *y, float *save_mean,
                                   float *save_var, void *ws, const tw_tensor *x,
                                   const float *gamma, const float *beta, float *run_mean,
                                   float *run_var) {
    (void)be, (void)save_mean, (void)save_var, (void)gamma, (void)beta, (void)run_mean,
        (void)run_var;
    check_bn_tensor(p, x);
    check_bn_tensor(p, y);
    TW_ASSERT(!tw_bn_plan_ws_bytes(p) || ws);
}

static void check_bn_forward_eval(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x,
                                  const float *gamma, const float *beta, const float *run_mean,
                                  const float *run_var) {
    (void)be, (void)gamma, (void)beta, (void)run_mean, (void)run_var;
    check_bn_tensor(p, x);
    check_bn_tensor(p, y);
}

static void check_bn_backward(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, float *dgamma,
                              float *dbeta, const tw_tensor *dy, const tw_tensor *x,
                              const float *save_mean, const float *save_var, const void *ws,
                              const float *gamma) {
    (void)be, (void)dgamma, (void)dbeta, (void)save_mean, (void)save_var, (void)gamma;
    check_bn_tensor(p, x);
    check_bn_tensor(p, dx);
    check_bn_tensor(p, dy);
    TW_ASSERT(!tw_bn_plan_ws_bytes(p) || ws);
}

static void check_bn_sums(tw_backend *be, tw_bn_plan *p, double *sums, const tw_tensor *x,
                          const float *shift) {
    (void)be, (void)sums, (void)shift;
    check_bn_tensor(p, x);
}

static void check_bn_stats_finish(tw_backend *be, float *mean, float *inv_std, double *stats,
                                  int *bad, const double *sums, const float *shift, int c,
                                  double n_global, float eps) {
    (void)be, (void)mean, (void)inv_std, (void)stats, (void)bad, (void)sums, (void)shift;
    TW_ASSERT(c >= 1 && n_global >= 1.0 && eps > 0.0f);
}

static void check_bn_forward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x,
                                   const float *mean, const float *inv_std, const float *gamma,
                                   const float *beta) {
    (void)be, (void)mean, (void)inv_std, (void)gamma, (void)beta;
    check_bn_tensor(p, x);
    check_bn_tensor(p, y);
}

static void check_bn_backward_sums(tw_backend *be, tw_bn_plan *p, double *sums, float *dgamma,
                                   float *dbeta, int accumulate, const tw_tensor *dy,
                                   const tw_tensor *x, const tw_tensor *y, const float *mean,
                                   const float *inv_std) {
    (void)be, (void)sums, (void)accumulate, (void)mean, (void)inv_std;
    check_bn_tensor(p, dy);
    check_bn_tensor(p, x);
    check_bn_tensor(p, y);
    TW_ASSERT((dgamma == NULL) == (dbeta == NULL));
}

static void check_bn_backward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *dx,
                                    const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y,
                                    const float *mean, const float *inv_std, const float *gamma,
                                    const double *global_sums, double n_global) {
    (void)be, (void)mean, (void)inv_std, (void)gamma, (void)global_sums;
    check_bn_tensor(p, dx);
    check_bn_tensor(p, dy);
    check_bn_tensor(p, x);
    check_bn_tensor(p, y);
    TW_ASSERT(n_global >= 1.0);
}

static void check_bn_running_update(tw_backend *be, float *run_mean, float *run_var,
                                    const double *stats, int c, float momentum, double unbias,
                                    const int *skip) {
    (void)be, (void)run_mean, (void)run_var, (void)stats, (void)momentum, (void)unbias, (void)skip;
    TW_ASSERT(c >= 1);
}

static void check_bn_backward_eval(tw_backend *be, tw_tensor *dx, float *dgamma, float *dbeta,
                                   const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y,
                                   const float *gamma, const float *run_mean,
                                   const float *run_var, float eps, int relu) {
    (void)be, (void)gamma, (void)run_mean, (void)run_var, (void)eps;
    check_same(dx, dy);
    check_same(dx, x);
    if (relu) check_same(dx, y);
    TW_ASSERT((dgamma == NULL) == (dbeta == NULL));
}

static void check_add_relu_forward(tw_backend *be, tw_tensor *y, const tw_tensor *a,
                                   const tw_tensor *b) {
    (void)be;
    check_same(y, a);
    check_same(y, b);
}

static void check_relu_backward(tw_backend *be, tw_tensor *dx, const tw_tensor *dy,
                                const tw_tensor *y) {
    (void)be;
    check_same(dx, dy);
    check_same(dx, y);
}

static void check_add(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b) {
    check_add_relu_forward(be, y, a, b);
}

/* ---- the dispatch, one function per op of ops.def ---------------------------------------------- */

#define TW_OP(ret, name, params, args) \
    ret tw_##name params { return be->ops->name args; }
#define TW_OP_VOID(name, params, args) \
    void tw_##name params { be->ops->name args; }
#define TW_OP_CHECKED(name, params, args) \
    void tw_##name params {               \
        check_##name args;                \
        be->ops->name args;               \
    }
#define TW_OP_BY_HAND(ret, name, params, args)
#include "backend/ops.def"

void tw_backend_free(tw_backend *be) {
    if (be) be->ops->backend_free(be);
}

void *tw_backend_stream(tw_backend *be) {
    return be->ops->backend_stream ? be->ops->backend_stream(be) : NULL;
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

tw_status tw_backend_graph_begin(tw_backend *be, tw_err *err) {
    if (!be->ops->backend_graph_begin)
        return tw_err_set(err, TW_E_UNSUPPORTED, "%s backend: no graph recording",
                          be->device == TW_DEVICE_CPU ? "cpu" : "cuda");
    return be->ops->backend_graph_begin(be, err);
}

tw_status tw_backend_graph_end(tw_backend *be, tw_err *err) {
    if (!be->ops->backend_graph_end)
        return tw_err_set(err, TW_E_UNSUPPORTED, "%s backend: no graph recording",
                          be->device == TW_DEVICE_CPU ? "cpu" : "cuda");
    return be->ops->backend_graph_end(be, err);
}

void tw_backend_graph_replay(tw_backend *be, double *values, int n_values) {
    TW_ASSERT(be->ops->backend_graph_replay);   /* only after a successful tw_backend_graph_end */
    be->ops->backend_graph_replay(be, values, n_values);
}
