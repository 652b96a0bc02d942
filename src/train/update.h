/* The end of every training step, the same for every task: the gradient all-reduce (sum or mean),
 * the finiteness check and the optimizer's update. */
#ifndef TW_UPDATE_H
#define TW_UPDATE_H

#include "dist/comm.h"
#include "model/params.h"
#include "optim/optim.h"
#include "train/task.h"

/* The span of P's flat buffers that segs cover: all-reducing it is all-reducing every trained
 * gradient (frozen tensors outside it are never reduced). */
typedef struct tw_grad_span {
    size_t offset, n_elems;
} tw_grad_span;
tw_grad_span tw_grad_span_of(const tw_param_seg *segs, int n_segs);

/* bad, below: a backend int, the step's verdict. The step clears it at its start; its layers may
 * raise it (a synchronised BN's statistics); the finiteness check here raises it for a gradient.
 * Raised, the optimizer's update is skipped on the device, so no host decision sits inside a
 * step; the host reads it once, at the end (tw_read_flag). */

/* P->grads over span = the ranks' sum (or mean), then params -= the optimizer's update. Returns
 * the weights' learning rate; NaN when *bad was raised, in which case the parameters and the
 * optimizer are left as they were (the same verdict on every rank: it follows the reduced
 * gradients and global statistics). */
double tw_train_update(tw_comm *comm, tw_backend *be, tw_params *P, tw_optim *o, tw_grad_span span,
                       tw_grad_reduce reduce, int *bad);
/* The same after the gradients over span already hold the ranks' sum (the loop's gradient
 * buckets, dist/buckets.h, reduced them while backward ran): the mean's scale over n_ranks,
 * the finiteness check and the optimizer, with tw_train_update's return. */
double tw_train_apply(tw_backend *be, tw_params *P, tw_optim *o, tw_grad_span span, tw_grad_reduce reduce,
                      int n_ranks, int *bad);
/* tw_train_apply in its two halves, for a recorded step (tw_backend_graph_begin): queue is the
 * device work (scale, check, the update skipped when *bad is raised) after tw_optim_advance;
 * verdict takes the value of tw_read_flag(bad) and returns 1 for an accepted step, 0 for a
 * rejected one, whose step the optimizer's counter then gives back. */
void tw_train_queue_apply(tw_backend *be, tw_params *P, tw_optim *o, tw_grad_span span,
                          tw_grad_reduce reduce, int n_ranks, int *bad);
int tw_train_verdict(tw_optim *o, double bad_value);

/* The end of a standalone Barlow Twins step (tests and benchmarks): given the forward-backward's
 * loss, the SUM update of the whole buffer; the loss, or NaN when it is not finite or *bad was
 * raised (nothing updated then). *lr (may be NULL) gets the weights' rate. */
double tw_train_sum_step(tw_comm *comm, tw_backend *be, tw_params *P, tw_optim *o, double loss, double *lr,
                         int *bad);

#endif
