/* The Barlow Twins loss (Zbontar et al., ICML 2021; facebookresearch/barlowtwins main.py) on the
 * projector outputs of the two views, across ranks: an affine-free synchronised BN of each view,
 * C = bn(z1)ᵀ bn(z2) / N_global by GEMM, either each rank's share of it all-reduced or the
 * normalised embeddings all-gathered and all of C formed on every rank (tw_barlow_init's gather),
 * the loss and dC from the backend's tw_bt_loss, and the backward GEMMs and BN backward with the
 * same global values. */
#ifndef TW_BARLOW_H
#define TW_BARLOW_H

#include "backend/backend.h"
#include "dist/comm.h"
#include "model/params.h"
#include "model/syncbn.h"

typedef struct tw_barlow {
    int n, d;             /* local rows, embedding width */
    float lambda;         /* weight of the off-diagonal terms; 0.0051 in the paper */
    tw_syncbn bn;         /* BatchNorm1d(d, affine=False), shared by both views */
    tw_syncbn_cache cache[2];
    int gather;           /* 1: all-gather the embeddings and form all of C on every rank */
    int rank, n_ranks;
    float *a_all[2];      /* [n n_ranks, d] with gather: every rank's rows, this rank's at rank n */
    float *a[2];          /* [n, d] normalised embeddings of view 0 and 1 (in a_all with gather) */
    float *da[2];         /* [n, d] their gradients */
    float *c, *dc;        /* [d, d] cross-correlation and ∂loss/∂C */
    int id_stats[3];      /* arena entries: bn.running_mean, bn.running_var, bn.num_batches_tracked */
} tw_barlow;

/* bad: the owner's backend flag the BN raises on statistics that are not finite (syncbn.h).
 * gather: 0, each rank forms its share of C (a GEMM over its n rows) and one all-reduce of d x d
 * floats sums them; 1, one all-gather of both views' normalised embeddings (2 n n_ranks d floats)
 * and every rank forms all of C (a GEMM over the global rows): fewer bytes where the global batch
 * is under d / 2, more FLOPs; both exact, and with gather C is bit for bit the one-rank C. */
void tw_barlow_init(tw_barlow *L, tw_backend *be, int n, int d, int rank, int n_ranks, float lambda,
                    int gather, int *bad);
void tw_barlow_free(tw_barlow *L, tw_backend *be);
/* The BN's buffers under torch's names (bn.running_mean, bn.running_var, bn.num_batches_tracked:
 * the BarlowTwins module's self.bn), before tw_params_alloc. */
void tw_barlow_register(tw_barlow *L, tw_params *P);
/* After tw_params_alloc: points the BN's running statistics into the arena. */
void tw_barlow_bind(tw_barlow *L, const tw_params *P);
/* Running mean 0, running var 1, no batches tracked (torch's initial BN state). */
void tw_barlow_reset(tw_barlow *L, tw_backend *be);

/* loss (returned, the same on every rank), dz0 and dz1 (=) [n, d] from z0, z1 [n, d]. A loss
 * that is not finite (as when the embeddings' statistics are not) is returned as it is, and
 * dz0, dz1 are not finite then either. */
double tw_barlow_forward_backward(tw_barlow *L, tw_backend *be, tw_comm *comm, float *dz0,
                                  float *dz1, const float *z0, const float *z1);

#endif
