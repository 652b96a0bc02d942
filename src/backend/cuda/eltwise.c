/* Element-wise ops and reorders on the CUDA backend: tensors of equal shape, dtype and layout for
 * add / add+ReLU / ReLU backward; reorders between plain NCHW and NHWC in f32 or bf16 (the CUDA
 * backend never makes oneDNN's blocked layouts). The kernels are kernels/eltwise.cu. */
#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

static size_t n_elems_of(const tw_tensor *t) {
    return (size_t)t->n * t->c * t->h * t->w;
}

static int is_bf16(const tw_tensor *t) {
    TW_ASSERT(t->dtype == TW_F32 || t->dtype == TW_BF16);
    return t->dtype == TW_BF16;
}

static int is_nhwc(const tw_tensor *t) {
    TW_ASSERT(t->layout == TW_LAYOUT_NCHW || t->layout == TW_LAYOUT_NHWC);
    return t->layout == TW_LAYOUT_NHWC;
}

void tw_cuda_reorder(tw_backend *be, tw_tensor *dst, const tw_tensor *src) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    size_t n = n_elems_of(dst);
    TW_CHECK_CUDA(tw_k_reorder(cb->stream, tw_cuda_grid(cb, n), dst->data, is_bf16(dst),
                               is_nhwc(dst), src->data, is_bf16(src), is_nhwc(src), dst->n,
                               dst->c, dst->h, dst->w, dst->c));
}

void tw_cuda_add_relu_forward(tw_backend *be, tw_tensor *y, const tw_tensor *a,
                              const tw_tensor *b) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    (void)is_nhwc(y);   /* the dispatch checked that a and b agree with y */
    size_t n = n_elems_of(y);
    TW_CHECK_CUDA(tw_k_add(cb->stream, tw_cuda_grid(cb, n), y->data, a->data, b->data, n,
                           is_bf16(y), 1));
}

/* dx (=) = dy where y > 0. */
void tw_cuda_relu_backward(tw_backend *be, tw_tensor *dx, const tw_tensor *dy,
                           const tw_tensor *y) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    (void)is_nhwc(dx);   /* the dispatch checked that dy and y agree with dx */
    size_t n = n_elems_of(dx);
    TW_CHECK_CUDA(tw_k_relu_backward(cb->stream, tw_cuda_grid(cb, n), dx->data, dy->data, y->data,
                                     n, is_bf16(dx)));
}

void tw_cuda_add(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    (void)is_nhwc(y);   /* the dispatch checked that a and b agree with y */
    size_t n = n_elems_of(y);
    TW_CHECK_CUDA(tw_k_add(cb->stream, tw_cuda_grid(cb, n), y->data, a->data, b->data, n,
                           is_bf16(y), 0));
}

/* x *= a; raises *bad when an element was not finite before scaling. */
void tw_cuda_scale_check(tw_backend *be, float *x, size_t n, float a, int *bad) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_CHECK_CUDA(tw_k_scale_check(cb->stream, tw_cuda_grid(cb, n), bad, x, n, a));
}

/* A value op (as the losses): the flag goes to a value slot, read now or handed back by a replay. */
double tw_cuda_read_flag(tw_backend *be, const int *flag) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    double *slot = tw_cuda_val_slot(cb);
    TW_CHECK_CUDA(tw_k_read_flag(cb->stream, slot, flag));
    return tw_cuda_val_read(cb, slot);
}
