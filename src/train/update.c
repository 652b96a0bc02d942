/* The gradient all-reduce (one flat call) and the optimizer step (update.h). */
#include "train/update.h"

#include <math.h>

tw_grad_span tw_grad_span_of(const tw_param_seg *segs, int n_segs) {
    size_t lo = (size_t)-1, hi = 0;
    for (int s = 0; s < n_segs; s++) {
        if (segs[s].offset < lo) lo = segs[s].offset;
        if (segs[s].offset + segs[s].n_elems > hi) hi = segs[s].offset + segs[s].n_elems;
    }
    return n_segs ? (tw_grad_span){lo, hi - lo} : (tw_grad_span){0, 0};
}

void tw_train_queue_apply(tw_backend *be, tw_params *P, tw_optim *o, tw_grad_span span,
                          tw_grad_reduce reduce, int n_ranks, int *bad) {
    float scale = reduce == TW_GRAD_MEAN ? 1.0f / (float)n_ranks : 1.0f;
    tw_scale_check(be, P->grads + span.offset, span.n_elems, scale, bad);
    tw_optim_queue(o, P->params, P->grads, bad);
}

int tw_train_verdict(tw_optim *o, double bad_value) {
    if (bad_value == 0) return 1;
    tw_optim_set_step_count(o, tw_optim_step_count(o) - 1);
    return 0;
}

double tw_train_apply(tw_backend *be, tw_params *P, tw_optim *o, tw_grad_span span, tw_grad_reduce reduce,
                      int n_ranks, int *bad) {
    double lr = tw_optim_advance(o);
    tw_train_queue_apply(be, P, o, span, reduce, n_ranks, bad);
    return tw_train_verdict(o, tw_read_flag(be, bad)) ? lr : NAN;
}

double tw_train_update(tw_comm *comm, tw_backend *be, tw_params *P, tw_optim *o, tw_grad_span span,
                       tw_grad_reduce reduce, int *bad) {
    tw_comm_allreduce(comm, P->grads + span.offset, span.n_elems, TW_F32, TW_REDUCE_SUM);
    return tw_train_apply(be, P, o, span, reduce, tw_comm_size(comm), bad);
}

double tw_train_sum_step(tw_comm *comm, tw_backend *be, tw_params *P, tw_optim *o, double loss, double *lr,
                         int *bad) {
    if (!isfinite(loss)) return NAN;
    tw_grad_span all = {0, P->n_params};
    double lr_used = tw_train_update(comm, be, P, o, all, TW_GRAD_SUM, bad);
    if (!isfinite(lr_used)) return NAN;
    if (lr) *lr = lr_used;
    return loss;
}
