/* Barlow Twins loss across ranks (barlow.h). The GEMMs follow from C_ij = Σ_k a0_ki a1_kj / N:
 * ∂L/∂a0 = a1 dCᵀ / N and ∂L/∂a1 = a0 dC / N, each rank over its own rows. Every rank computes
 * the same C and dC (all-reduced, or formed from the gathered rows), so summing the parameter
 * gradients over ranks gives the 1-rank gradient. */
#include "loss/barlow.h"

#include <stdlib.h>

#include "core/log.h"

void tw_barlow_init(tw_barlow *L, tw_backend *be, int n, int d, int rank, int n_ranks, float lambda,
                    int gather, int *bad) {
    L->n = n;
    L->d = d;
    L->lambda = lambda;
    L->gather = gather;
    L->rank = rank;
    L->n_ranks = n_ranks;
    tw_syncbn_init(&L->bn, be, n, d, n_ranks, 0, TW_BN_EPS, TW_BN_MOMENTUM, bad);
    size_t act = (size_t)n * d * sizeof(float), mat = (size_t)d * d * sizeof(float);
    for (int v = 0; v < 2; v++) {
        tw_syncbn_cache_init(&L->cache[v], be, d);
        L->a_all[v] = gather ? tw_mem_alloc(be, act * (size_t)n_ranks) : NULL;
        L->a[v] = gather ? L->a_all[v] + (size_t)rank * n * d : tw_mem_alloc(be, act);
        L->da[v] = tw_mem_alloc(be, act);
    }
    L->c = tw_mem_alloc(be, mat);
    L->dc = tw_mem_alloc(be, mat);
}

void tw_barlow_free(tw_barlow *L, tw_backend *be) {
    for (int v = 0; v < 2; v++) {
        tw_syncbn_cache_free(&L->cache[v], be);
        tw_mem_free(be, L->gather ? L->a_all[v] : L->a[v]);
        tw_mem_free(be, L->da[v]);
    }
    tw_mem_free(be, L->c);
    tw_mem_free(be, L->dc);
    tw_syncbn_free(&L->bn, be);
}

double tw_barlow_forward_backward(tw_barlow *L, tw_backend *be, tw_comm *comm, float *dz0,
                                  float *dz1, const float *z0, const float *z1) {
    int n = L->n, d = L->d;
    tw_reducer red = tw_comm_reducer(comm);
    float inv_n = (float)(1.0 / L->bn.n_global);
    /* Statistics that are not finite raise the bad flag and make C, so the loss, not finite. */
    tw_syncbn_forward(&L->bn, be, &red, L->a[0], &L->cache[0], z0, NULL, NULL);
    tw_syncbn_forward(&L->bn, be, &red, L->a[1], &L->cache[1], z1, NULL, NULL);
    if (L->gather) {
        /* Every rank's rows land in a_all (this rank's are already in place), then all of C. */
        for (int v = 0; v < 2; v++) tw_comm_allgather(comm, L->a_all[v], (size_t)n * d * sizeof(float));
        tw_gemm(be, 1, 0, d, d, n * L->n_ranks, inv_n, L->a_all[0], d, L->a_all[1], d, 0.0f, L->c, d);
    } else {
        tw_gemm(be, 1, 0, d, d, n, inv_n, L->a[0], d, L->a[1], d, 0.0f, L->c, d);
        tw_comm_allreduce(comm, L->c, (size_t)d * d, TW_F32, TW_REDUCE_SUM);
    }
    /* No host decision on the loss here: a step records whole (CUDA graphs); a loss that is not
     * finite makes the gradients so, and the update's check raises the step's flag. */
    double loss = tw_bt_loss(be, L->dc, L->c, d, L->lambda);
    tw_gemm(be, 0, 1, n, d, d, inv_n, L->a[1], d, L->dc, d, 0.0f, L->da[0], d);
    tw_gemm(be, 0, 0, n, d, d, inv_n, L->a[0], d, L->dc, d, 0.0f, L->da[1], d);
    tw_syncbn_backward(&L->bn, be, &red, dz0, NULL, NULL, L->da[0], L->a[0], z0, &L->cache[0], NULL);
    tw_syncbn_backward(&L->bn, be, &red, dz1, NULL, NULL, L->da[1], L->a[1], z1, &L->cache[1], NULL);
    return loss;
}

void tw_barlow_register(tw_barlow *L, tw_params *P) {
    int v1[1] = {L->d};
    L->id_stats[0] = tw_params_add(P, "bn.running_mean", TW_PARAM_BUFFER, 1, v1);
    L->id_stats[1] = tw_params_add(P, "bn.running_var", TW_PARAM_BUFFER, 1, v1);
    L->id_stats[2] = tw_params_add(P, "bn.num_batches_tracked", TW_PARAM_COUNTER, 0, NULL);
}

void tw_barlow_bind(tw_barlow *L, const tw_params *P) {
    L->bn.run_mean = tw_params_ptr(P, L->id_stats[0]);
    L->bn.run_var = tw_params_ptr(P, L->id_stats[1]);
    L->bn.n_batches = tw_params_counter(P, L->id_stats[2]);
}

void tw_barlow_reset(tw_barlow *L, tw_backend *be) {
    int d = L->d;
    float *ones = malloc((size_t)d * sizeof(float));
    TW_ASSERT(ones);
    for (int j = 0; j < d; j++) ones[j] = 1.0f;
    tw_mem_zero(be, L->bn.run_mean, (size_t)d * sizeof(float));
    tw_mem_from_host(be, L->bn.run_var, ones, (size_t)d * sizeof(float));
    *L->bn.n_batches = 0;
    free(ones);
}
