/* The Barlow Twins projector: Linear(512->D, no bias)-BN-ReLU-Linear(D->D, no bias)-BN-ReLU-
 * Linear(D->D, no bias), with synchronised BN (global batch statistics, model/syncbn.h). Its
 * parameters live in the model's arena (model/params.h) under torch's names; this file keeps the
 * activations and does the GEMMs through the op interface. */
#ifndef TW_PROJECTOR_H
#define TW_PROJECTOR_H

#include <stddef.h>

#include "backend/backend.h"
#include "core/reducer.h"
#include "model/syncbn.h"
#include "model/params.h"

/* Pointers into the arena (parameters, or their gradients). */
typedef struct tw_projector_params {
    float *w1, *g1, *b1;     /* w1: [D, d_in]; g1, b1: [D] */
    float *w2, *g2, *b2;     /* w2: [D, D] */
    float *w3;               /* w3: [D, D] */
} tw_projector_params;

typedef struct tw_projector_view {
    float *h1, *r1, *h2, *r2;          /* [n, D]: pre-BN and post-ReLU of both hidden layers */
    tw_syncbn_cache c1, c2;
} tw_projector_view;

typedef struct tw_projector {
    int n, d_in, d;                    /* local rows, 512, D */
    tw_syncbn bn1, bn2;                /* running statistics shared by both views, as in torch */
    tw_projector_view view[2];
    float *dr, *dh;                    /* [n, D] backward scratch */
    int id[7];                         /* arena entries of w1, g1, b1, w2, g2, b2, w3 */
    int id_stats[2][3];                /* running_mean, running_var, num_batches_tracked of bn1, bn2 */
    tw_projector_params p, g;          /* bound by tw_projector_bind */
} tw_projector;

/* Activations and scratch for n local rows (the BN statistics span n * n_ranks rows). bad: the
 * owner's backend flag its BN layers raise on statistics that are not finite (syncbn.h). */
void tw_projector_init(tw_projector *pj, tw_backend *be, int n, int d_in, int d, int n_ranks, int *bad);
void tw_projector_free(tw_projector *pj, tw_backend *be);
/* Registers the parameters and BN buffers under torch's names in the BarlowTwins module, after
 * prefix ("" for one modality, "s1." / "s2." for a cross-modal model's branches):
 * projector.0.weight, projector.1.{weight,bias,running_mean,running_var,num_batches_tracked},
 * projector.3.weight, projector.4.*, projector.6.weight; before tw_params_alloc. */
void tw_projector_register(tw_projector *pj, tw_params *P, const char *prefix);
/* After tw_params_alloc: points pj->p, pj->g and the BN running statistics into the arena. */
void tw_projector_bind(tw_projector *pj, const tw_params *P);
/* torch's default initialisation: Linear weights U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 * (kaiming_uniform with a = sqrt(5)), BN weight 1, bias 0, running mean 0, var 1. Draws come from
 * the Philox stream (seed; 0x70726f6a, layer, 0). */
void tw_projector_reset(tw_projector *pj, tw_params *P, uint64_t seed);

/* z (=) [n, D] from x [n, d_in] for view v (0 or 1). A BN's statistics that are not finite raise
 * the bad flag (the same on every rank). */
void tw_projector_forward(tw_projector *pj, tw_backend *be, const tw_reducer *red, int v, float *z,
                          const float *x);
/* dx (=) [n, d_in] and the parameter gradients (+=, into pj->g) from dz for view v. */
void tw_projector_backward(tw_projector *pj, tw_backend *be, const tw_reducer *red, int v, float *dx,
                           const float *dz, const float *x);

#endif
