/* The CUDA kernels of the CUDA backend (src/backend/cuda/), one launcher per kernel group. Each
 * launcher queues its kernels on the given stream and returns cudaGetLastError(), which the
 * caller checks (TW_CHECK_CUDA); shapes are validated by the caller. Tensors are plain NHWC (or
 * NCHW where stated), f32 or bf16 (bf16 != 0); all arithmetic and every reduction is f32 or
 * wider, and every reduction runs in a fixed order, so results are deterministic. */
#ifndef TW_KERNELS_H
#define TW_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    TW_K_THREADS = 256,       /* threads per block of the element-wise kernels */
    TW_K_RED_BLOCKS = 256,    /* blocks (and partial sums) of the whole-tensor reductions */
    TW_K_SEG_BLOCKS = 64,     /* blocks per parameter segment in the optimizer kernels */
    TW_K_BN_ROW_BLOCKS = 128  /* row blocks (and partial statistics) of the 2-D batch norm */
};

/* ---- eltwise.cu ---- */
/* dst = src in another layout (NCHW <-> NHWC) and/or dtype; shape [n, c, h, w]. An NHWC side
 * holds c_pad >= c channels per pixel (the convolution's padded stem input): written as zeros
 * when it is dst, skipped when it is src. */
cudaError_t tw_k_reorder(cudaStream_t s, unsigned grid, void *dst, int dst_bf16, int dst_nhwc,
                         const void *src, int src_bf16, int src_nhwc, int n, int c, int h, int w,
                         int c_pad);
/* y = a + b, then relu when relu != 0. */
cudaError_t tw_k_add(cudaStream_t s, unsigned grid, void *y, const void *a, const void *b,
                     size_t n_elems, int bf16, int relu);
/* dx = y > 0 ? dy : 0. */
cudaError_t tw_k_relu_backward(cudaStream_t s, unsigned grid, void *dx, const void *dy,
                               const void *y, size_t n_elems, int bf16);
/* Convolution weights: dst [k, r, s, c_pad] (cuDNN's NHWC filter, zeros past c) from src
 * [k, c, r, s] f32 (torch order), and back (unpack writes f32 [k, c, r, s], =). */
cudaError_t tw_k_weight_pack(cudaStream_t s, unsigned grid, void *dst, int dst_bf16,
                             const float *src, int k, int c, int r, int q, int c_pad);
cudaError_t tw_k_weight_unpack(cudaStream_t s, unsigned grid, float *dst, const void *src,
                               int src_bf16, int k, int c, int r, int q, int c_pad);
/* x *= a over n elements; *flag = 1 when some x was not finite before scaling (never cleared
 * here). */
cudaError_t tw_k_scale_check(cudaStream_t s, unsigned grid, int *flag, float *x, size_t n,
                             float a);
/* *out = *flag != 0 (a device double slot the host reads). */
cudaError_t tw_k_read_flag(cudaStream_t s, double *out, const int *flag);

/* ---- bn.cu: batch norm over the rows of x viewed as [m_rows = n h w, c] (NHWC) ---- */
/* Training forward: statistics (partial: [TW_K_BN_ROW_BLOCKS, 3, c] f32 scratch), saved mean and
 * biased var, running stats (unbiased var, torch's momentum rule), then y = relu?(x̂ γ + β); with
 * mask != NULL the ReLU's keep bits go to mask ([ceil(m_rows c / 32)] u32). coef: [2c] scratch. */
cudaError_t tw_k_bn_forward_train(cudaStream_t s, unsigned grid, void *y, float *save_mean,
                                  float *save_var, uint32_t *mask, float *partial, float *coef,
                                  const void *x, const float *gamma, const float *beta,
                                  float *run_mean, float *run_var, int bf16, int64_t m_rows,
                                  int c, int relu, float eps, float momentum);
