/* The op interface: everything the model, losses and optimizers compute goes through here, and
 * the CPU backend (cpu/, oneDNN 3.x) and the CUDA backend (cuda/, cuDNN + cuBLAS + kernels/) each
 * implement all of it. A shape descriptor becomes a backend-owned plan, made once and reused every
 * step; tensors carry a logical NCHW shape plus a layout tag the backend chose. Nothing outside
 * src/backend/ calls oneDNN, cuDNN or CUDA.
 *
 * Conventions: outputs first, then inputs, then weights, then parameters. Every backward says
 * whether it overwrites (=) or accumulates (+=). Weights, weight gradients, BN statistics and
 * optimizer state are f32 in the backend's memory; activations are f32 or bf16 (the backend's
 * activation dtype). Library failures are fatal (tw_fatal, which aborts every rank); only
 * plan creation and backend creation return a status, because an unsupported shape or machine is
 * a user-facing condition. */
#ifndef TW_BACKEND_H
#define TW_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

typedef enum { TW_DEVICE_CPU, TW_DEVICE_CUDA } tw_device;
typedef enum { TW_PREC_AUTO, TW_PREC_FP32, TW_PREC_BF16 } tw_precision;

/* How a tensor's elements sit in memory. NCHW also stands for plain row-major [rows, cols]
 * matrices (h = w = 1). The blocked layouts are oneDNN's nChw8c / nChw16c: channels padded to the
 * block and innermost. */
typedef enum { TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C, TW_LAYOUT_NCHW16C } tw_layout;

typedef struct tw_tensor {
    void *data;          /* backend memory (host for cpu, device for cuda) */
    int n, c, h, w;      /* logical shape */
    tw_dtype dtype;      /* TW_F32 or TW_BF16 */
    tw_layout layout;
} tw_tensor;

/* Bytes the tensor needs, including the channel padding of blocked layouts. */
size_t tw_tensor_bytes(const tw_tensor *t);
size_t tw_layout_block(tw_layout l);   /* 1, 8 or 16 */
const char *tw_layout_name(tw_layout l);

typedef struct tw_backend tw_backend;

/* ---- lifetime and facts ---------------------------------------------------------------- */

/* precision AUTO resolves to BF16 where the hardware computes bf16 natively (AMX or AVX512_BF16
 * on a CPU, tensor cores on a GPU) and FP32 otherwise; BF16 asked for on a CPU without native bf16
 * is an error (TW_E_UNSUPPORTED), never a silent slow path. device_index picks the GPU. */
tw_status tw_backend_create(tw_backend **out, tw_device dev, tw_precision prec, int device_index,
                            tw_err *err);
void tw_backend_free(tw_backend *be);
tw_device tw_backend_device(const tw_backend *be);
tw_dtype tw_backend_act_dtype(const tw_backend *be);        /* TW_F32 or TW_BF16 */
/* One line: "cpu isa=avx512_core_bf16 threads=2 precision=bf16" or the GPU's name. */
void tw_backend_describe(const tw_backend *be, char *buf, size_t n_bytes);
/* Waits for all work queued on the backend (a no-op on the CPU). */
void tw_backend_sync(tw_backend *be);
/* The stream the backend queues its work on (a cudaStream_t), for tw_comm_set_stream; NULL on
 * the CPU. */
void *tw_backend_stream(tw_backend *be);
/* Whether this build has the device at all, and how many are visible (0 is not an error). */
int tw_backend_available(tw_device dev);
int tw_backend_device_count(tw_device dev);

/* ---- memory ------------------------------------------------------------------------------ */

void *tw_mem_alloc(tw_backend *be, size_t n_bytes);          /* 64-byte aligned; fatal on OOM */
void tw_mem_free(tw_backend *be, void *p);
void tw_mem_zero(tw_backend *be, void *p, size_t n_bytes);
void tw_mem_to_host(tw_backend *be, void *host, const void *src, size_t n_bytes);
void tw_mem_from_host(tw_backend *be, void *dst, const void *host, size_t n_bytes);
void tw_mem_copy(tw_backend *be, void *dst, const void *src, size_t n_bytes);
/* Asynchronous uploads (the loader's batches): host memory the device reads directly (pinned on
 * CUDA; plain 64-byte aligned memory on the CPU), and a copy that is queued on the backend's
 * stream and returns at once. host must stay unchanged until tw_backend_sync or a later
 * synchronous call (tw_mem_to_host, a loss) has returned. The CPU backend copies at once. Such a
 * copy may be recorded in a graph (tw_backend_graph_begin): each replay reads host anew, which is
 * how per-step host values reach a recorded step. */
