/* Synchronised batch norm (syncbn.h), 1-D (the projector's rows, the bn1d ops) or 2-D (the
 * backbone's planes, a BN plan's external-statistics ops). Forward: the local sums of x - K for a
 * shift K every rank holds alike (the running mean), one all-reduce of them, the global mean and
 * variance on the host in double, then the backend's normalise step; a second pass about the
 * global mean only where K was too far from it. The running statistics wait for
 * tw_syncbn_commit. The backward mirrors torch.nn.SyncBatchNorm's formulas
 * (torch/nn/modules/_functions.py). */
#include "model/syncbn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

void tw_syncbn_init(tw_syncbn *bn, tw_backend *be, int n, int d, int n_ranks, int relu, float eps,
                    float momentum) {
    bn->n = n;
    bn->d = d;
    bn->relu = relu;
    bn->eps = eps;
    bn->momentum = momentum;
    bn->n_global = (double)n * n_ranks;
    bn->run_mean = bn->run_var = NULL;
    bn->n_batches = NULL;
    bn->n_pending = 0;
    bn->n_reductions = 0;
    bn->plan = NULL;
    bn->host = malloc((size_t)2 * d * sizeof(double));
    bn->host_f = malloc((size_t)4 * d * sizeof(float));
    bn->pending = malloc((size_t)TW_SYNCBN_MAX_PENDING * 2 * d * sizeof(double));
    TW_ASSERT(bn->host && bn->host_f && bn->pending);
    bn->sums = tw_mem_alloc(be, (size_t)2 * d * sizeof(float));
}

void tw_syncbn_init_2d(tw_syncbn *bn, tw_backend *be, tw_bn_plan *plan, const tw_bn_desc *d,
                       int n_ranks) {
    tw_syncbn_init(bn, be, d->n * d->h * d->w, d->c, n_ranks, d->fuse_relu, d->eps, d->momentum);
    bn->plan = plan;
}

void tw_syncbn_free(tw_syncbn *bn, tw_backend *be) {
    free(bn->host);
    free(bn->host_f);
    free(bn->pending);
    tw_mem_free(be, bn->sums);
}

void tw_syncbn_cache_init(tw_syncbn_cache *c, tw_backend *be, int d) {
    c->mean = tw_mem_alloc(be, (size_t)d * sizeof(float));
    c->inv_std = tw_mem_alloc(be, (size_t)d * sizeof(float));
}

void tw_syncbn_cache_free(tw_syncbn_cache *c, tw_backend *be) {
    tw_mem_free(be, c->mean);
    tw_mem_free(be, c->inv_std);
}

/* One pass about the shift K in c->mean (c->inv_std holds ones): the local sums of x - K and
 * (x - K)² (1-D: through y = x - K), one all-reduce of both, then host[j] = K + S1/N and host[d + j] = S2/N - (S1/N)²
 * (biased). Returns -1 when a statistic is not finite, 0 when K was too far from the mean for
 * some feature (further than a quarter of its standard deviation: S2/N is then var (1 + 1/16) at
 * most, so the subtraction loses next to nothing against centred sums), else 1. The verdict
 * follows the reduced sums, so it is the same on every rank. */
static int shifted_pass(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, tw_tensor *y,
                        tw_syncbn_cache *c, const tw_tensor *x) {
    int d = bn->d, verdict = 1, finite = 1;
    double N = bn->n_global;
    if (bn->plan) {
        tw_bn_sums(be, bn->plan, bn->sums, x, c->mean);
    } else {
        tw_bn1d_forward(be, y->data, x->data, c->mean, c->inv_std, NULL, NULL, bn->n, d, 0);
        tw_bn1d_sums(be, bn->sums, y->data, bn->n, d);
    }
    tw_reducer_sum(red, bn->sums, (size_t)2 * d);
    bn->n_reductions++;
    tw_mem_to_host(be, bn->host_f, bn->sums, (size_t)2 * d * sizeof(float));
    tw_mem_to_host(be, bn->host_f + 2 * d, c->mean, (size_t)d * sizeof(float));
    for (int j = 0; j < d; j++) {
        double shift = bn->host_f[j] / N;
        double var = bn->host_f[d + j] / N - shift * shift;
        if (var < 0) var = 0;
        bn->host[j] = bn->host_f[2 * d + j] + shift;
        bn->host[d + j] = var;
        if (!isfinite(bn->host[j]) || !isfinite(var)) finite = 0;
        if (16 * shift * shift > var) verdict = 0;
    }
    return finite ? verdict : -1;
}

