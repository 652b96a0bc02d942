/* The Barlow Twins task (bt_task.h): forward both views, the loss with its global
 * cross-correlation, backward — the gradient all-reduce, the update and the rollback are the
 * loop's step (train/step.c). */
#include "train/bt_task.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

tw_bt_task *tw_bt_task_of(const tw_task *t) { return t->self; }

static void upload_views(tw_task *t, const tw_batch *b) {
    tw_bt_task *T = t->self;
    tw_bt_model *m = &T->m;
    const tw_bt_model_opts *o = &T->o.model;
    TW_ASSERT(b->n == o->n_local);
    for (int v = 0; v < m->n_views; v++) {
        const float *src = o->cross ? (v % 2 ? b->s2[v / 2] : b->s1[v / 2]) : T->o.sar ? b->s1[v] : b->s2[v];
        tw_mem_from_host(m->be, m->x[v], src, (size_t)o->n_local * o->c_in[v % 2] * o->h * o->w * sizeof(float));
    }
}

static double step(tw_task *t, const tw_grad_ready *ready) {
    tw_bt_task *T = t->self;
    tw_bt_model *m = &T->m;
    tw_bt_model_forward(m);
    double loss = tw_barlow_forward_backward(&T->loss, m->be, T->comm, m->dz, (const float *const *)m->z);
    tw_bt_model_backward(m, &T->P, ready);
    return loss;
}

/* Rank 0's parameters, buffers and counters to every rank. */
static void broadcast(tw_comm *c, tw_params *P) {
    if (tw_comm_size(c) == 1) return;
    tw_comm_broadcast(c, P->params, P->n_params * sizeof(float), 0);
    if (P->n_buffers) tw_comm_broadcast(c, P->buffers, P->n_buffers * sizeof(float), 0);
    if (P->n_counters) tw_comm_broadcast(c, P->counters, P->n_counters * sizeof(int64_t), 0);
}

static tw_status reset(tw_task *t, uint64_t seed, tw_err *err) {
    (void)err;
    tw_bt_task *T = t->self;
    tw_bt_model_reset(&T->m, &T->P, seed);
    tw_barlow_reset(&T->loss, T->m.be);
    broadcast(T->comm, &T->P);
    return TW_OK;
}

static void task_free(tw_task *t) {
    tw_bt_task *T = t->self;
    if (!T) return;
    tw_backend *be = T->m.be;
    tw_bt_model_free(&T->m);
    if (be) tw_barlow_free(&T->loss, be);
    tw_params_free(&T->P);
    free(T);
    t->self = NULL;
}

tw_status tw_bt_task_init(tw_task *t, tw_backend *be, tw_comm *comm, const tw_bt_opts *o, int *bad,
                          tw_err *err) {
    tw_bt_task *T = calloc(1, sizeof *T);
    if (!T) return tw_err_set(err, TW_E_NOMEM, "Barlow Twins task: out of memory");
    T->comm = comm;
    T->o = *o;
    *t = (tw_task){.kind = "barlow-twins", .unit = "pairs", .P = &T->P, .reduce = TW_GRAD_SUM,
                   .reset = reset, .upload = upload_views, .step = step, .free = task_free, .self = T};
    tw_params_init(&T->P, be);
    tw_reducer red = tw_comm_reducer(comm);
    tw_status st = tw_bt_model_register(&T->m, be, &T->P, &o->model, &red, bad, err);
    if (st != TW_OK) return st;
    int n = o->model.n_local, d = o->model.proj_dim;
    tw_barlow_opts lo = o->model.intra ? tw_barlow_decur(n, d, o->lambda, o->c_gather, o->common, o->intra)
                                       : tw_barlow_pair(n, d, o->lambda, o->c_gather);
    tw_barlow_init(&T->loss, be, &lo, tw_comm_rank(comm), tw_comm_size(comm), bad);
    t->n_values = lo.n_terms;
    tw_barlow_register(&T->loss, &T->P);
    tw_params_alloc(&T->P, 0);   /* the optimizer keeps its own state */
    tw_barlow_bind(&T->loss, &T->P);
    st = tw_bt_model_alloc(&T->m, &T->P, bad, err);
    t->segs = T->P.segs;
    t->n_segs = T->P.n_segs;
    return st;
}
