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
tw_device tw_backend_device(const tw_backend *be);
tw_dtype tw_backend_act_dtype(const tw_backend *be);        /* TW_F32 or TW_BF16 */
/* Whether this build has the device at all, and how many are visible (0 is not an error). */
int tw_backend_available(tw_device dev);
int tw_backend_device_count(tw_device dev);

/* ---- plans: shape descriptors made once into backend-owned plans ---------------------------- */

struct tw_net_shape;
typedef struct tw_conv_desc {   /* convolution without bias (ResNet's are followed by BN) */
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

typedef struct tw_bn_desc {   /* batch norm over (n, h, w) per channel, per rank */
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

/* Bytes of per-call state kept from forward to backward (e.g. the fused ReLU's mask); the caller
 * owns it so one plan can serve several activation sets (the two Barlow Twins views). */
size_t tw_bn_plan_ws_bytes(const tw_bn_plan *p);
const char *tw_bn_plan_impl(const tw_bn_plan *p);

/* Max pool 3x3, stride 2, padding 1 (ResNet's). */
typedef struct tw_pool_plan tw_pool_plan;
tw_tensor tw_maxpool_plan_y(const tw_pool_plan *p);
size_t tw_maxpool_plan_ws_bytes(const tw_pool_plan *p);
const char *tw_maxpool_plan_impl(const tw_pool_plan *p);

/* ---- optimizer updates over the flat parameter buffer ---------------------------------------- */

/* One parameter tensor inside the flat buffer. 1-D tensors (biases, BN) are excluded from weight
 * decay and LARS adaptation, as the official Barlow Twins LARS does. */
typedef struct tw_param_seg {
    size_t offset, n_elems;
    int is_1d;
} tw_param_seg;
/* A table of segments made into a backend-owned plan once (tw_update_plan_make in ops.def). */
typedef struct tw_update_plan tw_update_plan;

/* What changes from step to step in an update, in backend memory: the update ops read it there
 * (never from the host), so a recorded step takes each replay's values (tw_backend_graph_begin).
 * The host works them out in double, as Python does for torch, and rounds each to f32 once. */
typedef struct tw_update_vals {
    float lr;          /* the rate of this call's segments */
    float step_size;   /* Adam: lr / (1 - beta1^t) */
    float bc2_sqrt;    /* Adam: sqrt(1 - beta2^t) */
    float shrink;      /* AdamW: 1 - lr wd on segments that are not 1-D; otherwise 1 */
} tw_update_vals;

/* torch.optim.Adam (L2 weight decay added to the gradient) or AdamW (decoupled). Double, as
 * Python passes them: torch rounds 1 - beta2 (not beta2) to f32, and the two differ. */
typedef struct tw_adam_hparams {
    double beta1, beta2, eps, weight_decay;
    int decoupled;
} tw_adam_hparams;
/* The values of step t (1-based) at rate lr. */
tw_update_vals tw_adam_vals(const tw_adam_hparams *h, double lr, int64_t t);

/* LARS as in facebookresearch/barlowtwins: g' = g + wd p; q = eta ||p|| / ||g'|| (1 if either
 * norm is 0); mu = momentum mu + q g'; p -= lr mu. 1-D segments: no wd, q = 1. */
typedef struct tw_lars_hparams {
    float momentum, weight_decay, eta;
} tw_lars_hparams;

/* torch.optim.SGD with momentum (dampening 0, L2 weight decay on segments that are not 1-D). */
typedef struct tw_sgd_hparams {
    float momentum, weight_decay;
    int nesterov;
} tw_sgd_hparams;
/* The values of LARS and SGD at rate lr. */
tw_update_vals tw_rate_vals(double lr);

/* ---- the ops: one list, with their comments, in backend/ops.def ------------------------------ */

#define TW_OP(ret, name, params, args) ret tw_##name params;
#define TW_OP_OPTIONAL(ret, name, params, args) ret tw_##name params;
#include "backend/ops.def"

#endif
