/* The table each backend fills in; private to src/backend/. The public functions in backend.h
 * dispatch through it (backend.c), so the CPU and CUDA backends live side by side in one binary. */
#ifndef TW_BACKEND_IMPL_H
#define TW_BACKEND_IMPL_H

#include "backend/backend.h"

typedef struct tw_backend_ops {
    void (*backend_free)(tw_backend *be);
    void (*backend_describe)(const tw_backend *be, char *buf, size_t n_bytes);
    void (*backend_sync)(tw_backend *be);
    void * (*mem_alloc)(tw_backend *be, size_t n_bytes);
    void (*mem_free)(tw_backend *be, void *p);
    void (*mem_zero)(tw_backend *be, void *p, size_t n_bytes);
    void (*mem_to_host)(tw_backend *be, void *host, const void *src, size_t n_bytes);
    void (*mem_from_host)(tw_backend *be, void *dst, const void *host, size_t n_bytes);
    void (*mem_copy)(tw_backend *be, void *dst, const void *src, size_t n_bytes);
    void (*reorder)(tw_backend *be, tw_tensor *dst, const tw_tensor *src);
    tw_status (*conv_plan_make)(tw_backend *be, tw_conv_plan **out, const tw_conv_desc *d, tw_err *err);
    void (*conv_plan_free)(tw_backend *be, tw_conv_plan *p);
    void (*conv_forward)(tw_backend *be, tw_conv_plan *p, tw_tensor *y, const tw_tensor *x, const float *w);
    void (*conv_backward_data)(tw_backend *be, tw_conv_plan *p, tw_tensor *dx, const tw_tensor *dy, const float *w);
    void (*conv_backward_weights)(tw_backend *be, tw_conv_plan *p, float *dw, const tw_tensor *dy, const tw_tensor *x);
    tw_status (*bn_plan_make)(tw_backend *be, tw_bn_plan **out, const tw_bn_desc *d, tw_err *err);
    void (*bn_plan_free)(tw_backend *be, tw_bn_plan *p);
    void (*bn_forward_train)(tw_backend *be, tw_bn_plan *p, tw_tensor *y, float *save_mean, float *save_var, void *ws, const tw_tensor *x, const float *gamma, const float *beta, float *run_mean, float *run_var);
    void (*bn_forward_eval)(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x, const float *gamma, const float *beta, const float *run_mean, const float *run_var);
    void (*bn_backward)(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, float *dgamma, float *dbeta, const tw_tensor *dy, const tw_tensor *x, const float *save_mean, const float *save_var, const void *ws, const float *gamma);
    void (*bn_sums)(tw_backend *be, tw_bn_plan *p, double *sums, const tw_tensor *x, const float *shift);
    void (*bn_stats_finish)(tw_backend *be, float *mean, float *inv_std, double *stats, int *bad, const double *sums, const float *shift, int c, double n_global, float eps);
    void (*bn_forward_stats)(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x, const float *mean, const float *inv_std, const float *gamma, const float *beta);
    void (*bn_backward_sums)(tw_backend *be, tw_bn_plan *p, double *sums, float *dgamma, float *dbeta, int accumulate, const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y, const float *mean, const float *inv_std);
    void (*bn_backward_stats)(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y, const float *mean, const float *inv_std, const float *gamma, const double *global_sums, double n_global);
    void (*bn_running_update)(tw_backend *be, float *run_mean, float *run_var, const double *stats, int c, float momentum, double unbias, const int *skip);
    void (*add_relu_forward)(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b);
    void (*relu_backward)(tw_backend *be, tw_tensor *dx, const tw_tensor *dy, const tw_tensor *y);
    void (*add)(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b);
    tw_status (*maxpool_plan_make)(tw_backend *be, tw_pool_plan **out, int n, int c, int h, int w, tw_layout layout, tw_err *err);
    void (*maxpool_plan_free)(tw_backend *be, tw_pool_plan *p);
    void (*maxpool_forward)(tw_backend *be, tw_pool_plan *p, tw_tensor *y, void *ws, const tw_tensor *x);
    void (*maxpool_backward)(tw_backend *be, tw_pool_plan *p, tw_tensor *dx, const tw_tensor *dy, const void *ws);
    void (*avgpool_forward)(tw_backend *be, float *y, const tw_tensor *x);
    void (*avgpool_backward)(tw_backend *be, tw_tensor *dx, const float *dy);
    void (*gemm)(tw_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
    void (*bias_forward)(tw_backend *be, float *y, const float *bias, int m, int n);
    void (*bias_backward)(tw_backend *be, float *dbias, const float *dy, int m, int n);
    double (*bt_loss)(tw_backend *be, float *dc, const float *c, int d, float lambda);
    double (*bce_logits)(tw_backend *be, float *dlogits, const float *logits, const float *targets, int n, int k);
    void (*adam_update)(tw_backend *be, float *p, float *m, float *v, const float *g, const tw_param_seg *segs, int n_segs, const tw_adam_hparams *h, const tw_update_vals *vals, const int *skip);
    void (*lars_update)(tw_backend *be, float *p, float *mu, const float *g, const tw_param_seg *segs, int n_segs, const tw_lars_hparams *h, const tw_update_vals *vals, const int *skip);
    void (*sgd_update)(tw_backend *be, float *p, float *mu, const float *g, const tw_param_seg *segs, int n_segs, const tw_sgd_hparams *h, const tw_update_vals *vals, const int *skip);
    void (*scale_check)(tw_backend *be, float *x, size_t n, float a, int *bad);
    double (*read_flag)(tw_backend *be, const int *flag);
    void (*bn_backward_eval)(tw_backend *be, tw_tensor *dx, float *dgamma, float *dbeta, const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y, const float *gamma, const float *run_mean, const float *run_var, float eps, int relu);
    void (*relu_forward_f32)(tw_backend *be, float *y, const float *x, size_t n_elems);
    void (*relu_backward_f32)(tw_backend *be, float *dx, const float *dy, const float *y, size_t n_elems);
    void (*sigmoid_forward)(tw_backend *be, float *y, const float *x, size_t n_elems);
    void (*sigmoid_backward)(tw_backend *be, float *dx, const float *dy, const float *y, size_t n_elems);
    void (*blend_forward)(tw_backend *be, float *y, const float *g, const float *a, const float *b, size_t n_elems);
    void (*blend_backward)(tw_backend *be, float *dg, float *da, float *db, const float *dy, const float *g, const float *a, const float *b, size_t n_elems);
    /* Optional (NULL = unsupported): CUDA graph recording, see backend.h. */
    tw_status (*graph_begin)(tw_backend *be, tw_err *err);
    tw_status (*graph_end)(tw_backend *be, tw_err *err);
    void (*graph_replay)(tw_backend *be, double *values, int n_values);
    void * (*stream)(tw_backend *be);   /* optional (NULL: no device stream) */
    /* Optional (NULL: aligned host memory and a synchronous copy, see backend.h). */
    void * (*mem_host_alloc)(tw_backend *be, size_t n_bytes);
    void (*mem_host_free)(tw_backend *be, void *p);
    void (*mem_from_host_async)(tw_backend *be, void *dst, const void *host, size_t n_bytes);
} tw_backend_ops;

/* Every backend's plan structs (conv, bn, pool) start with this header, filled in by the plan's
 * make function, so that the shape queries in backend.h need no dispatch. */
typedef struct tw_plan_head {
    tw_tensor x;          /* input shape, dtype and layout (conv plans; data NULL) */
    tw_tensor y;          /* output shape, dtype and layout (data NULL) */
    size_t ws_bytes;      /* caller-owned per-call state (see tw_bn_plan_ws_bytes) */
    char impl[TW_PLAN_IMPL_BYTES];   /* the kernels chosen, per pass ("" when not reported) */
    char choice[TW_PLAN_CHOICE_BYTES];   /* a stem's layout decision (tw_conv_plan_choice) */
} tw_plan_head;

/* Every backend's struct starts with this header; the rest is its own. */
struct tw_backend {
    const tw_backend_ops *ops;
    tw_device device;
    tw_dtype act_dtype;
};

tw_status tw_cpu_backend_create(tw_backend **out, tw_precision prec, tw_err *err);
#ifdef TW_HAVE_CUDA
tw_status tw_cuda_backend_create(tw_backend **out, tw_precision prec, int device_index, tw_err *err);
int tw_cuda_device_count(void);
#endif

#endif
