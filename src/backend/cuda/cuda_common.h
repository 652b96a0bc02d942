/* Private to src/backend/cuda/: the CUDA backend's state (one device, one compute stream, the
 * cuDNN and cuBLAS handles, the shared workspace, the algorithm cache, the graph being recorded)
 * and the macros that check every CUDA, cuDNN and cuBLAS call. The ops live in the other files. */
#ifndef TW_CUDA_COMMON_H
#define TW_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "backend/backend_impl.h"
#include "core/log.h"

#define TW_CHECK_CUDA(call)                                                          \
    do {                                                                             \
        cudaError_t e_ = (call);                                                     \
        if (e_ != cudaSuccess) tw_fatal(#call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)
#define TW_CHECK_CUDNN(call)                                                         \
    do {                                                                             \
        cudnnStatus_t s_ = (call);                                                   \
        if (s_ != CUDNN_STATUS_SUCCESS)                                              \
            tw_fatal(#call, cudnnGetErrorString(s_), __FILE__, __LINE__);            \
    } while (0)
#define TW_CHECK_CUBLAS(call)                                                        \
    do {                                                                             \
        cublasStatus_t s_ = (call);                                                  \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                             \
            tw_fatal(#call, cublasGetStatusString(s_), __FILE__, __LINE__);          \
    } while (0)

/* The algorithms cuDNN picked for one convolution shape, found once (cudnnFind*, which runs them
 * like torch.backends.cudnn.benchmark) and reused by every plan of the same shape. */
typedef struct tw_cuda_conv_algo {
    int key[9];   /* n, c_in, h, w, c_out, kernel, stride, pad, dtype */
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t math_fwd, math_bwd_data, math_bwd_filter;
    size_t ws_bytes;   /* the largest of the three */
} tw_cuda_conv_algo;

enum { TW_CUDA_MAX_SEGTABS = 8 };
typedef struct tw_cuda_segtab {
    tw_param_seg *host;          /* [n] the table as given */
    void *dev;                   /* [n] tw_k_seg (kernels/tw_kernels.h) */
    float *partials;             /* [n * TW_K_SEG_BLOCKS * 2] LARS norm partial sums */
    int n;
} tw_cuda_segtab;

/* Host values handed back by ops (losses, flags): slot TW_CUDA_VAL_DIRECT serves direct calls,
 * slots 0.. the ops recorded in a graph, in order. */
enum { TW_CUDA_MAX_VALS = 64, TW_CUDA_VAL_DIRECT = TW_CUDA_MAX_VALS - 1 };

typedef struct tw_cuda_backend {
    tw_backend base;
    int device;
    int bf16;                    /* activations and convolutions in bf16, f32 master weights */
    char name[256];
    int cc_major, cc_minor, n_sms;
    cudaStream_t stream;         /* every op runs here; the NCCL communicator has its own */
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    void *cublas_ws;             /* fixed, so cuBLAS never allocates inside a recorded graph */
    void *ws;                    /* the one cuDNN workspace, grown when a plan needs more */
    size_t ws_bytes;
    void *ws_retired[16];        /* outgrown workspaces a recorded graph still uses */
    int n_ws_retired;
    tw_cuda_conv_algo *algos;
    int n_algos, cap_algos;
    double *dev_vals;            /* [TW_CUDA_MAX_VALS] device */
    double *host_vals;           /* [TW_CUDA_MAX_VALS] pinned host */
    double *red_partial;         /* [TW_K_RED_BLOCKS] block sums of the loss reductions */
    /* Optimizer segment tables seen so far (an optimizer updates weights and 1-D tensors as
     * two groups), each uploaded once and kept on the device. */
    tw_cuda_segtab segtabs[TW_CUDA_MAX_SEGTABS];
    int n_segtabs, next_evict;
    /* CUDA graph recording (tw_backend_graph_*). */
    int recording;
    int n_recorded_vals;
    cudaGraph_t graph;
    cudaGraphExec_t graph_exec;
    int graph_n_vals;
} tw_cuda_backend;

static inline tw_cuda_backend *tw_cuda_of(tw_backend *be) { return (tw_cuda_backend *)be; }

/* The device slot an op returning a host value writes to: the next recorded slot while a graph
 * is being recorded, else the direct slot. */
double *tw_cuda_val_slot(tw_cuda_backend *cb);
/* The value written to slot by the op just queued: waits for the stream (direct calls), or NaN
 * while recording (the value comes back from tw_backend_graph_replay). */
double tw_cuda_val_read(tw_cuda_backend *cb, double *slot);
/* Makes the shared cuDNN workspace at least n_bytes (plan time only, never while recording). */
void tw_cuda_ws_reserve(tw_cuda_backend *cb, size_t n_bytes);
/* Grid size for an element-wise kernel over n elements with 256-thread blocks. */
unsigned tw_cuda_grid(const tw_cuda_backend *cb, size_t n);

/* The ops, one group per file; the table in backend_cuda.c points at them. */
void tw_cuda_reorder(tw_backend *be, tw_tensor *dst, const tw_tensor *src);
tw_status tw_cuda_conv_plan_make(tw_backend *be, tw_conv_plan **out, const tw_conv_desc *d, tw_err *err);
void tw_cuda_conv_plan_free(tw_backend *be, tw_conv_plan *p);
void tw_cuda_conv_forward(tw_backend *be, tw_conv_plan *p, tw_tensor *y, const tw_tensor *x, const float *w);
void tw_cuda_conv_backward_data(tw_backend *be, tw_conv_plan *p, tw_tensor *dx, const tw_tensor *dy, const float *w);
void tw_cuda_conv_backward_weights(tw_backend *be, tw_conv_plan *p, float *dw, const tw_tensor *dy, const tw_tensor *x);
tw_status tw_cuda_bn_plan_make(tw_backend *be, tw_bn_plan **out, const tw_bn_desc *d, tw_err *err);
void tw_cuda_bn_plan_free(tw_backend *be, tw_bn_plan *p);
void tw_cuda_bn_forward_train(tw_backend *be, tw_bn_plan *p, tw_tensor *y, float *save_mean, float *save_var, void *ws, const tw_tensor *x, const float *gamma, const float *beta, float *run_mean, float *run_var);
void tw_cuda_bn_forward_eval(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x, const float *gamma, const float *beta, const float *run_mean, const float *run_var);
void tw_cuda_bn_backward(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, float *dgamma, float *dbeta, const tw_tensor *dy, const tw_tensor *x, const float *save_mean, const float *save_var, const void *ws, const float *gamma);
void tw_cuda_bn_sums(tw_backend *be, tw_bn_plan *p, double *sums, const tw_tensor *x, const float *shift);
void tw_cuda_bn_stats_finish(tw_backend *be, float *mean, float *inv_std, double *stats, int *bad, const double *sums, const float *shift, int c, double n_global, float eps);
void tw_cuda_bn_forward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x, const float *mean, const float *inv_std, const float *gamma, const float *beta);
void tw_cuda_bn_backward_sums(tw_backend *be, tw_bn_plan *p, double *sums, float *dgamma, float *dbeta, int accumulate, const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y, const float *mean, const float *inv_std);
void tw_cuda_bn_backward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y, const float *mean, const float *inv_std, const float *gamma, const double *global_sums, double n_global);
void tw_cuda_bn_running_update(tw_backend *be, float *run_mean, float *run_var, const double *stats, int c, float momentum, double unbias, const int *skip);
void tw_cuda_add_relu_forward(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b);
void tw_cuda_relu_backward(tw_backend *be, tw_tensor *dx, const tw_tensor *dy, const tw_tensor *y);
void tw_cuda_add(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b);
tw_status tw_cuda_maxpool_plan_make(tw_backend *be, tw_pool_plan **out, int n, int c, int h, int w, tw_layout layout, tw_err *err);
void tw_cuda_maxpool_plan_free(tw_backend *be, tw_pool_plan *p);
void tw_cuda_maxpool_forward(tw_backend *be, tw_pool_plan *p, tw_tensor *y, void *ws, const tw_tensor *x);
void tw_cuda_maxpool_backward(tw_backend *be, tw_pool_plan *p, tw_tensor *dx, const tw_tensor *dy, const void *ws);
void tw_cuda_avgpool_forward(tw_backend *be, float *y, const tw_tensor *x);
void tw_cuda_avgpool_backward(tw_backend *be, tw_tensor *dx, const float *dy);
void tw_cuda_gemm(tw_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void tw_cuda_bias_forward(tw_backend *be, float *y, const float *bias, int m, int n);
void tw_cuda_bias_backward(tw_backend *be, float *dbias, const float *dy, int m, int n);
double tw_cuda_bt_loss(tw_backend *be, float *dc, const float *c, int d, float lambda);
double tw_cuda_bce_logits(tw_backend *be, float *dlogits, const float *logits, const float *targets, int n, int k);
void tw_cuda_adam_update(tw_backend *be, float *p, float *m, float *v, const float *g, const tw_param_seg *segs, int n_segs, const tw_adam_hparams *h, const tw_update_vals *vals, const int *skip);
void tw_cuda_lars_update(tw_backend *be, float *p, float *mu, const float *g, const tw_param_seg *segs, int n_segs, const tw_lars_hparams *h, const tw_update_vals *vals, const int *skip);
void tw_cuda_sgd_update(tw_backend *be, float *p, float *mu, const float *g, const tw_param_seg *segs, int n_segs, const tw_sgd_hparams *h, const tw_update_vals *vals, const int *skip);
void tw_cuda_scale_check(tw_backend *be, float *x, size_t n, float a, int *bad);
double tw_cuda_read_flag(tw_backend *be, const int *flag);
void tw_cuda_bn_backward_eval(tw_backend *be, tw_tensor *dx, float *dgamma, float *dbeta, const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y, const float *gamma, const float *run_mean, const float *run_var, float eps, int relu);
void tw_cuda_relu_forward_f32(tw_backend *be, float *y, const float *x, size_t n_elems);
void tw_cuda_relu_backward_f32(tw_backend *be, float *dx, const float *dy, const float *y, size_t n_elems);
void tw_cuda_sigmoid_forward(tw_backend *be, float *y, const float *x, size_t n_elems);
void tw_cuda_sigmoid_backward(tw_backend *be, float *dx, const float *dy, const float *y, size_t n_elems);
void tw_cuda_blend_forward(tw_backend *be, float *y, const float *g, const float *a, const float *b, size_t n_elems);
void tw_cuda_blend_backward(tw_backend *be, float *dg, float *da, float *db, const float *dy, const float *g, const float *a, const float *b, size_t n_elems);

#endif
