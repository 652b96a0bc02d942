/* The Barlow Twins model and step (bt_model.h). The step reads like the official forward:
 * backbone(y1), backbone(y2) -> projector -> loss; then the same list reversed, one all-reduce
 * of the flat gradient buffer, and the optimizer over the arena's segments. */
#include "train/bt_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "train/update.h"

tw_status tw_bt_model_init(tw_bt_model *m, tw_backend *be, tw_comm *comm, const tw_bt_opts *o,
                           tw_err *err) {
    memset(m, 0, sizeof *m);
    m->be = be;
    m->comm = comm;
    m->o = *o;
    int G = o->bn_groups, n = o->n_local, ranks = tw_comm_size(comm);
    tw_status st = tw_bt_opts_check(o, ranks, err);
    if (st != TW_OK) return st;
    tw_params_init(&m->P, be);
    st = tw_resnet18_init(&m->net, &m->P, "backbone.", o->c_in, err);
    if (st != TW_OK) return st;
    m->bad = tw_mem_alloc(be, sizeof(int));
    tw_projector_init(&m->pj, be, n, TW_RESNET18_FEATS, o->proj_dim, ranks, m->bad);
    tw_projector_register(&m->pj, &m->P, "");
    tw_barlow_init(&m->loss, be, n, o->proj_dim, tw_comm_rank(comm), ranks, o->lambda, o->c_gather,
                   m->bad);
    tw_bt_loss_register(m->id_bn_stats, &m->P, o->proj_dim);
    tw_params_alloc(&m->P, 0);   /* the optimizer keeps its own state */
    tw_projector_bind(&m->pj, &m->P);
    tw_bt_loss_bind(&m->loss, &m->P, m->id_bn_stats);

    st = tw_resnet18_plans_make(&m->plans, be, &m->net, n / G, o->h, o->w, err);
    if (st != TW_OK) return st;
    if (o->backbone_sync) {
        tw_reducer red = tw_comm_reducer(comm);
        tw_resnet18_plans_sync(m->plans, &m->net, &red, m->bad);
    }
    size_t x_bytes = (size_t)n * o->c_in * o->h * o->w * sizeof(float);
    size_t f_bytes = (size_t)n * TW_RESNET18_FEATS * sizeof(float);
    size_t z_bytes = (size_t)n * o->proj_dim * sizeof(float);
    for (int v = 0; v < 2; v++) {
        for (int g = 0; g < G; g++) tw_resnet18_acts_make(&m->acts[v][g], m->plans);
        m->x[v] = tw_mem_alloc(be, x_bytes);
        m->feats[v] = tw_mem_alloc(be, f_bytes);
        m->dfeats[v] = tw_mem_alloc(be, f_bytes);
        m->z[v] = tw_mem_alloc(be, z_bytes);
        m->dz[v] = tw_mem_alloc(be, z_bytes);
    }
    if (o->graph && ranks > 1 && tw_comm_kind_of(comm) != TW_COMM_NCCL)
        return tw_err_set(err, TW_E_USAGE, "a recorded step (graph) on %d ranks needs the nccl communicator, not %s",
                          ranks, tw_comm_kind_name(tw_comm_kind_of(comm)));
    m->counter_delta = calloc(m->P.n_counters + 1, sizeof *m->counter_delta);
    m->counters_kept = calloc(m->P.n_counters + 1, sizeof *m->counters_kept);
    if (!m->counter_delta || !m->counters_kept)
        return tw_err_set(err, TW_E_NOMEM, "Barlow Twins model: out of memory");
    if (o->external_optim) return TW_OK;
    return tw_optim_create(&m->optim, be, m->P.segs, m->P.n_segs, m->P.n_params, &o->optim, &o->sched,
                           err);
}

void tw_bt_model_free(tw_bt_model *m) {
    tw_backend *be = m->be;
    if (!be) return;
    for (int v = 0; v < 2; v++) {
        if (m->plans)
            for (int g = 0; g < m->o.bn_groups; g++) tw_resnet18_acts_free(&m->acts[v][g], be);
        tw_mem_free(be, m->x[v]);
        tw_mem_free(be, m->feats[v]);
        tw_mem_free(be, m->dfeats[v]);
        tw_mem_free(be, m->z[v]);
        tw_mem_free(be, m->dz[v]);
    }
    if (m->plans) tw_resnet18_plans_free(m->plans);
    tw_projector_free(&m->pj, be);
    tw_barlow_free(&m->loss, be);
    tw_params_free(&m->P);
    tw_mem_free(be, m->bad);
    if (m->optim) tw_optim_free(m->optim);
    free(m->counter_delta);
    free(m->counters_kept);
    memset(m, 0, sizeof *m);
}

