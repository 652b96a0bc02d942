/* Barlow Twins loss across ranks (barlow.h). The GEMMs follow from C_ij = Σ_k a0_ki a1_kj / N:
 * ∂L/∂a0 = a1 dCᵀ / N and ∂L/∂a1 = a0 dC / N, each rank over its own rows. Every rank computes
 * the same C and dC (all-reduced, or formed from the gathered rows), so summing the parameter
 * gradients over ranks gives the 1-rank gradient. */
#include "loss/barlow.h"

#include <stdlib.h>

#include "core/log.h"

tw_barlow_opts tw_barlow_pair(int n, int d, float lambda, int gather) {
    return (tw_barlow_opts){.n = n, .d = d, .n_views = 2, .n_terms = 1, .terms = {{0, 1, d, 1.0f}},
                            .lambda = lambda, .gather = gather};
}

tw_barlow_opts tw_barlow_decur(int n, int d, float lambda, int gather, int common, float intra) {
    tw_barlow_opts o = tw_barlow_pair(n, d, lambda, gather);
    o.n_views = 4;
    o.n_terms = 3;
    o.terms[0].common = common > 0 ? common : d;
    o.terms[1] = (tw_barlow_term){0, 2, d, intra};
    o.terms[2] = (tw_barlow_term){1, 3, d, intra};
    return o;
}

void tw_barlow_init(tw_barlow *L, tw_backend *be, const tw_barlow_opts *o, int rank, int n_ranks, int *bad) {
    int n = o->n, d = o->d, in_a_term[TW_BARLOW_MAX_VIEWS] = {0};
    TW_ASSERT(o->n_views >= 2 && o->n_views <= TW_BARLOW_MAX_VIEWS);
    TW_ASSERT(o->n_terms >= 1 && o->n_terms <= TW_BARLOW_MAX_TERMS);
    for (int t = 0; t < o->n_terms; t++) {
        const tw_barlow_term *T = &o->terms[t];
        TW_ASSERT(T->a >= 0 && T->a < o->n_views && T->b >= 0 && T->b < o->n_views && T->a != T->b);
        TW_ASSERT(T->common >= 0 && T->common <= d);
        in_a_term[T->a] = in_a_term[T->b] = 1;
    }
    for (int v = 0; v < o->n_views; v++) TW_ASSERT(in_a_term[v]);
    L->o = *o;
    L->rank = rank;
    L->n_ranks = n_ranks;
    tw_syncbn_init(&L->bn, be, n, d, n_ranks, 0, TW_BN_EPS, TW_BN_MOMENTUM, bad);
    size_t act = (size_t)n * d * sizeof(float), mat = (size_t)d * d * sizeof(float);
    for (int v = 0; v < o->n_views; v++) {
        tw_syncbn_cache_init(&L->cache[v], be, d);
        L->a_all[v] = o->gather ? tw_mem_alloc(be, act * (size_t)n_ranks) : NULL;
        L->a[v] = o->gather ? L->a_all[v] + (size_t)rank * n * d : tw_mem_alloc(be, act);
        L->da[v] = tw_mem_alloc(be, act);
    }
    L->c = tw_mem_alloc(be, mat);
    L->dc = tw_mem_alloc(be, mat);
}

void tw_barlow_free(tw_barlow *L, tw_backend *be) {
    for (int v = 0; v < L->o.n_views; v++) {
        tw_syncbn_cache_free(&L->cache[v], be);
        tw_mem_free(be, L->o.gather ? L->a_all[v] : L->a[v]);
        tw_mem_free(be, L->da[v]);
    }
    tw_mem_free(be, L->c);
    tw_mem_free(be, L->dc);
    tw_syncbn_free(&L->bn, be);
}

double tw_barlow_forward_backward(tw_barlow *L, tw_backend *be, tw_comm *comm, float *const *dz,
                                  const float *const *z) {
    const tw_barlow_opts *o = &L->o;
    int n = o->n, d = o->d;
    tw_reducer red = tw_comm_reducer(comm);
    float inv_n = (float)(1.0 / L->bn.n_global);
    /* Statistics that are not finite raise the bad flag and make C, so the loss, not finite. */
    for (int v = 0; v < o->n_views; v++) tw_syncbn_forward(&L->bn, be, &red, L->a[v], &L->cache[v], z[v], NULL, NULL);
    /* With gather every rank's rows land in a_all (this rank's are already in place). */
    if (o->gather)
        for (int v = 0; v < o->n_views; v++) tw_comm_allgather(comm, L->a_all[v], (size_t)n * d * sizeof(float));
    /* No host decision on the loss here: a step records whole (CUDA graphs); a loss that is not
     * finite makes the gradients so, and the update's check raises the step's flag. Each view's
     * gradient is its first term's (=), then the others' (+=). */
    double loss = 0.0;
    int seen[TW_BARLOW_MAX_VIEWS] = {0};
    for (int t = o->n_terms - 1; t >= 0; t--) {
        const tw_barlow_term *T = &o->terms[t];
        if (o->gather) {
            tw_gemm(be, 1, 0, d, d, n * L->n_ranks, inv_n, L->a_all[T->a], d, L->a_all[T->b], d, 0.0f, L->c, d);
        } else {
            tw_gemm(be, 1, 0, d, d, n, inv_n, L->a[T->a], d, L->a[T->b], d, 0.0f, L->c, d);
            tw_comm_allreduce(comm, L->c, (size_t)d * d, TW_F32, TW_REDUCE_SUM);
        }
        loss += tw_bt_loss(be, L->dc, L->c, d, T->common, o->lambda, T->weight);
        tw_gemm(be, 0, 1, n, d, d, inv_n, L->a[T->b], d, L->dc, d, seen[T->a] ? 1.0f : 0.0f, L->da[T->a], d);
        tw_gemm(be, 0, 0, n, d, d, inv_n, L->a[T->a], d, L->dc, d, seen[T->b] ? 1.0f : 0.0f, L->da[T->b], d);
        seen[T->a] = seen[T->b] = 1;
    }
    for (int v = 0; v < o->n_views; v++)
        tw_syncbn_backward(&L->bn, be, &red, dz[v], NULL, NULL, L->da[v], L->a[v], z[v], &L->cache[v], NULL);
    return loss;
}

void tw_barlow_register(tw_barlow *L, tw_params *P) {
    int v1[1] = {L->o.d};
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
    int d = L->o.d;
    float *ones = malloc((size_t)d * sizeof(float));
    TW_ASSERT(ones);
    for (int j = 0; j < d; j++) ones[j] = 1.0f;
    tw_mem_zero(be, L->bn.run_mean, (size_t)d * sizeof(float));
    tw_mem_from_host(be, L->bn.run_var, ones, (size_t)d * sizeof(float));
    *L->bn.n_batches = 0;
    free(ones);
}