/* y = [relu](gamma (x - mean) inv_std + beta) with the layer's backend ops. */
static void normalise(tw_syncbn *bn, tw_backend *be, tw_tensor *y, const tw_syncbn_cache *c,
                      const tw_tensor *x, const float *gamma, const float *beta) {
    if (bn->plan) tw_bn_forward_stats(be, bn->plan, y, x, c->mean, c->inv_std, gamma, beta);
    else tw_bn1d_forward(be, y->data, x->data, c->mean, c->inv_std, gamma, beta, bn->n, bn->d, bn->relu);
}

static int forward(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, tw_tensor *y,
                   tw_syncbn_cache *c, const tw_tensor *x, const float *gamma, const float *beta) {
    int d = bn->d;
    TW_ASSERT(bn->n_pending < TW_SYNCBN_MAX_PENDING);
    /* The shift: the running mean (the same on every rank, and near the batch mean once training
     * has run a while), or 0 untracked. Where it is too far off (early steps, or a feature whose
     * mean is large next to its spread), a second pass about the global mean: two passes, as
     * torch's variance, so Σx² - N mean² in fp32 never cancels the variance away. */
    for (int j = 0; j < d; j++) bn->host_f[j] = 1.0f;
    tw_mem_from_host(be, c->inv_std, bn->host_f, (size_t)d * sizeof(float));
    if (bn->run_mean) tw_mem_copy(be, c->mean, bn->run_mean, (size_t)d * sizeof(float));
    else tw_mem_zero(be, c->mean, (size_t)d * sizeof(float));
    int verdict = shifted_pass(bn, be, red, y, c, x);
    if (verdict == 0) {
        for (int j = 0; j < d; j++) bn->host_f[j] = (float)bn->host[j];
        tw_mem_from_host(be, c->mean, bn->host_f, (size_t)d * sizeof(float));
        verdict = shifted_pass(bn, be, red, y, c, x);
    }
    /* Not finite: y is still normalised (with the statistics as they are), so that no stale
     * output is ever read as this step's; the caller drops the step. */
    if (verdict > 0)
        memcpy(bn->pending + (size_t)bn->n_pending++ * 2 * d, bn->host, (size_t)2 * d * sizeof(double));
    for (int j = 0; j < d; j++) {
        bn->host_f[j] = (float)bn->host[j];
        bn->host_f[d + j] = (float)(1.0 / sqrt(bn->host[d + j] + bn->eps));
    }
    tw_mem_from_host(be, c->mean, bn->host_f, (size_t)d * sizeof(float));
    tw_mem_from_host(be, c->inv_std, bn->host_f + d, (size_t)d * sizeof(float));
    normalise(bn, be, y, c, x, gamma, beta);
    return verdict > 0;
}

/* The rows of a [n, d] f32 matrix as a tensor (the 1-D layer's operands). */
static tw_tensor rows(const tw_syncbn *bn, const float *p) {
    return (tw_tensor){(void *)p, bn->n, bn->d, 1, 1, TW_F32, TW_LAYOUT_NCHW};
}

int tw_syncbn_forward(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, float *y, tw_syncbn_cache *c,
                      const float *x, const float *gamma, const float *beta) {
    TW_ASSERT(!bn->plan);
    tw_tensor ty = rows(bn, y), tx = rows(bn, x);
    return forward(bn, be, red, &ty, c, &tx, gamma, beta);
}

