/* The Barlow Twins model (Zbontar et al., ICML 2021): a branch per view source, each a ResNet18
 * backbone and a projector — one branch shared by both views of one source, or an S1 and an S2
 * branch for cross-modal pairs (loss.pairing: cross; with loss.intra a second view of each source
 * too, four views in all) — as model/classifier.c builds the
 * classifier. Forward takes the two views to their embeddings, backward takes the embeddings'
 * gradients to the arena's; the loss (loss/barlow.h) and the step (train/bt_task.c) are not here. */
#ifndef TW_BT_MODEL_H
#define TW_BT_MODEL_H

#include <stdint.h>

#include "backend/backend.h"
#include "core/grad_ready.h"
#include "core/reducer.h"
#include "model/params.h"
#include "model/projector.h"
#include "model/resnet18.h"

#define TW_BT_MAX_GROUPS 8
#define TW_BT_MAX_VIEWS 4

typedef struct tw_bt_model_opts {
    int cross;                /* 1: a branch per source (S1 for views 0 and 2, S2 for views 1
                               * and 3); 0: one branch for both views */
    int intra;                /* cross only: views 2 and 3, a second view of S1 and of S2 */
    int c_in[2];              /* view 0's and view 1's channels (equal without cross) */
    int h, w;                 /* one view: [c_in, h, w] */
    int n_local;              /* pairs per rank and step */
    int bn_groups;            /* backbone BN batches per rank: 1, or g to reproduce g ranks'
                               * per-rank statistics on one (tests) */
    int backbone_sync;        /* 1: the backbone's BN statistics over every rank's batch
                               * (model.backbone_bn: sync; needs bn_groups 1) */
    int proj_dim;
} tw_bt_model_opts;

/* One backbone and its projector. Arena names as torch's BarlowTwins module: backbone.*,
 * projector.* for the shared branch; s1.backbone.*, s1.projector.*, s2.* for cross. */
typedef struct tw_bt_branch {
    tw_resnet18 net;
    tw_projector pj;          /* view slots: 0 and 1 shared; in a cross branch slot 0, and 1
                               * for the source's second view (intra) */
    tw_resnet18_plans *plans; /* for n_local / bn_groups images */
} tw_bt_branch;

typedef struct tw_bt_model {
    tw_backend *be;
    tw_bt_model_opts o;
    tw_reducer red;                        /* the synchronised BNs' sums over the ranks */
    int n_branches;                        /* 1 shared, 2 cross */
    int n_views;                           /* 2, or 4 with intra */
    tw_bt_branch br[2];
    tw_resnet18_acts acts[TW_BT_MAX_VIEWS][TW_BT_MAX_GROUPS];   /* per view and BN group */
    float *x[TW_BT_MAX_VIEWS];             /* [n_local, c_in[v % 2], h, w] the views (backend) */
    float *feats[TW_BT_MAX_VIEWS], *dfeats[TW_BT_MAX_VIEWS];   /* [n_local, 512] */
    float *z[TW_BT_MAX_VIEWS], *dz[TW_BT_MAX_VIEWS];           /* [n_local, proj_dim] */
} tw_bt_model;

/* A status naming the bad option: bn_groups must divide n_local (and be 1 with backbone_sync); BN
 * needs 2 rows in all. */
tw_status tw_bt_model_opts_check(const tw_bt_model_opts *o, int n_ranks, tw_err *err);
/* Registers the branches' parameters and buffers in P (before tw_params_alloc). bad: the step's
 * backend flag the synchronised BNs raise on statistics that are not finite (syncbn.h). */
tw_status tw_bt_model_register(tw_bt_model *m, tw_backend *be, tw_params *P, const tw_bt_model_opts *o,
                               const tw_reducer *red, int *bad, tw_err *err);
/* After tw_params_alloc: binds the projectors, makes the plans, activations and view buffers. */
tw_status tw_bt_model_alloc(tw_bt_model *m, const tw_params *P, int *bad, tw_err *err);
void tw_bt_model_free(tw_bt_model *m);
/* torchvision's and torch's default initialisation of every branch: the shared (or S1) branch from
 * seed, the S2 branch from tw_bt_s2_seed(seed) (so the two backbones do not start as copies). */
void tw_bt_model_reset(tw_bt_model *m, tw_params *P, uint64_t seed);
uint64_t tw_bt_s2_seed(uint64_t seed);

/* z[v] = projector(backbone(x[v])) for every view in order, the backbones first, each per BN
 * group; BN in training mode (running statistics and num_batches_tracked move, as torch's
 * train()). */
void tw_bt_model_forward(tw_bt_model *m);
/* From every view's dz: every branch's gradients (=) in P->grads, from the arena's end (the last
 * branch first, its projector before its backbone), telling ready (NULL: nobody) of each range
 * as soon as it is final (core/grad_ready.h). */
void tw_bt_model_backward(tw_bt_model *m, tw_params *P, const tw_grad_ready *ready);

#endif