cudaError_t tw_k_bn_forward_eval(cudaStream_t s, unsigned grid, void *y, float *coef,
                                 const void *x, const float *gamma, const float *beta,
                                 const float *run_mean, const float *run_var, int bf16,
                                 int64_t m_rows, int c, int relu, float eps);
/* dx (=), dgamma (=), dbeta (=); dy masked by mask first when mask != NULL. */
cudaError_t tw_k_bn_backward(cudaStream_t s, unsigned grid, void *dx, float *dgamma,
                             float *dbeta, float *partial, const void *dy, const void *x,
                             const uint32_t *mask, const float *save_mean, const float *save_var,
                             const float *gamma, int bf16, int64_t m_rows, int c, float eps);

/* ---- bn_sync.cu: batch norm with statistics from outside, x viewed as [m_rows, c] (NHWC) ---- */
/* sums (=, [2c] f64): grad 0: [Σ (x - ref), Σ (x - ref)²]; grad 1: [Σ dy', Σ dy' (x - ref) scale],
 * dy' = dy where y > 0 when relu; with dgamma/dbeta (grad 1) also the f32 shares (accumulate:
 * +=). partial: [TW_K_BN_ROW_BLOCKS, 2, c] f64 scratch. */
cudaError_t tw_k_bn_sums(cudaStream_t s, double *sums, double *partial, float *dgamma,
                         float *dbeta, int accumulate, const void *x, const void *dy,
                         const void *y, const float *ref, const float *scale, int bf16,
                         int64_t m_rows, int c, int grad, int relu);
/* stats = [shift + S1/N, max(S2/N - (S1/N)², 0)] f64, mean and inv_std f32; *bad = 1 where not
 * finite. */
cudaError_t tw_k_bn_stats_finish(cudaStream_t s, float *mean, float *inv_std, double *stats,
                                 int *bad, const double *sums, const float *shift, int c,
                                 double n_global, float eps);
/* y = relu?(gamma inv_std (x - mean) + beta); gamma/beta NULL: 1 and 0. */
cudaError_t tw_k_bn_forward_stats(cudaStream_t s, unsigned grid, void *y, const void *x,
                                  const float *mean, const float *inv_std, const float *gamma,
                                  const float *beta, int bf16, int64_t m_rows, int c, int relu);
/* dx = gamma inv_std (dy' - S1 / N - x̂ S2 / N) (=), S = sums ([2c] f64, global). */
cudaError_t tw_k_bn_backward_stats(cudaStream_t s, unsigned grid, void *dx, const void *dy,
                                   const void *x, const void *y, const float *mean,
                                   const float *inv_std, const float *gamma, const double *sums,
                                   double n_global, int bf16, int64_t m_rows, int c, int relu);
/* torch's momentum rule from one forward's stats [2c] f64; nothing when skip (device int, may
 * be NULL) is raised. */
cudaError_t tw_k_bn_running_update(cudaStream_t s, float *run_mean, float *run_var,
                                   const double *stats, int c, float momentum, double unbias,
                                   const int *skip);

/* ---- bn_eval.cu ---- */
/* Inference-mode BN backward on x viewed as [m_rows = n h w, c] (nhwc) or NCHW planes of hw:
 * dx = gamma dy' / sqrt(run_var + eps) (=), dgamma = Σ dy' (x - run_mean) / sqrt(run_var + eps)
 * (=), dbeta = Σ dy' (=), dy' = dy masked by y > 0 when y != NULL; dgamma NULL: dx only. */
cudaError_t tw_k_bn_backward_eval(cudaStream_t s, unsigned grid, void *dx, float *dgamma,
                                  float *dbeta, const void *dy, const void *x, const void *y,
                                  const float *gamma, const float *run_mean,
                                  const float *run_var, int bf16, int64_t m_rows, int c,
                                  int64_t hw, int nhwc, float eps);

/* ---- dense_act.cu ---- */
/* f32 element-wise, op: 0 out = relu(a); 1 out = b > 0 ? a : 0; 2 out = sigmoid(a);
 * 3 out = a b (1 - b). */
