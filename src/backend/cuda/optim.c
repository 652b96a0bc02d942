/* Optimizer updates on the CUDA backend: an update plan uploads its segment table once and keeps
 * it on the device, and one launch updates the whole group of segments (kernels/optim.cu). The
 * step's values (rate, bias corrections) and the skip flag are read by the kernels from device
 * memory, so an update records in a graph with no host copy. */
#include <stddef.h>
#include <stdlib.h>

#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

_Static_assert(sizeof(tw_k_vals) == sizeof(tw_update_vals) &&
                   offsetof(tw_k_vals, shrink) == offsetof(tw_update_vals, shrink),
               "kernels/tw_kernels.h's tw_k_vals must be backend.h's tw_update_vals");

/* On the device: the table (tw_k_seg) and the LARS norms' partial sums, made once. */
struct tw_update_plan {
    int n_segs;
    tw_k_seg *dev;               /* [n_segs] */
    float *partials;             /* [n_segs * TW_K_SEG_BLOCKS * 2] LARS norm partial sums */
};

tw_status tw_cuda_update_plan_make(tw_backend *be, tw_update_plan **out, const tw_param_seg *segs,
                                   int n_segs, tw_err *err) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    *out = NULL;
    TW_ASSERT(!cb->recording);
    if (n_segs > 65535)   /* one grid row each */
        return tw_err_set(err, TW_E_UNSUPPORTED, "cuda update plan: %d segments, at most 65535",
                          n_segs);
    tw_update_plan *p = calloc(1, sizeof *p);
    tw_k_seg *k = malloc((size_t)n_segs * sizeof *k);
    if (!p || !k) {
        free(p);
        free(k);
        return tw_err_set(err, TW_E_NOMEM, "cuda update plan: out of host memory");
    }
    for (int i = 0; i < n_segs; i++) k[i] = (tw_k_seg){segs[i].offset, segs[i].n_elems, segs[i].is_1d};
    p->n_segs = n_segs;
    TW_CHECK_CUDA(cudaMalloc((void **)&p->dev, (size_t)n_segs * sizeof *k));
    TW_CHECK_CUDA(cudaMalloc((void **)&p->partials,
                             (size_t)n_segs * TW_K_SEG_BLOCKS * 2 * sizeof(float)));
    /* Ordered on the stream after the work already queued; k is freed next, so wait. */
    TW_CHECK_CUDA(cudaMemcpyAsync(p->dev, k, (size_t)n_segs * sizeof *k, cudaMemcpyHostToDevice,
                                  cb->stream));
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));
    free(k);
    *out = p;
    return TW_OK;
}

void tw_cuda_update_plan_free(tw_backend *be, tw_update_plan *p) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    if (!p) return;
    TW_ASSERT(!cb->recording);
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));   /* queued updates may still read it */
    TW_CHECK_CUDA(cudaFree(p->dev));
    TW_CHECK_CUDA(cudaFree(p->partials));
    free(p);
}

void tw_cuda_adam_update(tw_backend *be, tw_update_plan *plan, float *p, float *m, float *v,
                         const float *g, const tw_adam_hparams *h, const tw_update_vals *vals,
                         const int *skip) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_CHECK_CUDA(tw_k_adam(cb->stream, p, m, v, g, plan->dev, plan->n_segs,
                            (const tw_k_vals *)vals, skip, (float)(1.0 - h->beta1),
                            (float)h->beta2, (float)(1.0 - h->beta2), (float)h->eps,
                            (float)h->weight_decay, h->decoupled));
}

void tw_cuda_lars_update(tw_backend *be, tw_update_plan *plan, float *p, float *mu,
                         const float *g, const tw_lars_hparams *h, const tw_update_vals *vals,
                         const int *skip) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_CHECK_CUDA(tw_k_lars(cb->stream, p, mu, plan->partials, g, plan->dev, plan->n_segs,
                            (const tw_k_vals *)vals, skip, h->momentum, h->weight_decay, h->eta));
}

void tw_cuda_sgd_update(tw_backend *be, tw_update_plan *plan, float *p, float *mu,
                        const float *g, const tw_sgd_hparams *h, const tw_update_vals *vals,
                        const int *skip) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_CHECK_CUDA(tw_k_sgd(cb->stream, p, mu, g, plan->dev, plan->n_segs,
                           (const tw_k_vals *)vals, skip, h->momentum, h->weight_decay,
                           h->nesterov));
}
