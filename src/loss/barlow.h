/* The Barlow Twins loss (Zbontar et al., ICML 2021; facebookresearch/barlowtwins main.py) on the
 * projector outputs of the two views, across ranks: an affine-free synchronised BN of each view,
 * C = bn(z1)ᵀ bn(z2) / N_global by GEMM, either each rank's share of it all-reduced or the
 * normalised embeddings all-gathered and all of C formed on every rank (tw_barlow_init's gather),
 * the loss and dC from the backend's tw_bt_loss, and the backward GEMMs and BN backward with the
 * same global values; several terms (DeCUR's cross- and intra-modal ones) over up to four views. */
#ifndef TW_BARLOW_H
#define TW_BARLOW_H

#include "backend/backend.h"
#include "dist/comm.h"
#include "model/params.h"
#include "model/syncbn.h"

#define TW_BARLOW_MAX_VIEWS 4
#define TW_BARLOW_MAX_TERMS 3

/* One term of the loss: the cross-correlation of views a and b, the diagonal's target 1 for the
 * first `common` dimensions and 0 after (d: the paper's loss), times weight. */
typedef struct tw_barlow_term {
    int a, b;
    int common;
    float weight;
} tw_barlow_term;

/* The loss's shape. The paper's: two views, one term {0, 1, d, 1}. Cross-modal with DeCUR's
 * intra-modal terms (Wang et al., 2023: "Decoupling common and unique representations"): four
 * views (S1, S2, S1', S2'), the cross term {0, 1, common, 1} first and the intra-modal ones
 * {0, 2, d, w}, {1, 3, d, w} after. */
typedef struct tw_barlow_opts {
    int n, d;             /* local rows, embedding width */
    int n_views;          /* 2..TW_BARLOW_MAX_VIEWS, each in some term */
    int n_terms;          /* 1..TW_BARLOW_MAX_TERMS; term 0's C is the one kept (monitors) */
    tw_barlow_term terms[TW_BARLOW_MAX_TERMS];
    float lambda;         /* weight of the off-diagonal terms; 0.0051 in the paper */
    int gather;           /* 1: all-gather the embeddings and form all of C on every rank */
} tw_barlow_opts;

typedef struct tw_barlow {
    tw_barlow_opts o;
    tw_syncbn bn;         /* BatchNorm1d(d, affine=False), shared by every view */
    tw_syncbn_cache cache[TW_BARLOW_MAX_VIEWS];
    int rank, n_ranks;
    float *a_all[TW_BARLOW_MAX_VIEWS]; /* [n n_ranks, d] with gather: every rank's rows, this rank's at rank n */
    float *a[TW_BARLOW_MAX_VIEWS];     /* [n, d] normalised embeddings (in a_all with gather) */
    float *da[TW_BARLOW_MAX_VIEWS];    /* [n, d] their gradients */
    float *c, *dc;        /* [d, d] a term's cross-correlation and ∂loss/∂C; term 0's after a step */
    int id_stats[3];      /* arena entries: bn.running_mean, bn.running_var, bn.num_batches_tracked */
} tw_barlow;

/* The paper's loss on views 0 and 1. */
tw_barlow_opts tw_barlow_pair(int n, int d, float lambda, int gather);
/* DeCUR's: S1 (view 0) against S2 (view 1) with `common` common dimensions (0: all d), then
 * intra times S1 against S1' (view 2) and S2 against S2' (view 3). */
tw_barlow_opts tw_barlow_decur(int n, int d, float lambda, int gather, int common, float intra);

/* bad: the owner's backend flag the BN raises on statistics that are not finite (syncbn.h).
 * gather: 0, each rank forms its share of each C (a GEMM over its n rows) and one all-reduce of
 * d x d floats sums them; 1, one all-gather of every view's normalised embeddings (n n_ranks d
 * floats each) and every rank forms all of C (a GEMM over the global rows): fewer bytes where the
 * global batch is under d / 2, more FLOPs; both exact, and with gather C is bit for bit the
 * one-rank C. */
void tw_barlow_init(tw_barlow *L, tw_backend *be, const tw_barlow_opts *o, int rank, int n_ranks, int *bad);
void tw_barlow_free(tw_barlow *L, tw_backend *be);
/* The BN's buffers under torch's names (bn.running_mean, bn.running_var, bn.num_batches_tracked:
 * the BarlowTwins module's self.bn), before tw_params_alloc. */
void tw_barlow_register(tw_barlow *L, tw_params *P);
/* After tw_params_alloc: points the BN's running statistics into the arena. */
void tw_barlow_bind(tw_barlow *L, const tw_params *P);
/* Running mean 0, running var 1, no batches tracked (torch's initial BN state). */
void tw_barlow_reset(tw_barlow *L, tw_backend *be);

/* The loss (returned, the same on every rank: Σ weight × term) and dz[v] (=) [n, d] from z[v]
 * [n, d] for every view; the BN sees the views in order (its running statistics move once per
 * view, as torch's self.bn called on each). The terms run last to first, one value op each
 * (tw_bt_loss: the step's replay hands back n_terms values). A loss that is not finite (as when
 * the embeddings' statistics are not) is returned as it is, and dz is not finite then either. */
double tw_barlow_forward_backward(tw_barlow *L, tw_backend *be, tw_comm *comm, float *const *dz,
                                  const float *const *z);

#endif
