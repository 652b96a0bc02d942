/* Optimizer updates on the CUDA backend: each segment table is uploaded the first time it is seen
 * and kept on the device, and one launch updates a whole group of segments (kernels/optim.cu).
 * The step's values (rate, bias corrections) and the skip flag are read by the kernels from
 * device memory, so an update records in a graph once its segment table has been seen. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

_Static_assert(sizeof(tw_k_vals) == sizeof(tw_update_vals) &&
                   offsetof(tw_k_vals, shrink) == offsetof(tw_update_vals, shrink),
               "kernels/tw_kernels.h's tw_k_vals must be backend.h's tw_update_vals");

/* Field by field: the struct's padding bytes are not the caller's to keep equal. */
static int segs_equal(const tw_param_seg *a, const tw_param_seg *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i].offset != b[i].offset || a[i].n_elems != b[i].n_elems || a[i].is_1d != b[i].is_1d)
            return 0;
    return 1;
}

/* The device copy of segs (uploaded the first time this table is seen). */
static const tw_cuda_segtab *segs_sync(tw_cuda_backend *cb, const tw_param_seg *segs, int n_segs) {
    TW_ASSERT(n_segs > 0 && n_segs <= 65535);   /* one grid row each */
    for (int i = 0; i < cb->n_segtabs; i++) {
        tw_cuda_segtab *t = &cb->segtabs[i];
        if (t->n == n_segs && segs_equal(segs, t->host, n_segs)) return t;
    }
    /* A new table uploads and synchronises: an update records only once its table was seen
     * (a step run eagerly first). */
    TW_ASSERT(!cb->recording);
    tw_cuda_segtab *t;
    if (cb->n_segtabs < TW_CUDA_MAX_SEGTABS) {
        t = &cb->segtabs[cb->n_segtabs++];
    } else {   /* more tables than any optimizer uses: recycle one, after its last use */
        t = &cb->segtabs[cb->next_evict];
        cb->next_evict = (cb->next_evict + 1) % TW_CUDA_MAX_SEGTABS;
        TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));
        TW_CHECK_CUDA(cudaFree(t->dev));
        TW_CHECK_CUDA(cudaFree(t->partials));
        free(t->host);
    }
    tw_k_seg *k = malloc((size_t)n_segs * sizeof *k);
    t->host = malloc((size_t)n_segs * sizeof *segs);
    TW_ASSERT(k && t->host);
    for (int i = 0; i < n_segs; i++) k[i] = (tw_k_seg){segs[i].offset, segs[i].n_elems, segs[i].is_1d};
    memcpy(t->host, segs, (size_t)n_segs * sizeof *segs);
    t->n = n_segs;
    TW_CHECK_CUDA(cudaMalloc(&t->dev, (size_t)n_segs * sizeof *k));
    TW_CHECK_CUDA(cudaMalloc((void **)&t->partials, (size_t)n_segs * TW_K_SEG_BLOCKS * 2 * sizeof(float)));
    /* Ordered on the stream: earlier updates may still be reading another table. */
    TW_CHECK_CUDA(cudaMemcpyAsync(t->dev, k, (size_t)n_segs * sizeof *k, cudaMemcpyHostToDevice,
                                  cb->stream));
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));   /* k is freed next */
    free(k);
    return t;
}

void tw_cuda_adam_update(tw_backend *be, float *p, float *m, float *v, const float *g,
                         const tw_param_seg *segs, int n_segs, const tw_adam_hparams *h,
                         const tw_update_vals *vals, const int *skip) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    const tw_k_seg *ds = segs_sync(cb, segs, n_segs)->dev;
    TW_CHECK_CUDA(tw_k_adam(cb->stream, p, m, v, g, ds, n_segs, (const tw_k_vals *)vals, skip,
                            (float)(1.0 - h->beta1), (float)h->beta2, (float)(1.0 - h->beta2),
                            (float)h->eps, (float)h->weight_decay, h->decoupled));
}

void tw_cuda_lars_update(tw_backend *be, float *p, float *mu, const float *g,
                         const tw_param_seg *segs, int n_segs, const tw_lars_hparams *h,
                         const tw_update_vals *vals, const int *skip) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    const tw_cuda_segtab *t = segs_sync(cb, segs, n_segs);
    TW_CHECK_CUDA(tw_k_lars(cb->stream, p, mu, t->partials, g, t->dev, n_segs,
                            (const tw_k_vals *)vals, skip, h->momentum, h->weight_decay, h->eta));
}

void tw_cuda_sgd_update(tw_backend *be, float *p, float *mu, const float *g,
                        const tw_param_seg *segs, int n_segs, const tw_sgd_hparams *h,
                        const tw_update_vals *vals, const int *skip) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    const tw_k_seg *ds = segs_sync(cb, segs, n_segs)->dev;
    TW_CHECK_CUDA(tw_k_sgd(cb->stream, p, mu, g, ds, n_segs, (const tw_k_vals *)vals, skip,
                           h->momentum, h->weight_decay, h->nesterov));
}
