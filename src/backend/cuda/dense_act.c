/* Element-wise activations on f32 rows on the CUDA backend, the companions of dense.c's GEMM and
 * bias in the classification heads: ReLU, sigmoid and the gated fusion's blend, with their
 * backwards. The kernels are kernels/dense_act.cu. */
#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

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
