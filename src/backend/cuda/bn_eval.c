/* Batch norm frozen in inference mode, backward (a fine-tuned backbone's BN under trained
 * layers) on the CUDA backend's activation layouts (NHWC, and NCHW for plain matrices). The
 * kernels are kernels/bn_eval.cu. */
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