void *tw_mem_host_alloc(tw_backend *be, size_t n_bytes);     /* fatal on OOM */
void tw_mem_host_free(tw_backend *be, void *p);
void tw_mem_from_host_async(tw_backend *be, void *dst, const void *host, size_t n_bytes);

/* dst = src converted to dst's layout and dtype (same logical shape). */
void tw_reorder(tw_backend *be, tw_tensor *dst, const tw_tensor *src);

/* ---- convolution (no bias: ResNet's convolutions are followed by BN) ------------------------ */

struct tw_net_shape;
typedef struct tw_conv_desc {
    int n, c_in, h_in, w_in;
    int c_out, kernel, stride, pad;
    int need_dx;          /* 0 for the stem: the image needs no gradient, so no bwd-data plan */
    tw_layout x_layout;   /* the layout the input arrives in */
    int x_layout_free;    /* 1: the backend may pick another input layout, the one its fastest
                             kernels take (the stem: reorder the image into tw_conv_plan_x) */
    const struct tw_net_shape *net;   /* with x_layout_free: the layers after the stem, whose
                                         layout the stem's output decides; the backend times
                                         them in each candidate layout (NULL: the stem alone) */
} tw_conv_desc;

/* A network after its stem, for choosing its activation layout by timing: every distinct
 * convolution shape (layouts ignored) and how many layers have it, each followed by a BN with
 * ReLU, and the max pool on the stem's output. */
#define TW_NET_MAX_SHAPES 16
typedef struct tw_net_shape {
    int pool;             /* 1: a 3x3/2 max pool (pad 1) on the stem's output, as tw_maxpool's */
    int n_convs;
    tw_conv_desc conv[TW_NET_MAX_SHAPES];
    int count[TW_NET_MAX_SHAPES];
} tw_net_shape;
typedef struct tw_conv_plan tw_conv_plan;

tw_status tw_conv_plan_make(tw_backend *be, tw_conv_plan **out, const tw_conv_desc *d, tw_err *err);
void tw_conv_plan_free(tw_backend *be, tw_conv_plan *p);
/* The output's shape, dtype and layout (data = NULL): allocate y and dy like this. */
tw_tensor tw_conv_plan_y(const tw_conv_plan *p);
/* The input the plan takes: desc->x_layout, or the backend's pick when x_layout_free. */
tw_tensor tw_conv_plan_x(const tw_conv_plan *p);
/* The kernels a plan runs, one "pass=name" per pass ("fwd=brgconv:avx512_core_amx bwd_d=..."),
 * for logs and benchmarks; "" where the backend does not report them. At most
 * TW_PLAN_IMPL_BYTES - 1 characters. (Likewise tw_bn_plan_impl, tw_maxpool_plan_impl.) */
#define TW_PLAN_IMPL_BYTES 192
const char *tw_conv_plan_impl(const tw_conv_plan *p);
/* A stem's layout decision (x_layout_free): each candidate with its timing or why it was
 * rejected, and whether it came from the on-disk cache; "" for other plans. */
#define TW_PLAN_CHOICE_BYTES 512
const char *tw_conv_plan_choice(const tw_conv_plan *p);

/* y = conv(x, w).  x: [n, c_in, h, w] in d->x_layout; w: [c_out, c_in, k, k] f32 (torch order). */
void tw_conv_forward(tw_backend *be, tw_conv_plan *p, tw_tensor *y, const tw_tensor *x,
                     const float *w);
/* dx = conv_transpose(dy, w) (=). dx in d->x_layout. Uses the weights of the last forward. */
void tw_conv_backward_data(tw_backend *be, tw_conv_plan *p, tw_tensor *dx, const tw_tensor *dy,
                           const float *w);
/* dw = Σ x ⋆ dy (=), f32 [c_out, c_in, k, k]. */
void tw_conv_backward_weights(tw_backend *be, tw_conv_plan *p, float *dw, const tw_tensor *dy,
                              const tw_tensor *x);

/* ---- batch norm over (n, h, w) per channel, per rank ------------------------------------------ */

typedef struct tw_bn_desc {
    int n, c, h, w;
    tw_layout layout;
    int fuse_relu;        /* y = relu(bn(x)) */
    float eps;            /* torch: 1e-5 */
    float momentum;       /* torch: 0.1; running = (1 - m) running + m batch, unbiased variance */
    int f32_rows;         /* 1: a plan for the external-statistics ops only (tw_bn_sums ...), on f32
                             rows [n, d, 1, 1] NHWC whatever the activation dtype, any n >= 1: the
                             projector's and the loss's BN over the rows of a matrix */
} tw_bn_desc;
typedef struct tw_bn_plan tw_bn_plan;

