/* The classification heads' ops on the CUDA backend: inference-mode batch norm backward on the
 * CUDA backend's activation layouts (NHWC, and NCHW for plain matrices), and the f32 element-wise
 * ReLU, sigmoid and gated blend. The kernels are kernels/act.cu. */
#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

void tw_cuda_bn_backward_eval(tw_backend *be, tw_tensor *dx, float *dgamma, float *dbeta,
                              const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y,
                              const float *gamma, const float *run_mean, const float *run_var,
                              float eps, int relu) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    /* The dispatch (backend.c) checked that the tensors agree; this backend makes no blocked
     * layouts. */
    TW_ASSERT(dx->layout == TW_LAYOUT_NHWC || dx->layout == TW_LAYOUT_NCHW);
    int64_t hw = (int64_t)dx->h * dx->w, m_rows = (int64_t)dx->n * hw;
    size_t n = (size_t)m_rows * dx->c;
    TW_CHECK_CUDA(tw_k_bn_backward_eval(cb->stream, tw_cuda_grid(cb, n), dx->data, dgamma, dbeta,
                                        dy->data, x->data, relu ? y->data : NULL, gamma, run_mean,
                                        run_var, dx->dtype == TW_BF16, m_rows, dx->c, hw,
                                        dx->layout == TW_LAYOUT_NHWC, eps));
}

enum { OP_RELU, OP_RELU_BWD, OP_SIGMOID, OP_SIGMOID_BWD };

static void act(tw_backend *be, int op, float *out, const float *a, const float *b, size_t n) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    if (!n) return;
    TW_CHECK_CUDA(tw_k_act(cb->stream, tw_cuda_grid(cb, n), op, out, a, b, n));
}

void tw_cuda_relu_forward_f32(tw_backend *be, float *y, const float *x, size_t n_elems) {
    act(be, OP_RELU, y, x, NULL, n_elems);
}

void tw_cuda_relu_backward_f32(tw_backend *be, float *dx, const float *dy, const float *y,
                               size_t n_elems) {
    act(be, OP_RELU_BWD, dx, dy, y, n_elems);
}

void tw_cuda_sigmoid_forward(tw_backend *be, float *y, const float *x, size_t n_elems) {
    act(be, OP_SIGMOID, y, x, NULL, n_elems);
}

void tw_cuda_sigmoid_backward(tw_backend *be, float *dx, const float *dy, const float *y,
                              size_t n_elems) {
    act(be, OP_SIGMOID_BWD, dx, dy, y, n_elems);
}

void tw_cuda_blend_forward(tw_backend *be, float *y, const float *g, const float *a,
                           const float *b, size_t n_elems) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    if (!n_elems) return;
    TW_CHECK_CUDA(tw_k_blend(cb->stream, tw_cuda_grid(cb, n_elems), y, g, a, b, n_elems));
}

void tw_cuda_blend_backward(tw_backend *be, float *dg, float *da, float *db, const float *dy,
                            const float *g, const float *a, const float *b, size_t n_elems) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    if (!n_elems) return;
    TW_CHECK_CUDA(tw_k_blend_backward(cb->stream, tw_cuda_grid(cb, n_elems), dg, da, db, dy, g, a,
                                      b, n_elems));
}
