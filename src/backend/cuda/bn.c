/* Batch norm (2-D, per channel over n, h, w) with the ReLU fused, on NHWC tensors: plans own the
 * statistics scratch; the caller-owned per-call state (ws) is the ReLU's keep mask, one bit per
 * element. The kernels are kernels/bn.cu. */
#include <stdlib.h>

#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

struct tw_bn_plan {
    tw_plan_head head;   /* y: the input's shape, NHWC; ws_bytes: the ReLU mask */
    tw_bn_desc d;
    int64_t m_rows;      /* n h w */
    float *partial;      /* [TW_K_BN_ROW_BLOCKS, 3, c] statistics of each row block */
    float *coef;         /* [2, c] scale and shift of the last forward */
    double *partial_sums;   /* [TW_K_BN_ROW_BLOCKS, 2, c] the external-statistics ops' sums */
    int bf16;            /* the plan's tensors are bf16 (the activation dtype; never f32 rows) */
};

void tw_cuda_bn_plan_free(tw_backend *be, tw_bn_plan *p) {
    if (!p) return;
    TW_CHECK_CUDA(cudaStreamSynchronize(tw_cuda_of(be)->stream));
    cudaFree(p->partial);
    cudaFree(p->coef);
    cudaFree(p->partial_sums);
    free(p);
}

tw_status tw_cuda_bn_plan_make(tw_backend *be, tw_bn_plan **out, const tw_bn_desc *d,
                               tw_err *err) {
    *out = NULL;
    TW_ASSERT(!tw_cuda_of(be)->recording);
    if (d->n <= 0 || d->c <= 0 || d->h <= 0 || d->w <= 0)
        return tw_err_set(err, TW_E_SHAPE, "cuda batch norm: bad shape [%d, %d, %d, %d]", d->n,
                          d->c, d->h, d->w);
    if (d->layout != TW_LAYOUT_NHWC)
        return tw_err_set(err, TW_E_UNSUPPORTED, "cuda batch norm: layout %s (the CUDA backend "
                          "keeps activations nhwc)", tw_layout_name(d->layout));
    if (!(d->eps > 0.f) || !(d->momentum >= 0.f && d->momentum <= 1.f))
        return tw_err_set(err, TW_E_RANGE, "cuda batch norm: eps %g must be > 0 and momentum %g "
                          "in [0, 1]", d->eps, d->momentum);
    if (d->f32_rows && (d->h != 1 || d->w != 1))
        return tw_err_set(err, TW_E_SHAPE, "cuda batch norm: f32 rows must be [n, d, 1, 1], got "
                          "[%d, %d, %d, %d]", d->n, d->c, d->h, d->w);
    tw_bn_plan *p = calloc(1, sizeof *p);
    if (!p) return tw_err_set(err, TW_E_NOMEM, "cuda batch norm: out of host memory");
    p->d = *d;
    p->m_rows = (int64_t)d->n * d->h * d->w;
    p->bf16 = !d->f32_rows && tw_cuda_of(be)->bf16;
    p->head.y = (tw_tensor){NULL, d->n, d->c, d->h, d->w, p->bf16 ? TW_BF16 : TW_F32, TW_LAYOUT_NHWC};
    p->head.ws_bytes = d->fuse_relu && !d->f32_rows ? ((size_t)p->m_rows * d->c + 31) / 32 * sizeof(uint32_t) : 0;
    TW_CHECK_CUDA(cudaMalloc((void **)&p->partial, (size_t)TW_K_BN_ROW_BLOCKS * 3 * d->c * sizeof(float)));
    TW_CHECK_CUDA(cudaMalloc((void **)&p->coef, 2 * (size_t)d->c * sizeof(float)));
    TW_CHECK_CUDA(cudaMalloc((void **)&p->partial_sums,
                             (size_t)TW_K_BN_ROW_BLOCKS * 2 * d->c * sizeof(double)));
    *out = p;
    return TW_OK;
}

void tw_cuda_bn_forward_train(tw_backend *be, tw_bn_plan *p, tw_tensor *y, float *save_mean,
                              float *save_var, void *ws, const tw_tensor *x, const float *gamma,
                              const float *beta, float *run_mean, float *run_var) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(!p->d.f32_rows);   /* the dispatch checked the tensors against the plan */
    size_t n_elems = (size_t)p->m_rows * p->d.c;
    TW_CHECK_CUDA(tw_k_bn_forward_train(cb->stream, tw_cuda_grid(cb, n_elems), y->data, save_mean,
                                        save_var, p->d.fuse_relu ? ws : NULL, p->partial, p->coef,
                                        x->data, gamma, beta, run_mean, run_var, cb->bf16,
                                        p->m_rows, p->d.c, p->d.fuse_relu, p->d.eps,
                                        p->d.momentum));
}