tw_status tw_bt_opts_check(const tw_bt_opts *o, int n_ranks, tw_err *err) {
    int G = o->bn_groups, n = o->n_local;
    if (G < 1 || G > TW_BT_MAX_GROUPS || n % G)
        return tw_err_set(err, TW_E_RANGE, "bn_groups %d must divide the %d pairs per rank (1..%d)", G,
                          n, TW_BT_MAX_GROUPS);
    if (o->backbone_sync && G != 1)
        return tw_err_set(err, TW_E_RANGE, "bn_groups %d: a synchronised backbone BN takes one batch per rank", G);
    if (n < 2 && n_ranks < 2)
        return tw_err_set(err, TW_E_RANGE, "batch norm needs at least 2 pairs per step, got %d", n);
    return TW_OK;
}

void tw_bt_loss_register(int id[3], tw_params *P, int d) {
    int v1[1] = {d};
    id[0] = tw_params_add(P, "bn.running_mean", TW_PARAM_BUFFER, 1, v1);
    id[1] = tw_params_add(P, "bn.running_var", TW_PARAM_BUFFER, 1, v1);
    id[2] = tw_params_add(P, "bn.num_batches_tracked", TW_PARAM_COUNTER, 0, NULL);
}

void tw_bt_loss_bind(tw_barlow *L, const tw_params *P, const int id[3]) {
    L->bn.run_mean = tw_params_ptr(P, id[0]);
    L->bn.run_var = tw_params_ptr(P, id[1]);
    L->bn.n_batches = tw_params_counter(P, id[2]);
}

void tw_bt_loss_reset(tw_barlow *L, tw_backend *be) {
    int d = L->d;
    float *ones = malloc((size_t)d * sizeof(float));
    TW_ASSERT(ones);
    for (int j = 0; j < d; j++) ones[j] = 1.0f;
    tw_mem_zero(be, L->bn.run_mean, (size_t)d * sizeof(float));
    tw_mem_from_host(be, L->bn.run_var, ones, (size_t)d * sizeof(float));
    *L->bn.n_batches = 0;
    free(ones);
}

void tw_bt_params_broadcast(tw_comm *c, tw_params *P) {
    if (tw_comm_size(c) == 1) return;
    tw_comm_broadcast(c, P->params, P->n_params * sizeof(float), 0);
    if (P->n_buffers) tw_comm_broadcast(c, P->buffers, P->n_buffers * sizeof(float), 0);
    if (P->n_counters) tw_comm_broadcast(c, P->counters, P->n_counters * sizeof(int64_t), 0);
}

void tw_bt_model_broadcast(tw_bt_model *m) { tw_bt_params_broadcast(m->comm, &m->P); }

void tw_bt_model_reset(tw_bt_model *m, uint64_t seed) {
    tw_resnet18_init_weights(&m->net, seed);
    tw_projector_reset(&m->pj, &m->P, seed);
    tw_bt_loss_reset(&m->loss, m->be);
    tw_bt_model_broadcast(m);
}