int tw_syncbn_forward_2d(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, tw_tensor *y,
                         tw_syncbn_cache *c, const tw_tensor *x, const float *gamma,
                         const float *beta) {
    TW_ASSERT(bn->plan);
    return forward(bn, be, red, y, c, x, gamma, beta);
}

void tw_syncbn_commit(tw_syncbn *bn, tw_backend *be, int accepted) {
    int d = bn->d, k = bn->n_pending;
    bn->n_pending = 0;
    if (!accepted || !k) return;
    if (bn->run_mean) {
        /* torch: running = (1 - m) running + m batch, with the unbiased variance, once per
         * forward in the order they ran. */
        float *rm = bn->host_f + 2 * d, *rv = bn->host_f + 3 * d;
        double m = bn->momentum, N = bn->n_global, corr = N > 1 ? N / (N - 1) : 1.0;
        tw_mem_to_host(be, rm, bn->run_mean, (size_t)d * sizeof(float));
        tw_mem_to_host(be, rv, bn->run_var, (size_t)d * sizeof(float));
        for (int i = 0; i < k; i++) {
            const double *st = bn->pending + (size_t)i * 2 * d;
            for (int j = 0; j < d; j++) {
                rm[j] = (float)((1 - m) * rm[j] + m * st[j]);
                rv[j] = (float)((1 - m) * rv[j] + m * st[d + j] * corr);
            }
        }
        tw_mem_from_host(be, bn->run_mean, rm, (size_t)d * sizeof(float));
        tw_mem_from_host(be, bn->run_var, rv, (size_t)d * sizeof(float));
    }
    if (bn->n_batches) *bn->n_batches += k;
}

/* v += s over d f32 elements of backend memory, through the op interface's element-wise add. */
static void vec_add(tw_backend *be, float *v, const float *s, int d) {
    tw_tensor tv = {v, 1, d, 1, 1, TW_F32, TW_LAYOUT_NCHW};
    tw_tensor ts = {(void *)s, 1, d, 1, 1, TW_F32, TW_LAYOUT_NCHW};
    tw_add(be, &tv, &tv, &ts);
}

void tw_syncbn_backward(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, float *dx, float *dgamma,
                        float *dbeta, const float *dy, const float *y, const float *x,
                        const tw_syncbn_cache *c, const float *gamma) {
    int d = bn->d;
    TW_ASSERT(!bn->plan);
    tw_bn1d_backward_sums(be, bn->sums, dy, y, x, c->mean, c->inv_std, bn->n, d, bn->relu);
    /* The local shares are this rank's parameter gradients (sums = [Σdy', Σdy'x̂]); the flat
     * gradient all-reduce adds the other ranks' shares later. Both sums go in one all-reduce. */
    if (dbeta) vec_add(be, dbeta, bn->sums, d);
    if (dgamma) vec_add(be, dgamma, bn->sums + d, d);
    tw_reducer_sum(red, bn->sums, (size_t)2 * d);
    tw_bn1d_backward_apply(be, dx, dy, y, x, c->mean, c->inv_std, gamma, bn->sums,
                           (float)bn->n_global, bn->n, d, bn->relu);
}

void tw_syncbn_backward_2d(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, tw_tensor *dx,
                           float *dgamma, float *dbeta, const tw_tensor *dy, const tw_tensor *y,
                           const tw_tensor *x, const tw_syncbn_cache *c, const float *gamma) {
    size_t d = (size_t)bn->d;
    TW_ASSERT(bn->plan);
    tw_bn_backward_sums(be, bn->plan, bn->sums, dy, x, y, c->mean, c->inv_std);
    tw_mem_copy(be, dbeta, bn->sums, d * sizeof(float));
    tw_mem_copy(be, dgamma, bn->sums + d, d * sizeof(float));
    tw_reducer_sum(red, bn->sums, 2 * d);
    tw_bn_backward_stats(be, bn->plan, dx, dy, x, y, c->mean, c->inv_std, gamma, bn->sums,
                         (float)bn->n_global);
}