void tw_cuda_bn_forward_eval(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x,
                             const float *gamma, const float *beta, const float *run_mean,
                             const float *run_var) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(!p->d.f32_rows);   /* the dispatch checked the tensors against the plan */
    size_t n_elems = (size_t)p->m_rows * p->d.c;
    TW_CHECK_CUDA(tw_k_bn_forward_eval(cb->stream, tw_cuda_grid(cb, n_elems), y->data, p->coef,
                                       x->data, gamma, beta, run_mean, run_var, cb->bf16,
                                       p->m_rows, p->d.c, p->d.fuse_relu, p->d.eps));
}

/* dx (=), dgamma (=), dbeta (=). */
void tw_cuda_bn_backward(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, float *dgamma,
                         float *dbeta, const tw_tensor *dy, const tw_tensor *x,
                         const float *save_mean, const float *save_var, const void *ws,
                         const float *gamma) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(!p->d.f32_rows);   /* the dispatch checked the tensors against the plan */
    size_t n_elems = (size_t)p->m_rows * p->d.c;
    TW_CHECK_CUDA(tw_k_bn_backward(cb->stream, tw_cuda_grid(cb, n_elems), dx->data, dgamma, dbeta,
                                   p->partial, dy->data, x->data,
                                   p->d.fuse_relu ? (const uint32_t *)ws : NULL, save_mean,
                                   save_var, gamma, cb->bf16, p->m_rows, p->d.c, p->d.eps));
}

/* ---- statistics from outside (the synchronised BN) -------------------------------------------- */

void tw_cuda_bn_sums(tw_backend *be, tw_bn_plan *p, double *sums, const tw_tensor *x, const float *shift) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_CHECK_CUDA(tw_k_bn_sums(cb->stream, sums, p->partial_sums, NULL, NULL, 0, x->data, NULL, NULL,
                               shift, NULL, p->bf16, p->m_rows, p->d.c, 0, 0));
}

void tw_cuda_bn_stats_finish(tw_backend *be, float *mean, float *inv_std, double *stats, int *bad,
                             const double *sums, const float *shift, int c, double n_global, float eps) {
    TW_CHECK_CUDA(tw_k_bn_stats_finish(tw_cuda_of(be)->stream, mean, inv_std, stats, bad, sums, shift,
                                       c, n_global, eps));
}

void tw_cuda_bn_forward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x,
                              const float *mean, const float *inv_std, const float *gamma,
                              const float *beta) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    size_t n_elems = (size_t)p->m_rows * p->d.c;
    TW_CHECK_CUDA(tw_k_bn_forward_stats(cb->stream, tw_cuda_grid(cb, n_elems), y->data, x->data,
                                        mean, inv_std, gamma, beta, p->bf16, p->m_rows, p->d.c,
                                        p->d.fuse_relu));
}

void tw_cuda_bn_backward_sums(tw_backend *be, tw_bn_plan *p, double *sums, float *dgamma, float *dbeta,
                              int accumulate, const tw_tensor *dy, const tw_tensor *x,
                              const tw_tensor *y, const float *mean, const float *inv_std) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_CHECK_CUDA(tw_k_bn_sums(cb->stream, sums, p->partial_sums, dgamma, dbeta, accumulate, x->data,
                               dy->data, y->data, mean, inv_std, p->bf16, p->m_rows, p->d.c, 1,
                               p->d.fuse_relu));
}

void tw_cuda_bn_backward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, const tw_tensor *dy,
                               const tw_tensor *x, const tw_tensor *y, const float *mean,
                               const float *inv_std, const float *gamma, const double *global_sums,
                               double n_global) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    size_t n_elems = (size_t)p->m_rows * p->d.c;
    TW_CHECK_CUDA(tw_k_bn_backward_stats(cb->stream, tw_cuda_grid(cb, n_elems), dx->data, dy->data,
                                         x->data, y->data, mean, inv_std, gamma, global_sums,
                                         n_global, p->bf16, p->m_rows, p->d.c, p->d.fuse_relu));
}

void tw_cuda_bn_running_update(tw_backend *be, float *run_mean, float *run_var, const double *stats,
                               int c, float momentum, double unbias, const int *skip) {
    TW_CHECK_CUDA(tw_k_bn_running_update(tw_cuda_of(be)->stream, run_mean, run_var, stats, c, momentum,
                                         unbias, skip));
}
