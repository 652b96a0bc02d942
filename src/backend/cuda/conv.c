/* Convolutions on cuDNN 9's legacy convolution API (deprecated in 9.x but shipped and supported):
 * NHWC activations and NHWC (k, r, s, c) filters, the torch-order f32 weights packed (and cast to
 * bf16) once per forward. An input that arrives in another layout (the NCHW image before the
 * stem) is staged as NHWC with its channels padded to a multiple of 8, which tensor-core kernels
 * want (zero channels and zero weights change nothing). Algorithms come from cudnnFind*
 * (measured, as cudnn.benchmark does), cached per shape in the backend; all plans share the
 * backend's one workspace. */
#include <stdlib.h>

#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

/* The most workspace one convolution may use; faster algorithms that need more are skipped. */
#define TW_CONV_WS_CAP ((size_t)1 << 30)

struct tw_conv_plan {
    tw_plan_head head;            /* y: [n, c_out, oh, ow] NHWC, the activation dtype */
    tw_conv_desc d;
    cudnnTensorDescriptor_t x_desc, y_desc;
    cudnnFilterDescriptor_t w_desc;
    cudnnConvolutionDescriptor_t fwd_desc, bwd_data_desc, bwd_filter_desc;
    tw_cuda_conv_algo algo;
    int c_pad;                    /* channels cuDNN sees: c_in, or c_in rounded up to 8 when staged */
    void *w_act;                  /* [c_out, k, k, c_pad], the activation dtype, packed per call */
    void *dw_act;                 /* the same shape, backward-weights output before unpacking */
    void *x_stage;                /* [n, h, w, c_pad] copy of x when it arrives in another layout */
};

