/* Batch norm with the statistics of the global batch (all ranks), as torch.nn.SyncBatchNorm
 * computes them: a layer. 1-D over the rows of x [n_local, d] f32 (the projector, the loss's BN),
 * or 2-D over (n, h, w) per channel of an activation tensor (the backbone with model.backbone_bn:
 * sync). Both run on a BN plan's external-statistics ops (backend.h: tw_bn_sums ...): the backend
 * gives this rank's sums in f64, the reducer (core/reducer.h) sums them over the ranks, and the
 * backend turns them into the global statistics that forward and backward both use. One
 * all-reduce per forward and one per backward, and nothing goes through the host inside a step:
 * a statistic that is not finite raises the owner's `bad` flag, which it reads once per step. */
#ifndef TW_SYNCBN_H
#define TW_SYNCBN_H

#include "backend/backend.h"
#include "core/reducer.h"

/* torch.nn.BatchNorm's defaults, those of every BN in the models (backbone, projector, loss). */
#define TW_BN_EPS 1e-5f
#define TW_BN_MOMENTUM 0.1f

/* One synchronised BN layer: its constants, where its running statistics live (torch's buffers,
 * kept for checkpoints; in training they only give the sums' shift) and the scratch it needs. */
typedef struct tw_syncbn {
    int n, d;              /* local values per feature (1-D: rows; 2-D: n h w), features */
    tw_bn_plan *plan;      /* the layer's shape, dtype, layout and ReLU */
    int own_plan;          /* 1-D: the plan (f32 rows) is made and freed here */
    float eps, momentum;   /* torch: 1e-5, 0.1 */
    double n_global;       /* values per feature over all ranks */
    float *run_mean, *run_var;   /* [d] backend f32, or NULL: not tracked (set by the owner) */
    int64_t *n_batches;          /* host, torch's num_batches_tracked, or NULL */
    int *bad;              /* backend int of the owner's: set to 1 when global statistics are not
                            * finite (the same on every rank); the owner clears and reads it */
    double *sums;          /* [2d] backend f64: the sums being all-reduced */
    double *stats;         /* [2d] backend f64: the last forward's batch mean and biased var */
    float *zero;           /* [d] backend zeros: the shift when no running mean is tracked */
    int64_t n_reductions;  /* all-reduces so far: one per forward and one per backward */
} tw_syncbn;

/* The per-call state a forward leaves for its backward (one per view). */
typedef struct tw_syncbn_cache {
    float *mean, *inv_std;   /* [d] backend f32 */
} tw_syncbn_cache;

/* A 1-D layer over n local rows of d features (relu: y = relu(bn(x))). Fatal on a bad shape. */
void tw_syncbn_init(tw_syncbn *bn, tw_backend *be, int n, int d, int n_ranks, int relu, float eps,
                    float momentum, int *bad);
/* A 2-D layer over plan's tensors (d: the plan's description; the plan stays the caller's). */
void tw_syncbn_init_2d(tw_syncbn *bn, tw_backend *be, tw_bn_plan *plan, const tw_bn_desc *d,
                       int n_ranks, int *bad);
void tw_syncbn_free(tw_syncbn *bn, tw_backend *be);
void tw_syncbn_cache_init(tw_syncbn_cache *c, tw_backend *be, int d);
void tw_syncbn_cache_free(tw_syncbn_cache *c, tw_backend *be);

/* y = [relu](gamma (x - mean) inv_std + beta), mean and var of the global batch (biased var). x,
 * y: [n, d] backend f32. gamma, beta: [d] or NULL (affine=False). One all-reduce of 2d f64: the
 * sums of x - K and (x - K)² about the running mean K (0 untracked), which every rank holds alike;
 * in f64 the variance S2/N - (S1/N)² keeps its precision wherever the mean is. Statistics that are
 * not finite set *bad (y is normalised with them all the same). The running statistics take the
 * batch's at once (torch's momentum rule, unbiased var; skipped on the device when *bad is
 * raised) and num_batches_tracked counts one, as torch's train() forward: a rejected step is
 * undone by the training step's rollback (train/step.h), as a per-rank BN's is. */
void tw_syncbn_forward(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, float *y,
                       tw_syncbn_cache *c, const float *x, const float *gamma, const float *beta);
/* The same for a 2-D layer: x, y the plan's tensors. */
void tw_syncbn_forward_2d(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, tw_tensor *y,
                          tw_syncbn_cache *c, const tw_tensor *x, const float *gamma,
                          const float *beta);
/* dx (=) from dy through the layer, with the global sums of dy and dy·x̂. dgamma, dbeta (+=) get
 * only this rank's share: the gradient all-reduce sums the shares. dgamma/dbeta NULL with
 * gamma NULL. */
void tw_syncbn_backward(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, float *dx, float *dgamma,
                        float *dbeta, const float *dy, const float *y, const float *x,
                        const tw_syncbn_cache *c, const float *gamma);
/* The same for a 2-D layer, except that dgamma and dbeta are overwritten (=), as
 * tw_bn_backward's. */
void tw_syncbn_backward_2d(tw_syncbn *bn, tw_backend *be, const tw_reducer *red, tw_tensor *dx,
                           float *dgamma, float *dbeta, const tw_tensor *dy, const tw_tensor *y,
                           const tw_tensor *x, const tw_syncbn_cache *c, const float *gamma);

#endif