double tw_bt_model_forward_backward(tw_bt_model *m, const tw_grad_ready *ready) {
    tw_backend *be = m->be;
    tw_comm *comm = m->comm;
    int G = m->o.bn_groups, rows = m->o.n_local / G;
    size_t x_group = (size_t)rows * m->o.c_in * m->o.h * m->o.w;
    size_t f_group = (size_t)rows * TW_RESNET18_FEATS;

    /* forward: backbone (per BN group) -> projector -> loss */
    tw_mem_zero(be, m->bad, sizeof(int));
    for (int v = 0; v < 2; v++)
        for (int g = 0; g < G; g++) {
            tw_resnet18_forward(&m->acts[v][g], m->x[v] + g * x_group, &m->net, m->plans, 1);
            tw_mem_copy(be, m->feats[v] + g * f_group, m->acts[v][g].feats, f_group * sizeof(float));
        }
    tw_reducer red = tw_comm_reducer(comm);
    for (int v = 0; v < 2; v++) tw_projector_forward(&m->pj, be, &red, v, m->z[v], m->feats[v]);
    double loss = tw_barlow_forward_backward(&m->loss, be, comm, m->dz[0], m->dz[1], m->z[0], m->z[1]);

    /* backward: projector (+= into its zeroed gradients), then the backbone (= for the first
     * call, += after) */
    tw_params *P = &m->P;
    tw_mem_zero(be, P->grads + m->net.grad_end, (P->n_params - m->net.grad_end) * sizeof(float));
    for (int v = 0; v < 2; v++)
        tw_projector_backward(&m->pj, be, &red, v, m->dfeats[v], m->dz[v], m->feats[v]);
    tw_grad_ready_at(ready, m->net.grad_end);   /* the projector's, after the backbone's */
    for (int v = 0; v < 2; v++)
        for (int g = 0; g < G; g++)
            tw_resnet18_backward(&m->net, &m->acts[v][g], m->dfeats[v] + g * f_group, m->plans,
                                 v > 0 || g > 0, ready, v == 1 && g == G - 1);

    return loss;
}

void tw_bt_model_end_step(tw_bt_model *m, int accepted) {
    tw_resnet18_sync_commit(m->plans, accepted);
    tw_projector_commit(&m->pj, m->be, accepted);
    tw_barlow_commit(&m->loss, m->be, accepted);
}

/* The whole step's device work, with no host decision inside: forward, loss, backward, the
 * gradient all-reduce, the checked update (skipped on the device when m->bad is raised), the
 * commits (the same), then the verdict's value. Value ops in order: the loss, the flag. */
static void queue_step(tw_bt_model *m) {
    tw_params *P = &m->P;
    tw_bt_model_forward_backward(m, NULL);
    tw_comm_allreduce(m->comm, P->grads, P->n_params, TW_F32, TW_REDUCE_SUM);
    tw_train_queue_apply(m->be, P, m->optim, (tw_grad_span){0, P->n_params}, TW_GRAD_SUM, 1, m->bad);
    tw_bt_model_end_step(m, 1);
    tw_read_flag(m->be, m->bad);
}

/* Records queue_step. The host counters it moves while recording (num_batches_tracked) are put
 * back and kept as the delta each accepted replay adds. */
static void record_step(tw_bt_model *m) {
    tw_params *P = &m->P;
    tw_err err = {0};
    tw_status st = tw_backend_graph_begin(m->be, &err);
    if (st == TW_E_UNSUPPORTED) {
        m->graph_state = -1;
        return;
    }
    if (st == TW_OK) {
        queue_step(m);
        st = tw_backend_graph_end(m->be, &err);
    }
    for (size_t i = 0; i < P->n_counters; i++) {
        m->counter_delta[i] = P->counters[i] - m->counters_kept[i];
        P->counters[i] = m->counters_kept[i];
    }
    if (st != TW_OK) tw_fatal("tw_bt_model_step", err.msg, __FILE__, __LINE__);
    m->graph_state = 1;
}

/* This step's optimizer values into the upload table the recording reads, the replay, then the
 * one host read: the loss and the verdict. */
static double replay_step(tw_bt_model *m, double *lr) {
    double lr_used = tw_optim_advance(m->optim), v[2];
    tw_backend_graph_replay(m->be, v, 2);
    if (!tw_train_verdict(m->optim, v[1]) || !isfinite(v[0])) return NAN;
    for (size_t i = 0; i < m->P.n_counters; i++) m->P.counters[i] += m->counter_delta[i];
    if (lr) *lr = lr_used;
    return v[0];
}

double tw_bt_model_step(tw_bt_model *m, double *lr) {
    tw_params *P = &m->P;
    memcpy(m->counters_kept, P->counters, P->n_counters * sizeof *P->counters);
    if (m->o.graph && m->warm && m->graph_state == 0) record_step(m);
    if (m->graph_state == 1) return replay_step(m, lr);
    double loss = tw_train_sum_step(m->comm, m->be, P, m->optim, tw_bt_model_forward_backward(m, NULL), lr, m->bad);
    tw_bt_model_end_step(m, isfinite(loss));
    if (!isfinite(loss)) memcpy(P->counters, m->counters_kept, P->n_counters * sizeof *P->counters);
    m->warm = 1;
    return loss;
}