tw_status tw_bn_plan_make(tw_backend *be, tw_bn_plan **out, const tw_bn_desc *d, tw_err *err);
void tw_bn_plan_free(tw_backend *be, tw_bn_plan *p);
/* Bytes of per-call state kept from forward to backward (e.g. the fused ReLU's mask); the caller
 * owns it so one plan can serve several activation sets (the two Barlow Twins views). */
size_t tw_bn_plan_ws_bytes(const tw_bn_plan *p);
const char *tw_bn_plan_impl(const tw_bn_plan *p);

/* Training: batch statistics; saves mean and biased var [c] f32; updates running stats. */
void tw_bn_forward_train(tw_backend *be, tw_bn_plan *p, tw_tensor *y, float *save_mean,
                         float *save_var, void *ws, const tw_tensor *x, const float *gamma,
                         const float *beta, float *run_mean, float *run_var);
/* Evaluation: running statistics. */
void tw_bn_forward_eval(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x,
                        const float *gamma, const float *beta, const float *run_mean,
                        const float *run_var);
/* dx (=), dgamma (=), dbeta (=). With fuse_relu, dy is taken through the ReLU first (ws). */
void tw_bn_backward(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, float *dgamma, float *dbeta,
                    const tw_tensor *dy, const tw_tensor *x, const float *save_mean,
                    const float *save_var, const void *ws, const float *gamma);

/* The same layer with its statistics computed outside: the synchronised BN (model/syncbn.h)
 * takes this rank's sums, all-reduces them (f64) and normalises with the global statistics, all in
 * backend memory, so a step needs no host copy. On the plan's shape, dtype and layout. Sums are
 * f64 [2c], accumulated in double in a fixed order (the same result for any thread count); the
 * ReLU mask is y > 0 (no workspace); the padding channels of y and dx are written 0.
 *   tw_bn_sums:           sums = [Σ (x - shift), Σ (x - shift)²] per channel over this rank's
 *                         (n, h, w) (=)
 *   tw_bn_stats_finish:   from the global sums over n_global values per channel: mean = shift +
 *                         S1/N and var = max(S2/N - (S1/N)², 0) (biased) into stats [2c] f64,
 *                         mean and inv_std = 1/sqrt(var + eps) into [c] f32; *bad = 1 when one is
 *                         not finite (never cleared here)
 *   tw_bn_forward_stats:  y = [relu](gamma (x - mean) inv_std + beta); gamma, beta NULL: 1, 0
 *   tw_bn_backward_sums:  sums = [Σ dy', Σ dy' x̂] (=), x̂ = (x - mean) inv_std, dy' = relu ?
 *                         dy (y > 0) : dy; the same in f32 into dbeta, dgamma (accumulate: +=,
 *                         else =; NULL together: not written)
 *   tw_bn_backward_stats: dx = gamma inv_std (dy' - S1/N - x̂ S2/N) (=), S the global backward
 *                         sums
 *   tw_bn_running_update: torch's momentum rule for one forward's stats: running mean = (1 - m)
 *                         running mean + m mean, running var = (1 - m) running var + m var
 *                         unbias; nothing when skip (backend int, NULL: never) is raised */
void tw_bn_sums(tw_backend *be, tw_bn_plan *p, double *sums, const tw_tensor *x, const float *shift);
void tw_bn_stats_finish(tw_backend *be, float *mean, float *inv_std, double *stats, int *bad,
                        const double *sums, const float *shift, int c, double n_global, float eps);
void tw_bn_forward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x,
                         const float *mean, const float *inv_std, const float *gamma,
                         const float *beta);
void tw_bn_backward_sums(tw_backend *be, tw_bn_plan *p, double *sums, float *dgamma, float *dbeta,
                         int accumulate, const tw_tensor *dy, const tw_tensor *x,
                         const tw_tensor *y, const float *mean, const float *inv_std);
void tw_bn_backward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, const tw_tensor *dy,
                          const tw_tensor *x, const tw_tensor *y, const float *mean,
                          const float *inv_std, const float *gamma, const double *global_sums,
                          double n_global);
void tw_bn_running_update(tw_backend *be, float *run_mean, float *run_var, const double *stats,
                          int c, float momentum, double unbias, const int *skip);

