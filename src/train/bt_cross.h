/* Cross-modal Barlow Twins: an S1 branch and an S2 branch (each a ResNet18 backbone with per-rank
 * BN and its own projector), the two "views" being the S1 and the S2 patch of the same places, and
 * the Barlow Twins loss on the cross-correlation of their embeddings (loss/barlow.h as is). */
#ifndef TW_BT_CROSS_H
#define TW_BT_CROSS_H

#include <stdint.h>

#include "train/bt_model.h"

/* One modality's half: what tw_bt_model holds per view, with a backbone and projector of its own. */
typedef struct tw_bt_branch {
    tw_resnet18 net;
    tw_projector pj;                       /* only its view slot 0 is used */
    tw_resnet18_plans *plans;              /* for n_local / bn_groups images */
    tw_resnet18_acts acts[TW_BT_MAX_GROUPS];
    float *x;                              /* [n_local, c, h, w] this source's view (backend) */
    float *feats, *dfeats;                 /* [n_local, 512] */
    float *z, *dz;                         /* [n_local, proj_dim] */
} tw_bt_branch;

typedef struct tw_bt_cross_opts {
    tw_bt_opts bt;            /* bt.c_in: the S1 channels (2); every other field as for one source */
    int c_s2;                 /* the S2 channels (3 or 12) */
} tw_bt_cross_opts;

/* Arena names are those torch gives a module with two BarlowTwins-like children s1 and s2 and
 * the loss's BN: s1.backbone.*, s1.projector.*, s2.backbone.*, s2.projector.*, bn.*. */
typedef struct tw_bt_cross {
    tw_backend *be;
    tw_comm *comm;
    tw_bt_cross_opts o;
    tw_params P;
    tw_bt_branch br[2];                    /* 0: S1, 1: S2 */
    tw_barlow loss;
    int id_bn_stats[3];
    tw_optim *optim;                       /* NULL with o.bt.external_optim */
    int *bad;                        /* as tw_bt_model's */
} tw_bt_cross;

/* Registers and allocates everything; the weights are not initialised (tw_bt_cross_reset or a
 * checkpoint does that). */
tw_status tw_bt_cross_init(tw_bt_cross *m, tw_backend *be, tw_comm *comm, const tw_bt_cross_opts *o,
                           tw_err *err);
void tw_bt_cross_free(tw_bt_cross *m);
/* torchvision's and torch's default initialisation, the S1 branch from seed and the S2 branch from
 * tw_bt_cross_s2_seed(seed) (so the two backbones do not start as copies of each other), then rank
 * 0's values broadcast. */
void tw_bt_cross_reset(tw_bt_cross *m, uint64_t seed);
uint64_t tw_bt_cross_s2_seed(uint64_t seed);

/* Forward, loss and backward on br[0].x (S1) and br[1].x (S2): every gradient (=) in m->P.grads,
 * this rank's share of the one global loss. Returns the loss, the same on every rank; NAN when
 * the embeddings' statistics or the loss are not finite (then no gradient is written). ready
 * (NULL: none) hears of each range of the gradient arena as soon as it is final, from the
 * arena's end (core/grad_ready.h): the gradient buckets start from it. */
double tw_bt_cross_forward_backward(tw_bt_cross *m, const tw_grad_ready *ready);
/* The end of a step for both projectors', the loss's and (backbone_sync) both backbones' BN, as
 * tw_bt_model_end_step. */
void tw_bt_cross_end_step(tw_bt_cross *m, int accepted);
/* tw_bt_cross_forward_backward, the gradient all-reduce (sum) and the optimizer's update, as
 * tw_bt_model_step does for one modality (the same return and NaN contract). */
double tw_bt_cross_step(tw_bt_cross *m, double *lr);

#endif