static cudnnDataType_t act_type(const tw_cuda_backend *cb) {
    return cb->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

/* One convolution descriptor per direction: each may run with its own math type. fp32 plans are
 * restricted to FMA kernels, so that no TF32 slips in and CUDA matches the CPU to 1e-4. */
static cudnnConvolutionDescriptor_t conv_desc_make(const tw_cuda_backend *cb,
                                                   const tw_conv_desc *d) {
    cudnnConvolutionDescriptor_t cd;
    TW_CHECK_CUDNN(cudnnCreateConvolutionDescriptor(&cd));
    TW_CHECK_CUDNN(cudnnSetConvolution2dDescriptor(cd, d->pad, d->pad, d->stride, d->stride, 1, 1,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    TW_CHECK_CUDNN(cudnnSetConvolutionMathType(cd, cb->bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    return cd;
}

static tw_cuda_conv_algo *algo_lookup(tw_cuda_backend *cb, const int key[9]) {
    for (int i = 0; i < cb->n_algos; i++) {
        int same = 1;
        for (int k = 0; k < 9; k++) same &= cb->algos[i].key[k] == key[k];
        if (same) return &cb->algos[i];
    }
    return NULL;
}

/* The fastest measured algorithm that succeeded and fits the cap; -1 when none did. Generic over
 * the three perf structs, which share their leading fields. */
#define PICK_FASTEST(perf, n, out_algo, out_math, out_ws)                           \
    do {                                                                            \
        out_algo = -1;                                                              \
        for (int i_ = 0; i_ < (n); i_++) {                                          \
            if ((perf)[i_].status != CUDNN_STATUS_SUCCESS) continue;                \
            if ((perf)[i_].memory > TW_CONV_WS_CAP) continue;                       \
            out_algo = (int)(perf)[i_].algo;                                        \
            out_math = (perf)[i_].mathType;                                         \
            out_ws = (perf)[i_].memory;                                             \
            break;                                                                  \
        }                                                                           \
    } while (0)

static tw_status algo_find(tw_cuda_backend *cb, tw_conv_plan *p, tw_cuda_conv_algo *a,
                           tw_err *err) {
    const tw_conv_desc *d = &p->d;
    int n_ret = 0, pick;
    size_t ws;
    cudnnMathType_t math;
    cudnnConvolutionFwdAlgoPerf_t fwd[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    TW_CHECK_CUDNN(cudnnFindConvolutionForwardAlgorithm(cb->cudnn, p->x_desc, p->w_desc,
                                                        p->fwd_desc, p->y_desc,
                                                        CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n_ret, fwd));
    PICK_FASTEST(fwd, n_ret, pick, math, ws);
    if (pick < 0) goto none;
    a->fwd = (cudnnConvolutionFwdAlgo_t)pick;
    a->math_fwd = cb->bf16 ? math : CUDNN_FMA_MATH;
    a->ws_bytes = ws;

    cudnnConvolutionBwdFilterAlgoPerf_t bf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    TW_CHECK_CUDNN(cudnnFindConvolutionBackwardFilterAlgorithm(
        cb->cudnn, p->x_desc, p->y_desc, p->bwd_filter_desc, p->w_desc,
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n_ret, bf));
    PICK_FASTEST(bf, n_ret, pick, math, ws);
    if (pick < 0) goto none;
    a->bwd_filter = (cudnnConvolutionBwdFilterAlgo_t)pick;
    a->math_bwd_filter = cb->bf16 ? math : CUDNN_FMA_MATH;
    if (ws > a->ws_bytes) a->ws_bytes = ws;

    a->bwd_data = CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
    a->math_bwd_data = a->math_fwd;
    if (d->need_dx) {
        cudnnConvolutionBwdDataAlgoPerf_t bd[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        TW_CHECK_CUDNN(cudnnFindConvolutionBackwardDataAlgorithm(
            cb->cudnn, p->w_desc, p->y_desc, p->bwd_data_desc, p->x_desc,
            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n_ret, bd));
        PICK_FASTEST(bd, n_ret, pick, math, ws);
        if (pick < 0) goto none;
        a->bwd_data = (cudnnConvolutionBwdDataAlgo_t)pick;
        a->math_bwd_data = cb->bf16 ? math : CUDNN_FMA_MATH;
        if (ws > a->ws_bytes) a->ws_bytes = ws;
    }
    return TW_OK;
none:
    return tw_err_set(err, TW_E_UNSUPPORTED,
                      "cuda conv %dx%d/%d pad %d, %d -> %d channels at %dx%d, batch %d (%s): "
                      "cuDNN has no algorithm within %zu MiB of workspace",
                      d->kernel, d->kernel, d->stride, d->pad, p->c_pad, d->c_out, d->h_in,
                      d->w_in, d->n, cb->bf16 ? "bf16" : "fp32", TW_CONV_WS_CAP >> 20);
}

void tw_cuda_conv_plan_free(tw_backend *be, tw_conv_plan *p) {
    if (!p) return;
    TW_CHECK_CUDA(cudaStreamSynchronize(tw_cuda_of(be)->stream));
    if (p->x_desc) cudnnDestroyTensorDescriptor(p->x_desc);
    if (p->y_desc) cudnnDestroyTensorDescriptor(p->y_desc);
    if (p->w_desc) cudnnDestroyFilterDescriptor(p->w_desc);
    if (p->fwd_desc) cudnnDestroyConvolutionDescriptor(p->fwd_desc);
    if (p->bwd_data_desc) cudnnDestroyConvolutionDescriptor(p->bwd_data_desc);
    if (p->bwd_filter_desc) cudnnDestroyConvolutionDescriptor(p->bwd_filter_desc);
    cudaFree(p->w_act);
    cudaFree(p->dw_act);
    cudaFree(p->x_stage);
    free(p);
}

tw_status tw_cuda_conv_plan_make(tw_backend *be, tw_conv_plan **out, const tw_conv_desc *d,
                                 tw_err *err) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    tw_status st = TW_OK;
    *out = NULL;
    TW_ASSERT(!cb->recording);
    if (d->n <= 0 || d->c_in <= 0 || d->h_in <= 0 || d->w_in <= 0 || d->c_out <= 0 ||
        d->kernel <= 0 || d->stride <= 0 || d->pad < 0)
        return tw_err_set(err, TW_E_SHAPE, "cuda conv: bad shape n=%d c_in=%d h=%d w=%d c_out=%d "
                          "k=%d stride=%d pad=%d", d->n, d->c_in, d->h_in, d->w_in, d->c_out,
                          d->kernel, d->stride, d->pad);
    if (d->x_layout != TW_LAYOUT_NCHW && d->x_layout != TW_LAYOUT_NHWC)
        return tw_err_set(err, TW_E_UNSUPPORTED, "cuda conv: input layout %s (the CUDA backend "
                          "takes nchw or nhwc)", tw_layout_name(d->x_layout));
    int oh = (d->h_in + 2 * d->pad - d->kernel) / d->stride + 1;
    int ow = (d->w_in + 2 * d->pad - d->kernel) / d->stride + 1;
    if (d->h_in + 2 * d->pad < d->kernel || d->w_in + 2 * d->pad < d->kernel || oh <= 0 || ow <= 0)
        return tw_err_set(err, TW_E_SHAPE, "cuda conv: %dx%d kernel larger than the padded %dx%d "
                          "input", d->kernel, d->kernel, d->h_in, d->w_in);

    tw_conv_plan *p = calloc(1, sizeof *p);
    if (!p) return tw_err_set(err, TW_E_NOMEM, "cuda conv: out of host memory");
    p->d = *d;
    p->c_pad = d->x_layout == TW_LAYOUT_NHWC ? d->c_in : (d->c_in + 7) / 8 * 8;
    p->head.x = (tw_tensor){NULL, d->n, d->c_in, d->h_in, d->w_in, be->act_dtype, d->x_layout};
    p->head.y = (tw_tensor){NULL, d->n, d->c_out, oh, ow, be->act_dtype, TW_LAYOUT_NHWC};
    cudnnDataType_t dt = act_type(cb);
    TW_CHECK_CUDNN(cudnnCreateTensorDescriptor(&p->x_desc));
    TW_CHECK_CUDNN(cudnnSetTensor4dDescriptor(p->x_desc, CUDNN_TENSOR_NHWC, dt, d->n, p->c_pad,
                                              d->h_in, d->w_in));
    TW_CHECK_CUDNN(cudnnCreateTensorDescriptor(&p->y_desc));
    TW_CHECK_CUDNN(cudnnSetTensor4dDescriptor(p->y_desc, CUDNN_TENSOR_NHWC, dt, d->n, d->c_out, oh,
                                              ow));
    TW_CHECK_CUDNN(cudnnCreateFilterDescriptor(&p->w_desc));
    TW_CHECK_CUDNN(cudnnSetFilter4dDescriptor(p->w_desc, dt, CUDNN_TENSOR_NHWC, d->c_out, p->c_pad,
                                              d->kernel, d->kernel));
    p->fwd_desc = conv_desc_make(cb, d);
    p->bwd_data_desc = conv_desc_make(cb, d);
    p->bwd_filter_desc = conv_desc_make(cb, d);

    int key[9] = {d->n, p->c_pad, d->h_in, d->w_in, d->c_out, d->kernel, d->stride, d->pad,
                  cb->bf16 * 2 + (d->need_dx != 0)};
    tw_cuda_conv_algo *hit = algo_lookup(cb, key);
    if (hit) {
        p->algo = *hit;
    } else {
        if ((st = algo_find(cb, p, &p->algo, err)) != TW_OK) goto done;
        for (int k = 0; k < 9; k++) p->algo.key[k] = key[k];
        if (cb->n_algos == cb->cap_algos) {
            int cap = cb->cap_algos ? 2 * cb->cap_algos : 32;
            tw_cuda_conv_algo *a = realloc(cb->algos, (size_t)cap * sizeof *a);
            if (!a) {
                st = tw_err_set(err, TW_E_NOMEM, "cuda conv: out of host memory");
                goto done;
            }
            cb->algos = a;
            cb->cap_algos = cap;
        }
        cb->algos[cb->n_algos++] = p->algo;
    }
    TW_CHECK_CUDNN(cudnnSetConvolutionMathType(p->fwd_desc, p->algo.math_fwd));
    TW_CHECK_CUDNN(cudnnSetConvolutionMathType(p->bwd_data_desc, p->algo.math_bwd_data));
    TW_CHECK_CUDNN(cudnnSetConvolutionMathType(p->bwd_filter_desc, p->algo.math_bwd_filter));
    tw_cuda_ws_reserve(cb, p->algo.ws_bytes);

    size_t w_bytes = (size_t)d->c_out * p->c_pad * d->kernel * d->kernel * tw_dtype_size(be->act_dtype);
    TW_CHECK_CUDA(cudaMalloc(&p->w_act, w_bytes));
    TW_CHECK_CUDA(cudaMalloc(&p->dw_act, w_bytes));
    if (d->x_layout != TW_LAYOUT_NHWC)
        TW_CHECK_CUDA(cudaMalloc(&p->x_stage, (size_t)d->n * p->c_pad * d->h_in * d->w_in *
                                                  tw_dtype_size(be->act_dtype)));
    *out = p;
    p = NULL;
done:
    if (p) tw_cuda_conv_plan_free(be, p);
    return st;
}

/* x as cuDNN takes it: NHWC in the activation dtype, staged through a reorder when needed. */
static const void *conv_input(tw_cuda_backend *cb, tw_conv_plan *p, const tw_tensor *x) {
    const tw_conv_desc *d = &p->d;
    TW_ASSERT(x->n == d->n && x->c == d->c_in && x->h == d->h_in && x->w == d->w_in);
    TW_ASSERT(x->layout == d->x_layout);
    if (!p->x_stage) {
        TW_ASSERT(x->dtype == cb->base.act_dtype);
        return x->data;
    }
    size_t n_elems = (size_t)d->n * p->c_pad * d->h_in * d->w_in;
    TW_CHECK_CUDA(tw_k_reorder(cb->stream, tw_cuda_grid(cb, n_elems), p->x_stage, cb->bf16, 1,
                               x->data, x->dtype == TW_BF16, 0, d->n, d->c_in, d->h_in, d->w_in,
                               p->c_pad));
    return p->x_stage;
}

/* Packs w into the plan's cuDNN filter (NHWC, the activation dtype). */
static void weights_pack(tw_cuda_backend *cb, tw_conv_plan *p, const float *w) {
    const tw_conv_desc *d = &p->d;
    size_t w_elems = (size_t)d->c_out * p->c_pad * d->kernel * d->kernel;
    TW_CHECK_CUDA(tw_k_weight_pack(cb->stream, tw_cuda_grid(cb, w_elems), p->w_act, cb->bf16, w,
                                   d->c_out, d->c_in, d->kernel, d->kernel, p->c_pad));
}

static void check_y(const tw_conv_plan *p, const tw_tensor *y) {
    const tw_tensor *e = &p->head.y;
    TW_ASSERT(y->n == e->n && y->c == e->c && y->h == e->h && y->w == e->w);
    TW_ASSERT(y->dtype == e->dtype && y->layout == e->layout);
}

void tw_cuda_conv_forward(tw_backend *be, tw_conv_plan *p, tw_tensor *y, const tw_tensor *x,
                          const float *w) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    check_y(p, y);
    const void *xin = conv_input(cb, p, x);
    weights_pack(cb, p, w);
    const float one = 1.f, zero = 0.f;   /* f32 scalars: the compute type is f32 */
    TW_CHECK_CUDNN(cudnnConvolutionForward(cb->cudnn, &one, p->x_desc, xin, p->w_desc, p->w_act,
                                           p->fwd_desc, p->algo.fwd, cb->ws, cb->ws_bytes, &zero,
                                           p->y_desc, y->data));
}

/* dx (=). The weights are packed again rather than taken from the last forward: one plan may
 * serve several layers of the same shape, whose forwards all ran before this backward. */
void tw_cuda_conv_backward_data(tw_backend *be, tw_conv_plan *p, tw_tensor *dx,
                                const tw_tensor *dy, const float *w) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    const tw_conv_desc *d = &p->d;
    TW_ASSERT(d->need_dx);
    check_y(p, dy);
    TW_ASSERT(dx->n == d->n && dx->c == d->c_in && dx->h == d->h_in && dx->w == d->w_in);
    TW_ASSERT(dx->layout == d->x_layout);
    void *out = p->x_stage ? p->x_stage : dx->data;
    if (!p->x_stage) TW_ASSERT(dx->dtype == be->act_dtype);
    weights_pack(cb, p, w);
    const float one = 1.f, zero = 0.f;
    TW_CHECK_CUDNN(cudnnConvolutionBackwardData(cb->cudnn, &one, p->w_desc, p->w_act, p->y_desc,
                                                dy->data, p->bwd_data_desc, p->algo.bwd_data,
                                                cb->ws, cb->ws_bytes, &zero, p->x_desc, out));
    if (p->x_stage) {
        size_t n_elems = (size_t)d->n * d->c_in * d->h_in * d->w_in;
        TW_CHECK_CUDA(tw_k_reorder(cb->stream, tw_cuda_grid(cb, n_elems), dx->data,
                                   dx->dtype == TW_BF16, 0, p->x_stage, cb->bf16, 1, d->n,
                                   d->c_in, d->h_in, d->w_in, p->c_pad));
    }
}

/* dw (=) f32 [c_out, c_in, k, k]: cuDNN writes the NHWC filter in the activation dtype (as torch's
 * autocast, whose weight gradient is that of the bf16 copy), then it is unpacked to f32. */
void tw_cuda_conv_backward_weights(tw_backend *be, tw_conv_plan *p, float *dw,
                                   const tw_tensor *dy, const tw_tensor *x) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    const tw_conv_desc *d = &p->d;
    check_y(p, dy);
    const void *xin = conv_input(cb, p, x);
    const float one = 1.f, zero = 0.f;
    TW_CHECK_CUDNN(cudnnConvolutionBackwardFilter(cb->cudnn, &one, p->x_desc, xin, p->y_desc,
                                                  dy->data, p->bwd_filter_desc,
                                                  p->algo.bwd_filter, cb->ws, cb->ws_bytes, &zero,
                                                  p->w_desc, p->dw_act));
    size_t w_elems = (size_t)d->c_out * d->c_in * d->kernel * d->kernel;
    TW_CHECK_CUDA(tw_k_weight_unpack(cb->stream, tw_cuda_grid(cb, w_elems), dw, p->dw_act,
                                     cb->bf16, d->c_out, d->c_in, d->kernel, d->kernel, p->c_pad));
}
