/* Synchronised batch norm (syncbn.h), 1-D (a plan of f32 rows made here) or 2-D (the backbone's
 * plan). Forward: the local f64 sums of x - K for a shift K every rank holds alike (the running
 * mean), one all-reduce of them, the global mean and variance on the backend, then the normalise
 * step and the running statistics' update. The backward mirrors
 * torch.nn.SyncBatchNorm's formulas (torch/nn/modules/_functions.py). */
#include "model/syncbn.h"

#include "core/log.h"

static void init_common(tw_syncbn *bn, tw_backend *be, int n, int d, int n_ranks, float eps,
                        float momentum, int *bad) {
    TW_ASSERT(bad && n >= 1 && d >= 1 && n_ranks >= 1);
    bn->n = n;
    bn->d = d;
    bn->eps = eps;
    bn->momentum = momentum;
    bn->n_global = (double)n * n_ranks;
    bn->run_mean = bn->run_var = NULL;
    bn->n_batches = NULL;
    bn->bad = bad;
    bn->n_reductions = 0;
    bn->sums = tw_mem_alloc(be, (size_t)2 * d * sizeof(double));
    bn->stats = tw_mem_alloc(be, (size_t)2 * d * sizeof(double));
    bn->zero = tw_mem_alloc(be, (size_t)d * sizeof(float));
    tw_mem_zero(be, bn->zero, (size_t)d * sizeof(float));
}

void tw_syncbn_init(tw_syncbn *bn, tw_backend *be, int n, int d, int n_ranks, int relu, float eps,
                    float momentum, int *bad) {
    init_common(bn, be, n, d, n_ranks, eps, momentum, bad);
    tw_bn_desc desc = {n, d, 1, 1, TW_LAYOUT_NHWC, relu, eps, momentum, 1};
    tw_err err = {0};
    if (tw_bn_plan_make(be, &bn->plan, &desc, &err) != TW_OK)
        tw_fatal("tw_syncbn_init", err.msg, __FILE__, __LINE__);
    bn->own_plan = 1;
}

void tw_syncbn_init_2d(tw_syncbn *bn, tw_backend *be, tw_bn_plan *plan, const tw_bn_desc *d,
                       int n_ranks, int *bad) {
    init_common(bn, be, d->n * d->h * d->w, d->c, n_ranks, d->eps, d->momentum, bad);
    bn->plan = plan;
    bn->own_plan = 0;
}

void tw_syncbn_free(tw_syncbn *bn, tw_backend *be) {
    tw_mem_free(be, bn->sums);
    tw_mem_free(be, bn->stats);
    tw_mem_free(be, bn->zero);
    if (bn->own_plan) tw_bn_plan_free(be, bn->plan);
}

void tw_syncbn_cache_init(tw_syncbn_cache *c, tw_backend *be, int d) {
    c->mean = tw_mem_alloc(be, (size_t)d * sizeof(float));
    c->inv_std = tw_mem_alloc(be, (size_t)d * sizeof(float));
}

void tw_syncbn_cache_free(tw_syncbn_cache *c, tw_backend *be) {
    tw_mem_free(be, c->mean);
    tw_mem_free(be, c->inv_std);
}

static void forward(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, tw_tensor *y,
                    tw_syncbn_cache *c, const tw_tensor *x, const float *gamma, const float *beta) {
    size_t d = (size_t)bn->d;
    /* The shift: the running mean (the same on every rank, and near the batch mean once training
     * has run a while), or 0 untracked. In f64 it only trims the sums' magnitude. */
    const float *shift = bn->run_mean ? bn->run_mean : bn->zero;
    tw_bn_sums(be, bn->plan, bn->sums, x, shift);
    tw_reducer_sum(red, bn->sums, 2 * d);
    bn->n_reductions++;
    tw_bn_stats_finish(be, c->mean, c->inv_std, bn->stats, bn->bad, bn->sums, shift, bn->d, bn->n_global,
                       bn->eps);
    tw_bn_forward_stats(be, bn->plan, y, x, c->mean, c->inv_std, gamma, beta);
    if (bn->run_mean) {
        /* torch: running = (1 - m) running + m batch, with the unbiased variance. */
        double N = bn->n_global, unbias = N > 1 ? N / (N - 1) : 1.0;
        tw_bn_running_update(be, bn->run_mean, bn->run_var, bn->stats, bn->d, bn->momentum, unbias, bn->bad);
    }
    if (bn->n_batches) (*bn->n_batches)++;
}

/* The rows of a [n, d] f32 matrix as the 1-D plan's tensor. */
static tw_tensor rows(const tw_syncbn *bn, const float *p) {
    return (tw_tensor){(void *)p, bn->n, bn->d, 1, 1, TW_F32, TW_LAYOUT_NHWC};
}

void tw_syncbn_forward(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, float *y,
                       tw_syncbn_cache *c, const float *x, const float *gamma, const float *beta) {
    TW_ASSERT(bn->own_plan);
    tw_tensor ty = rows(bn, y), tx = rows(bn, x);
    forward(bn, be, red, &ty, c, &tx, gamma, beta);
}

void tw_syncbn_forward_2d(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, tw_tensor *y,
                          tw_syncbn_cache *c, const tw_tensor *x, const float *gamma,
                          const float *beta) {
    TW_ASSERT(!bn->own_plan);
    forward(bn, be, red, y, c, x, gamma, beta);
}

/* Both backwards: this rank's sums (its shares of dgamma and dbeta, = or +=), one all-reduce of
 * them, then dx with the global sums. */
static void backward(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, tw_tensor *dx,
                     float *dgamma, float *dbeta, int accumulate, const tw_tensor *dy,
                     const tw_tensor *y, const tw_tensor *x, const tw_syncbn_cache *c,
                     const float *gamma) {
    tw_bn_backward_sums(be, bn->plan, bn->sums, dgamma, dbeta, accumulate, dy, x, y, c->mean, c->inv_std);
    tw_reducer_sum(red, bn->sums, (size_t)2 * bn->d);
    bn->n_reductions++;
    tw_bn_backward_stats(be, bn->plan, dx, dy, x, y, c->mean, c->inv_std, gamma, bn->sums, bn->n_global);
}

void tw_syncbn_backward(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, float *dx, float *dgamma,
                        float *dbeta, const float *dy, const float *y, const float *x,
                        const tw_syncbn_cache *c, const float *gamma) {
    TW_ASSERT(bn->own_plan);
    tw_tensor tdx = rows(bn, dx), tdy = rows(bn, dy), ty = rows(bn, y), tx = rows(bn, x);
    backward(bn, be, red, &tdx, dgamma, dbeta, 1, &tdy, &ty, &tx, c, gamma);
}

void tw_syncbn_backward_2d(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, tw_tensor *dx,
                           float *dgamma, float *dbeta, const tw_tensor *dy, const tw_tensor *y,
                           const tw_tensor *x, const tw_syncbn_cache *c, const float *gamma) {
    TW_ASSERT(!bn->own_plan && dgamma && dbeta);
    backward(bn, be, red, dx, dgamma, dbeta, 0, dy, y, x, c, gamma);
}