/* Backward of tw_bn_forward_eval, for BN frozen in inference mode under trained layers (torch:
 * BatchNorm2d in eval() with requires_grad weights). With s = 1 / sqrt(run_var + eps) and
 * dy' = relu ? dy (y > 0) : dy, per channel over (n, h, w):
 *   dx = gamma s dy' (=), dgamma = Σ dy' (x - run_mean) s (=), dbeta = Σ dy' (=).
 * No plan: x, dy, dx (and y when relu) share shape, dtype and layout (any layout the backend makes;
 * the padding channels of dx are written 0). y is the eval forward's output (the fused ReLU's mask),
 * NULL when relu is 0. dgamma and dbeta are f32 [c] and may be NULL together (no weights). */
void tw_bn_backward_eval(tw_backend *be, tw_tensor *dx, float *dgamma, float *dbeta,
                         const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y,
                         const float *gamma, const float *run_mean, const float *run_var,
                         float eps, int relu);

/* ---- element-wise on tensors of equal shape, dtype and layout --------------------------------- */

void tw_add_relu_forward(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b);
void tw_relu_backward(tw_backend *be, tw_tensor *dx, const tw_tensor *dy, const tw_tensor *y);
void tw_add(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b);

/* ---- pooling ------------------------------------------------------------------------------------ */

/* Max pool 3x3, stride 2, padding 1 (ResNet's). */
typedef struct tw_pool_plan tw_pool_plan;
tw_status tw_maxpool_plan_make(tw_backend *be, tw_pool_plan **out, int n, int c, int h, int w,
                               tw_layout layout, tw_err *err);
void tw_maxpool_plan_free(tw_backend *be, tw_pool_plan *p);
tw_tensor tw_maxpool_plan_y(const tw_pool_plan *p);
size_t tw_maxpool_plan_ws_bytes(const tw_pool_plan *p);
const char *tw_maxpool_plan_impl(const tw_pool_plan *p);
void tw_maxpool_forward(tw_backend *be, tw_pool_plan *p, tw_tensor *y, void *ws, const tw_tensor *x);
void tw_maxpool_backward(tw_backend *be, tw_pool_plan *p, tw_tensor *dx, const tw_tensor *dy,
                         const void *ws);   /* dx (=) */

/* Global average pool. y: [n, c] plain row-major f32 matrix. */
void tw_avgpool_forward(tw_backend *be, float *y, const tw_tensor *x);
void tw_avgpool_backward(tw_backend *be, tw_tensor *dx, const float *dy);   /* dx (=) */

/* ---- dense algebra on row-major f32 matrices --------------------------------------------------- */

