/* Synchronised 1-D batch norm (syncbn.h): local sums from the backend, an all-reduce, the global
 * mean, the same for the centred values, the inverse std on the host in double, then the
 * backend's normalise step. The
 * backward mirrors it (torch.nn.SyncBatchNorm's formulas, documented in torch/nn/modules/_functions.py). */
#include "model/syncbn.h"

#include <math.h>
#include <stdlib.h>

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
    bn->host = malloc((size_t)2 * d * sizeof(double));
    bn->host_f = malloc((size_t)4 * d * sizeof(float));
    TW_ASSERT(bn->host && bn->host_f);
    bn->sums = tw_mem_alloc(be, (size_t)2 * d * sizeof(float));
}

void tw_syncbn_free(tw_syncbn *bn, tw_backend *be) {
    free(bn->host);
    free(bn->host_f);
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

int tw_syncbn_forward(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, float *y, tw_syncbn_cache *c,
                      const float *x, const float *gamma, const float *beta) {
    int d = bn->d, finite = 1;
    double N = bn->n_global;
    /* Two passes, as torch's variance is computed: the global mean first, then the sums of the
     * centred values (in y, which the normalise step overwrites), so that a feature whose mean is
     * large next to its spread keeps its variance (Σx² - N mean² in fp32 would cancel). */
    tw_bn1d_sums(be, bn->sums, x, bn->n, d);
    tw_reducer_sum(red, bn->sums, (size_t)2 * d);
    tw_mem_to_host(be, bn->host_f, bn->sums, (size_t)2 * d * sizeof(float));
    for (int j = 0; j < d; j++) {
        bn->host[j] = bn->host_f[j] / N;
        if (!isfinite(bn->host[j])) finite = 0;
        bn->host_f[j] = (float)bn->host[j];
        bn->host_f[d + j] = 1.0f;
    }
    if (!finite) return 0;
    tw_mem_from_host(be, c->mean, bn->host_f, (size_t)d * sizeof(float));
    tw_mem_from_host(be, c->inv_std, bn->host_f + d, (size_t)d * sizeof(float));
    tw_bn1d_forward(be, y, x, c->mean, c->inv_std, NULL, NULL, bn->n, d, 0);
    tw_bn1d_sums(be, bn->sums, y, bn->n, d);
    tw_reducer_sum(red, bn->sums, (size_t)2 * d);
    tw_mem_to_host(be, bn->host_f, bn->sums, (size_t)2 * d * sizeof(float));
    for (int j = 0; j < d; j++) {
        /* Σ(x - m) is the rounding left in m; take it out of both the mean and the variance. */
        double shift = bn->host_f[j] / N;
        double var = bn->host_f[d + j] / N - shift * shift;
        if (var < 0) var = 0;
        if (!isfinite(var)) finite = 0;
        bn->host[j] += shift;
        bn->host[d + j] = var;
    }
    if (bn->run_mean) {
        /* torch: running = (1 - m) running + m batch, with the unbiased variance. */
        float *rm = bn->host_f + 2 * d, *rv = bn->host_f + 3 * d;
        double m = bn->momentum, corr = N > 1 ? N / (N - 1) : 1.0;
        tw_mem_to_host(be, rm, bn->run_mean, (size_t)d * sizeof(float));
        tw_mem_to_host(be, rv, bn->run_var, (size_t)d * sizeof(float));
        for (int j = 0; j < d; j++) {
            rm[j] = (float)((1 - m) * rm[j] + m * bn->host[j]);
            rv[j] = (float)((1 - m) * rv[j] + m * bn->host[d + j] * corr);
        }
        tw_mem_from_host(be, bn->run_mean, rm, (size_t)d * sizeof(float));
        tw_mem_from_host(be, bn->run_var, rv, (size_t)d * sizeof(float));
    }
    if (bn->n_batches) (*bn->n_batches)++;
    for (int j = 0; j < d; j++) {
        bn->host_f[j] = (float)bn->host[j];
        bn->host_f[d + j] = (float)(1.0 / sqrt(bn->host[d + j] + bn->eps));
    }
    tw_mem_from_host(be, c->mean, bn->host_f, (size_t)d * sizeof(float));
    tw_mem_from_host(be, c->inv_std, bn->host_f + d, (size_t)d * sizeof(float));
    tw_bn1d_forward(be, y, x, c->mean, c->inv_std, gamma, beta, bn->n, d, bn->relu);
    return finite;
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
    tw_bn1d_backward_sums(be, bn->sums, dy, y, x, c->mean, c->inv_std, bn->n, d, bn->relu);
    /* The local shares are this rank's parameter gradients (sums = [Σdy', Σdy'x̂]); the flat
     * gradient all-reduce adds the other ranks' shares later. */
    if (dbeta) vec_add(be, dbeta, bn->sums, d);
    if (dgamma) vec_add(be, dgamma, bn->sums + d, d);
    tw_reducer_sum(red, bn->sums, (size_t)2 * d);
    tw_bn1d_backward_apply(be, dx, dy, y, x, c->mean, c->inv_std, gamma, bn->sums,
                           (float)bn->n_global, bn->n, d, bn->relu);
}
