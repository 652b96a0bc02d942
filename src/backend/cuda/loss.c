/* The losses' hot loops on the CUDA backend. Each writes its gradient (=) and returns the loss:
 * read back at once for a direct call, or handed back by tw_backend_graph_replay when recorded.
 * The kernels are kernels/loss.cu. */
#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

double tw_cuda_bt_loss(tw_backend *be, float *dc, const float *c, int d, int common, float lambda,
                       float scale) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(d > 0);
    double *slot = tw_cuda_val_slot(cb);
    TW_CHECK_CUDA(tw_k_bt_loss(cb->stream, slot, cb->red_partial, dc, c, d, common, lambda, scale));
    return tw_cuda_val_read(cb, slot);
}

double tw_cuda_bce_logits(tw_backend *be, float *dlogits, const float *logits,
                          const float *targets, int n, int k) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(n > 0 && k > 0);
    double *slot = tw_cuda_val_slot(cb);
    TW_CHECK_CUDA(tw_k_bce_logits(cb->stream, slot, cb->red_partial, dlogits, logits, targets,
                                  (size_t)n * k));
    return tw_cuda_val_read(cb, slot);
}