/* C = alpha op(A) op(B) + beta C; op(A): [m, k], op(B): [k, n], C: [m, n]. */
void tw_gemm(tw_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
             const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* y[i, j] += bias[j] (y: [m, n]); dbias[j] = Σ_i dy[i, j] (=). */
void tw_bias_forward(tw_backend *be, float *y, const float *bias, int m, int n);
void tw_bias_backward(tw_backend *be, float *dbias, const float *dy, int m, int n);

/* Element-wise on n_elems f32 values (the classification heads). y may alias x; the backwards
 * overwrite (=).  relu: y = max(x, 0), dx = y > 0 ? dy : 0.  sigmoid: y = 1 / (1 + e^-x),
 * dx = dy y (1 - y).  blend (the gated fusion's products): y = g a + (1 - g) b, and backward
 * dg = dy (a - b), da = dy g, db = dy (1 - g). */
void tw_relu_forward_f32(tw_backend *be, float *y, const float *x, size_t n_elems);
void tw_relu_backward_f32(tw_backend *be, float *dx, const float *dy, const float *y,
                          size_t n_elems);
void tw_sigmoid_forward(tw_backend *be, float *y, const float *x, size_t n_elems);
void tw_sigmoid_backward(tw_backend *be, float *dx, const float *dy, const float *y,
                         size_t n_elems);
void tw_blend_forward(tw_backend *be, float *y, const float *g, const float *a, const float *b,
                      size_t n_elems);
void tw_blend_backward(tw_backend *be, float *dg, float *da, float *db, const float *dy,
                       const float *g, const float *a, const float *b, size_t n_elems);

/* ---- losses' hot loops ------------------------------------------------------------------------ */

/* Barlow Twins on the (already all-reduced) cross-correlation c [d, d]:
 * loss = Σ_i (1 - c_ii)² + lambda Σ_{i≠j} c_ij²; dc = ∂loss/∂c (=). Returns the loss (host). */
double tw_bt_loss(tw_backend *be, float *dc, const float *c, int d, float lambda);
/* Multi-label BCE with logits, mean over n·k: returns the loss; dlogits (=). */
double tw_bce_logits(tw_backend *be, float *dlogits, const float *logits, const float *targets,
                     int n, int k);

/* ---- optimizer updates over the flat parameter buffer ---------------------------------------- */

/* One parameter tensor inside the flat buffer. 1-D tensors (biases, BN) are excluded from weight
 * decay and LARS adaptation, as the official Barlow Twins LARS does. */
typedef struct tw_param_seg {
    size_t offset, n_elems;
    int is_1d;
} tw_param_seg;

/* What changes from step to step in an update, in backend memory: the update ops read it there
 * (never from the host), so a recorded step takes each replay's values (tw_backend_graph_begin).
 * The host works them out in double, as Python does for torch, and rounds each to f32 once. */
typedef struct tw_update_vals {
    float lr;          /* the rate of this call's segments */
    float step_size;   /* Adam: lr / (1 - beta1^t) */
    float bc2_sqrt;    /* Adam: sqrt(1 - beta2^t) */
    float shrink;      /* AdamW: 1 - lr wd on segments that are not 1-D; otherwise 1 */
} tw_update_vals;

/* The updates skip everything when *skip (backend int; NULL: never) is raised: a step whose
 * loss, statistics or gradients were not finite leaves parameters and state as they were, with
 * no host decision in between. */

/* torch.optim.Adam (L2 weight decay added to the gradient) or AdamW (decoupled). Double, as
 * Python passes them: torch rounds 1 - beta2 (not beta2) to f32, and the two differ. */
typedef struct tw_adam_hparams {
    double beta1, beta2, eps, weight_decay;
    int decoupled;
} tw_adam_hparams;
/* The values of step t (1-based) at rate lr. */
tw_update_vals tw_adam_vals(const tw_adam_hparams *h, double lr, int64_t t);
void tw_adam_update(tw_backend *be, float *p, float *m, float *v, const float *g,
                    const tw_param_seg *segs, int n_segs, const tw_adam_hparams *h,
                    const tw_update_vals *vals, const int *skip);

/* LARS as in facebookresearch/barlowtwins: g' = g + wd p; q = eta ||p|| / ||g'|| (1 if either
 * norm is 0); mu = momentum mu + q g'; p -= lr mu. 1-D segments: no wd, q = 1. */
typedef struct tw_lars_hparams {
    float momentum, weight_decay, eta;
} tw_lars_hparams;
void tw_lars_update(tw_backend *be, float *p, float *mu, const float *g, const tw_param_seg *segs,
                    int n_segs, const tw_lars_hparams *h, const tw_update_vals *vals,
                    const int *skip);

/* torch.optim.SGD with momentum (dampening 0, L2 weight decay on segments that are not 1-D). */
typedef struct tw_sgd_hparams {
    float momentum, weight_decay;
    int nesterov;
} tw_sgd_hparams;
void tw_sgd_update(tw_backend *be, float *p, float *mu, const float *g, const tw_param_seg *segs,
                   int n_segs, const tw_sgd_hparams *h, const tw_update_vals *vals,
                   const int *skip);
/* The values of LARS and SGD at rate lr. */
tw_update_vals tw_rate_vals(double lr);

/* x *= a over n f32 elements; raises *bad (backend int, never cleared here) when an element was
 * not finite before scaling. */
void tw_scale_check(tw_backend *be, float *x, size_t n, float a, int *bad);
/* 1 when *flag (backend int) is raised, else 0: the host's one look at a step's verdict. A value
 * op, as tw_bt_loss: NaN while recording, its value handed back by the replay. */
double tw_read_flag(tw_backend *be, const int *flag);

/* ---- optional: record a training step once, replay it (CUDA graphs) ---------------------------
 * Where the backend supports it (CUDA; the CPU backend does not: begin returns TW_E_UNSUPPORTED
 * and the caller simply runs the ops), the ops queued between begin and end are recorded, not
 * run, and each replay runs the recording. Shapes and pointers are frozen at recording time:
 * make every plan and buffer (and the communicator) before begin; nothing recorded may allocate,
 * free, synchronise, or copy to or from the host, except tw_mem_from_host_async from memory of
 * tw_mem_host_alloc, which each replay reads anew. Ops that return a host value (tw_bt_loss,
 * tw_bce_logits, tw_read_flag) return NaN while recording; replay hands their values back in
 * recording order. So a whole training step records: the optimizer's per-step values travel
 * through such an upload (tw_update_vals), and its verdict through flags (skip, bad). */
tw_status tw_backend_graph_begin(tw_backend *be, tw_err *err);
tw_status tw_backend_graph_end(tw_backend *be, tw_err *err);   /* the recording has not run yet */
/* Runs the recording; with n_values > 0 waits for it and fills values (n_values must equal the
 * number of value-returning ops recorded). */
void tw_backend_graph_replay(tw_backend *be, double *values, int n_values);

#endif