cudaError_t tw_k_act(cudaStream_t s, unsigned grid, int op, float *out, const float *a,
                     const float *b, size_t n_elems);
/* y = g a + (1 - g) b; backward dg = dy (a - b), da = dy g, db = dy (1 - g). */
cudaError_t tw_k_blend(cudaStream_t s, unsigned grid, float *y, const float *g, const float *a,
                       const float *b, size_t n_elems);
cudaError_t tw_k_blend_backward(cudaStream_t s, unsigned grid, float *dg, float *da, float *db,
                                const float *dy, const float *g, const float *a, const float *b,
                                size_t n_elems);

/* ---- pool.cu ---- */
/* Max pool 3x3 / 2, padding 1, NHWC; argmax: [n, oh, ow, c] u8 window positions. */
cudaError_t tw_k_maxpool_forward(cudaStream_t s, unsigned grid, void *y, uint8_t *argmax,
                                 const void *x, int bf16, int n, int c, int h, int w, int oh,
                                 int ow);
cudaError_t tw_k_maxpool_backward(cudaStream_t s, unsigned grid, void *dx, const void *dy,
                                  const uint8_t *argmax, int bf16, int n, int c, int h, int w,
                                  int oh, int ow);
/* Global average pool: y [n, c] f32 from x (NHWC or NCHW); backward dx (=) = dy / (h w). */
cudaError_t tw_k_avgpool_forward(cudaStream_t s, float *y, const void *x, int bf16, int nhwc,
                                 int n, int c, int h, int w);
cudaError_t tw_k_avgpool_backward(cudaStream_t s, unsigned grid, void *dx, const float *dy,
                                  int bf16, int nhwc, int n, int c, int h, int w);

/* ---- dense.cu: row-major f32 matrices [rows, cols] ---- */
cudaError_t tw_k_bias_forward(cudaStream_t s, unsigned grid, float *y, const float *bias, int m,
                              int n);
cudaError_t tw_k_bias_backward(cudaStream_t s, float *dbias, const float *dy, int m, int n);


/* ---- loss.cu: the value goes to *val (device), partial: [TW_K_RED_BLOCKS] f64 scratch ---- */
cudaError_t tw_k_bt_loss(cudaStream_t s, double *val, double *partial, float *dc, const float *c,
                         int d, int common, float lambda, float scale);
cudaError_t tw_k_bce_logits(cudaStream_t s, double *val, double *partial, float *dlogits,
                            const float *logits, const float *targets, size_t n_elems);

/* ---- optim.cu: updates over the flat parameter buffer, one block row per segment ---- */
typedef struct tw_k_seg {
    size_t offset, n_elems;
    int is_1d;
} tw_k_seg;
/* A step's values in device memory (the layout of backend.h's tw_update_vals). The updates do
 * nothing when skip (device int, may be NULL) is raised. */
typedef struct tw_k_vals {
    float lr, step_size, bc2_sqrt, shrink;
} tw_k_vals;
cudaError_t tw_k_adam(cudaStream_t s, float *p, float *m, float *v, const float *g,
                      const tw_k_seg *segs, int n_segs, const tw_k_vals *vals, const int *skip,
                      float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
                      float weight_decay, int decoupled);
cudaError_t tw_k_sgd(cudaStream_t s, float *p, float *mu, const float *g, const tw_k_seg *segs,
                     int n_segs, const tw_k_vals *vals, const int *skip, float momentum,
                     float weight_decay, int nesterov);
/* partial: [n_segs, TW_K_SEG_BLOCKS, 2] f32 scratch for the per-segment norms. */
cudaError_t tw_k_lars(cudaStream_t s, float *p, float *mu, float *partial, const float *g,
                      const tw_k_seg *segs, int n_segs, const tw_k_vals *vals, const int *skip,
                      float momentum, float weight_decay, float eta);

#ifdef __cplusplus
}
#endif

#endif
