/* The one training step (step.h): the task's forward-backward between the loop's gradient
 * buckets, checked update, verdict and rollback; recorded once and replayed where the backend
 * records. */
#include "train/step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "dist/buckets.h"

struct tw_step {
    tw_backend *be;
    tw_comm *comm;
    int world;
    int *bad;                  /* backend int, the step's verdict: raised = rejected */
    tw_task *task;
    tw_optim *optim;
    tw_grad_span span;
    tw_buckets *bk;
    tw_grad_ready ready;
    /* The rollback: what a step changes beyond the gradients and what bad keeps the update
     * from touching (parameters, optimizer state): the BN running statistics (a per-rank BN
     * moves them in its forward, a synchronised one too) and the host counters. */
    float *buffers_kept;       /* backend, [P->n_buffers]; NULL when there are none */
    int64_t *counters_kept;    /* host, [P->n_counters] */
    /* The recorded step: want (the mode allows one), state 0 none yet, 1 recorded, -1 the
     * backend records none; warm: a step ran eagerly (cuDNN's searches and first uploads are
     * behind it). counter_delta: what a replay adds to the host counters (num_batches_tracked),
     * which no replay moves by itself. */
    int want_graph, graph_state, warm;
    int64_t *counter_delta;    /* [P->n_counters] */
    double wait_s;             /* the last eager step's host wait for the buckets */
};

tw_grad_span tw_grad_span_of(const tw_param_seg *segs, int n_segs) {
    size_t lo = (size_t)-1, hi = 0;
    for (int s = 0; s < n_segs; s++) {
        if (segs[s].offset < lo) lo = segs[s].offset;
        if (segs[s].offset + segs[s].n_elems > hi) hi = segs[s].offset + segs[s].n_elems;
    }
    return n_segs ? (tw_grad_span){lo, hi - lo} : (tw_grad_span){0, 0};
}

tw_status tw_step_init(tw_step **out, tw_backend *be, tw_comm *comm, tw_err *err) {
    tw_step *s = calloc(1, sizeof *s);
    *out = s;
    if (!s) return tw_err_set(err, TW_E_NOMEM, "training step: out of memory");
    s->be = be;
    s->comm = comm;
    s->world = tw_comm_size(comm);
    s->bad = tw_mem_alloc(be, sizeof(int));
    tw_mem_zero(be, s->bad, sizeof(int));
    return TW_OK;
}

int *tw_step_bad(const tw_step *s) { return s->bad; }
tw_optim *tw_step_optim(const tw_step *s) { return s->optim; }
int tw_step_recorded(const tw_step *s) { return s->graph_state == 1; }
tw_buckets *tw_step_buckets(const tw_step *s) { return s->bk; }
double tw_step_wait_s(const tw_step *s) { return s->wait_s; }

tw_status tw_step_bind(tw_step *s, tw_task *t, const tw_step_opts *o, tw_err *err) {
    const tw_params *P = t->P;
    TW_ASSERT(t->n_values >= 0 && t->n_values <= TW_TASK_MAX_VALUES);
    s->task = t;
    s->span = tw_grad_span_of(t->segs, t->n_segs);
    tw_status st = tw_optim_create_scaled(&s->optim, s->be, t->segs, t->lr_scale, t->n_segs, P->n_params,
                                          &o->optim, &o->sched, err);
    if (st != TW_OK) return st;
    st = tw_buckets_create(&s->bk, s->comm, P->grads + s->span.offset, s->span.offset, s->span.n_elems,
                           o->bucket_elems, err);
    if (st != TW_OK) return st;
    s->ready = tw_buckets_hook(s->bk);
    s->buffers_kept = P->n_buffers ? tw_mem_alloc(s->be, P->n_buffers * sizeof(float)) : NULL;
    s->counters_kept = calloc(P->n_counters + 1, sizeof(int64_t));
    s->counter_delta = calloc(P->n_counters + 1, sizeof(int64_t));
    if (!s->counters_kept || !s->counter_delta) return tw_err_set(err, TW_E_NOMEM, "training step: out of memory");
    /* Recorded, the buckets' collectives must be stream work (NCCL): MPI's are host calls. */
    int nccl = s->world == 1 || tw_comm_kind_of(s->comm) == TW_COMM_NCCL;
    int records = tw_backend_device(s->be) == TW_DEVICE_CUDA;
    if (o->graph == TW_GRAPH_ON && records && !nccl)
        return tw_err_set(err, TW_E_USAGE, "backend.graph=on: a recorded step on %d ranks needs the nccl "
                          "communicator, not %s", s->world, tw_comm_kind_name(tw_comm_kind_of(s->comm)));
    s->want_graph = o->graph == TW_GRAPH_ON || (o->graph == TW_GRAPH_AUTO && records && nccl);
    return TW_OK;
}

