/* Optimizer updates on the CUDA backend: the segment table is uploaded once (and again only when
 * it changes), the bias corrections are computed on the host in double as torch does, and one
 * launch updates the whole flat buffer (kernels/optim.cu). These take per-step host values, so
 * they run outside a recorded graph (backend.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

/* Makes the device copy of segs current; returns it. */
static const tw_k_seg *segs_sync(tw_cuda_backend *cb, const tw_param_seg *segs, int n_segs) {
    TW_ASSERT(!cb->recording);
    TW_ASSERT(n_segs > 0 && n_segs <= 65535);   /* one grid row each */
    if (n_segs == cb->n_segs && memcmp(segs, cb->segs_host, (size_t)n_segs * sizeof *segs) == 0)
        return cb->segs_dev;
    tw_k_seg *k = malloc((size_t)n_segs * sizeof *k);
    tw_param_seg *copy = malloc((size_t)n_segs * sizeof *copy);
    TW_ASSERT(k && copy);
    for (int i = 0; i < n_segs; i++) {
        k[i] = (tw_k_seg){segs[i].offset, segs[i].n_elems, segs[i].is_1d};
        copy[i] = segs[i];
    }
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));
    cudaFree(cb->segs_dev);
    cudaFree(cb->seg_partials);
    TW_CHECK_CUDA(cudaMalloc(&cb->segs_dev, (size_t)n_segs * sizeof *k));
    TW_CHECK_CUDA(cudaMalloc((void **)&cb->seg_partials,
                             (size_t)n_segs * TW_K_SEG_BLOCKS * 2 * sizeof(float)));
    TW_CHECK_CUDA(cudaMemcpy(cb->segs_dev, k, (size_t)n_segs * sizeof *k, cudaMemcpyHostToDevice));
    free(k);
    free(cb->segs_host);
    cb->segs_host = copy;
    cb->n_segs = n_segs;
    return cb->segs_dev;
}

void tw_cuda_adam_update(tw_backend *be, float *p, float *m, float *v, const float *g,
                         const tw_param_seg *segs, int n_segs, const tw_adam_hparams *h) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(h->step >= 1);
    const tw_k_seg *ds = segs_sync(cb, segs, n_segs);
    double bc1 = 1.0 - pow((double)h->beta1, (double)h->step);
    double bc2 = 1.0 - pow((double)h->beta2, (double)h->step);
    TW_CHECK_CUDA(tw_k_adam(cb->stream, p, m, v, g, ds, n_segs, h->lr, h->beta1, h->beta2, h->eps,
                            h->weight_decay, h->decoupled, (float)(h->lr / bc1),
                            (float)sqrt(bc2)));
}

void tw_cuda_lars_update(tw_backend *be, float *p, float *mu, const float *g,
                         const tw_param_seg *segs, int n_segs, const tw_lars_hparams *h) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    const tw_k_seg *ds = segs_sync(cb, segs, n_segs);
    TW_CHECK_CUDA(tw_k_lars(cb->stream, p, mu, cb->seg_partials, g, ds, n_segs, h->lr, h->momentum,
                            h->weight_decay, h->eta));
}

void tw_cuda_sgd_update(tw_backend *be, float *p, float *mu, const float *g,
                        const tw_param_seg *segs, int n_segs, const tw_sgd_hparams *h) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    const tw_k_seg *ds = segs_sync(cb, segs, n_segs);
    TW_CHECK_CUDA(tw_k_sgd(cb->stream, p, mu, g, ds, n_segs, h->lr, h->momentum, h->weight_decay,
                           h->nesterov));
}
