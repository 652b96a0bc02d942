/* The Barlow Twins model of one modality and its training step: ResNet18 backbone (per-rank or
 * synchronised BN),
 * projector (synchronised BN), loss with the global cross-correlation; then (tw_bt_model_step)
 * one flat gradient all-reduce and the optimizer update. `twinfuse pretrain` runs it as a task of
 * the generic loop (pretrain.c, loop.c); the tests and bench/bt_step call the step directly. */
#ifndef TW_BT_MODEL_H
#define TW_BT_MODEL_H

#include <stdint.h>

#include "backend/backend.h"
#include "dist/comm.h"
#include "loss/barlow.h"
#include "model/params.h"
#include "model/projector.h"
#include "model/resnet18.h"
#include "optim/optim.h"

#define TW_BT_MAX_GROUPS 8

typedef struct tw_bt_opts {
    int c_in, h, w;           /* one view: [c_in, h, w] */
    int n_local;              /* pairs per rank and step */
    int bn_groups;            /* backbone BN batches per rank: 1, or g to reproduce g ranks'
                               * per-rank statistics on one (tests) */
    int backbone_sync;        /* 1: the backbone's BN statistics over every rank's batch
                               * (model.backbone_bn: sync; needs bn_groups 1) */
    int proj_dim;
    float lambda;
    int c_gather;             /* 1: all-gather the embeddings instead of all-reducing C
                               * (loss.c_exchange, tw_barlow_init) */
    tw_optim_hparams optim;   /* optimizer and peak rates (optim/optim.h) */
    tw_schedule sched;        /* warm-up + cosine or constant, per step */
    int external_optim;       /* 1: no optimizer of its own (the training loop owns one; only
                               * tw_bt_model_forward_backward may be called) */
    int graph;                /* 1: tw_bt_model_step records its second step whole (a CUDA graph)
                               * and replays it from then on; the first runs eagerly. Backends
                               * that record nothing run every step eagerly. Several ranks need
                               * the NCCL communicator, bound to the backend's stream. */
} tw_bt_opts;

typedef struct tw_bt_model {
    tw_backend *be;
    tw_comm *comm;
    tw_bt_opts o;
    tw_params P;
    tw_resnet18 net;
    tw_projector pj;
    tw_barlow loss;
    int id_bn_stats[3];                    /* bn.running_mean, bn.running_var, bn.num_batches_tracked */
    tw_resnet18_plans *plans;              /* for n_local / bn_groups images */
    tw_resnet18_acts acts[2][TW_BT_MAX_GROUPS];
    float *x[2];                           /* [n_local, c_in, h, w] the two views (backend) */
    float *feats[2], *dfeats[2];           /* [n_local, 512] */
    float *z[2], *dz[2];                   /* [n_local, proj_dim] */
    tw_optim *optim;                       /* its step count is the training step */
    int *bad;                              /* backend int, the step's verdict: raised by a
                                            * synchronised BN's statistics (model/syncbn.h) or
                                            * the update's gradient check (train/update.h) */
    /* The recorded step (tw_bt_opts.graph): 0 none yet, 1 recorded, -1 the backend records none;
     * warm: a step ran eagerly (cuDNN's algorithm searches and first uploads are behind). */
    int graph_state, warm;
    int64_t *counter_delta;                /* [P.n_counters]: what a recorded step adds to the
                                            * host counters (num_batches_tracked) */
    int64_t *counters_kept;                /* [P.n_counters]: the counters before this step */
} tw_bt_model;

/* Registers and allocates everything; the weights are not initialised (tw_bt_model_reset or a
 * checkpoint does that). */
tw_status tw_bt_model_init(tw_bt_model *m, tw_backend *be, tw_comm *comm, const tw_bt_opts *o,
                           tw_err *err);
void tw_bt_model_free(tw_bt_model *m);
/* torchvision's and torch's default initialisation from seed, then rank 0's values broadcast so
 * every rank starts from the same parameters and buffers. */
void tw_bt_model_reset(tw_bt_model *m, uint64_t seed);
/* Broadcasts parameters, buffers and counters from rank 0. */
void tw_bt_model_broadcast(tw_bt_model *m);

/* Forward, loss and backward on the views in m->x[0], m->x[1]: every gradient (=) in m->P.grads,
 * this rank's share of the one global loss. Returns the loss, the same on every rank. No host
 * decision inside: m->bad is cleared first and raised by statistics that are not finite; a loss
 * that is not finite makes the gradients so (tw_train_apply's check raises m->bad). ready
 * (NULL: none) hears of each range of the gradient arena as soon as it is final, from the
 * arena's end (core/grad_ready.h): the gradient buckets start from it. */
double tw_bt_model_forward_backward(tw_bt_model *m, const tw_grad_ready *ready);

/* The end of a step (after the update's verdict): accepted, the synchronised BNs' running
 * statistics take the step's batch statistics; rejected (non-finite), nothing of the step stays
 * in the projector's, the loss's and (backbone_sync) the backbone's BN buffers
 * (tw_syncbn_commit). */
void tw_bt_model_end_step(tw_bt_model *m, int accepted);

/* One step on the views in m->x[0], m->x[1]: forward, loss, backward, gradient all-reduce (sum:
 * every rank's share of the one global loss is its gradient, so the sum is the 1-rank gradient),
 * the optimizer's update at the scheduled rate (written to *lr when lr is not NULL). Returns the
 * loss, the same on every rank; NAN when the loss, a statistic or a gradient is not finite, in
 * which case the parameters, the optimizer, the synchronised BNs' running statistics and every
 * counter are left as they were (a local BN's running statistics move in its forward: the
 * training loop puts them back, train/loop.c). With o.graph, from the
 * second step on the whole step is one recorded graph: the host uploads the optimizer's values,
 * launches it, and reads the loss and the verdict once at its end. */
double tw_bt_model_step(tw_bt_model *m, double *lr);

/* Pieces shared with the cross-modal model (bt_cross.h). */
/* A status naming the bad option: bn_groups must divide n_local (and be 1 with backbone_sync); BN
 * needs 2 rows in all. */
tw_status tw_bt_opts_check(const tw_bt_opts *o, int n_ranks, tw_err *err);
/* The loss's affine-free BN buffers under torch's names (bn.running_mean, bn.running_var,
 * bn.num_batches_tracked; width d), before tw_params_alloc; id: their entries. */
void tw_bt_loss_register(int id[3], tw_params *P, int d);
/* After tw_params_alloc: points L's running statistics into the arena. */
void tw_bt_loss_bind(tw_barlow *L, const tw_params *P, const int id[3]);
/* Running mean 0, running var 1, no batches tracked (torch's initial BN state). */
void tw_bt_loss_reset(tw_barlow *L, tw_backend *be);
/* Rank 0's parameters, buffers and counters to every rank. */
void tw_bt_params_broadcast(tw_comm *c, tw_params *P);

#endif