void tw_step_free(tw_step *s) {
    if (!s) return;
    tw_buckets_free(s->bk);
    if (s->optim) tw_optim_free(s->optim);
    if (s->buffers_kept) tw_mem_free(s->be, s->buffers_kept);
    tw_mem_free(s->be, s->bad);
    free(s->counters_kept);
    free(s->counter_delta);
    free(s);
}

/* The value ops of the task's step (its loss is their sum), then the verdict. */
static int value_count(const tw_step *s) { return (s->task->n_values > 0 ? s->task->n_values : 1) + 1; }

/* The step's device work, with no host decision inside: clear bad, the task's
 * forward-backward with the buckets started as backward goes, the wait for them, the checked
 * update. v[0]: the task's loss, v[value_count - 1]: bad (a replay hands back the loss's terms in
 * v[0..value_count - 2] instead). */
static void queue(tw_step *s, double *v, int recording) {
    tw_task *t = s->task;
    tw_params *P = t->P;
    tw_mem_zero(s->be, s->bad, sizeof(int));
    tw_buckets_begin(s->bk, recording);
    v[0] = t->step(t, &s->ready);
    s->wait_s = tw_buckets_wait(s->bk);
    float scale = t->reduce == TW_GRAD_MEAN ? 1.0f / (float)s->world : 1.0f;
    tw_scale_check(s->be, P->grads + s->span.offset, s->span.n_elems, scale, s->bad);
    tw_optim_queue(s->optim, P->params, P->grads, s->bad);
    v[value_count(s) - 1] = tw_read_flag(s->be, s->bad);
}

/* Records queue(). The host counters it moves while recording (num_batches_tracked) are put back
 * and kept as the delta each accepted replay adds. */
static void record(tw_step *s) {
    tw_params *P = s->task->P;
    tw_err err = {0};
    tw_status st = tw_backend_graph_begin(s->be, &err);
    if (st == TW_E_UNSUPPORTED) {
        s->graph_state = -1;
        return;
    }
    if (st == TW_OK) {
        double v[TW_TASK_MAX_VALUES + 1];
        queue(s, v, 1);
        st = tw_backend_graph_end(s->be, &err);
    }
    for (size_t i = 0; i < P->n_counters; i++) {
        s->counter_delta[i] = P->counters[i] - s->counters_kept[i];
        P->counters[i] = s->counters_kept[i];
    }
    if (st != TW_OK) tw_fatal("tw_loop_step", err.msg, __FILE__, __LINE__);
    s->graph_state = 1;
}

double tw_loop_step(tw_step *s, const tw_batch *b, double *lr) {
    tw_task *t = s->task;
    tw_params *P = t->P;
    t->upload(t, b);
    if (s->buffers_kept) tw_mem_copy(s->be, s->buffers_kept, P->buffers, P->n_buffers * sizeof(float));
    memcpy(s->counters_kept, P->counters, P->n_counters * sizeof(int64_t));
    if (s->want_graph && s->warm && s->graph_state == 0) record(s);
    double v[TW_TASK_MAX_VALUES + 1], lr_used = tw_optim_advance(s->optim);
    int n_v = value_count(s);
    if (s->graph_state == 1) {
        s->wait_s = 0;
        tw_backend_graph_replay(s->be, v, n_v);
        for (size_t i = 0; i < P->n_counters; i++) P->counters[i] += s->counter_delta[i];
        for (int i = 1; i < n_v - 1; i++) v[0] += v[i];
    } else {
        queue(s, v, 0);
    }
    s->warm = 1;
    double loss = v[0];
    if (t->reduce == TW_GRAD_MEAN && s->world > 1) {
        float lf = (float)loss;   /* NaN on any rank makes the mean NaN on all */
        tw_comm_allreduce(s->comm, &lf, 1, TW_F32, TW_REDUCE_SUM);
        loss = lf / s->world;
    }
    if (lr) *lr = lr_used;
    if (v[n_v - 1] == 0 && isfinite(loss)) return loss;
    /* Rejected: the update was skipped on the device; put back what moved besides. */
    if (s->buffers_kept) tw_mem_copy(s->be, P->buffers, s->buffers_kept, P->n_buffers * sizeof(float));
    memcpy(P->counters, s->counters_kept, P->n_counters * sizeof(int64_t));
    tw_optim_set_step_count(s->optim, tw_optim_step_count(s->optim) - 1);
    return NAN;
}
