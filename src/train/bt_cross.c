/* The cross-modal Barlow Twins model and step (bt_cross.h). The forward reads like torch's
 * z1 = s1.projector(s1.backbone(y_s1)); z2 = s2.projector(s2.backbone(y_s2)); loss(z1, z2); the
 * backward is the same list reversed, the update the single-source model's (train/update.h). */
#include "train/bt_cross.h"

#include <math.h>
#include <string.h>

#include "core/log.h"
#include "train/update.h"

static const char *const branch_prefix[2][2] = {{"s1.backbone.", "s1."}, {"s2.backbone.", "s2."}};

static tw_status branch_register(tw_bt_branch *b, tw_params *P, tw_backend *be, int s, int c_in,
                                 const tw_bt_opts *o, int ranks, int *bad, tw_err *err) {
    tw_status st = tw_resnet18_init(&b->net, P, branch_prefix[s][0], c_in, err);
    if (st != TW_OK) return st;
    tw_projector_init(&b->pj, be, o->n_local, TW_RESNET18_FEATS, o->proj_dim, ranks, bad);
    tw_projector_register(&b->pj, P, branch_prefix[s][1]);
    return TW_OK;
}

static tw_status branch_alloc(tw_bt_branch *b, tw_backend *be, int c_in, const tw_bt_opts *o, tw_err *err) {
    int n = o->n_local, G = o->bn_groups;
    tw_status st = tw_resnet18_plans_make(&b->plans, be, &b->net, n / G, o->h, o->w, err);
    if (st != TW_OK) return st;
    for (int g = 0; g < G; g++) tw_resnet18_acts_make(&b->acts[g], b->plans);
    size_t f_bytes = (size_t)n * TW_RESNET18_FEATS * sizeof(float);
    size_t z_bytes = (size_t)n * o->proj_dim * sizeof(float);
    b->x = tw_mem_alloc(be, (size_t)n * c_in * o->h * o->w * sizeof(float));
    b->feats = tw_mem_alloc(be, f_bytes);
    b->dfeats = tw_mem_alloc(be, f_bytes);
    b->z = tw_mem_alloc(be, z_bytes);
    b->dz = tw_mem_alloc(be, z_bytes);
    return TW_OK;
}

static void branch_free(tw_bt_branch *b, tw_backend *be, int G) {
    if (b->plans) {
        for (int g = 0; g < G; g++) tw_resnet18_acts_free(&b->acts[g], be);
        tw_resnet18_plans_free(b->plans);
    }
    tw_mem_free(be, b->x);
    tw_mem_free(be, b->feats);
    tw_mem_free(be, b->dfeats);
    tw_mem_free(be, b->z);
    tw_mem_free(be, b->dz);
    tw_projector_free(&b->pj, be);
}

tw_status tw_bt_cross_init(tw_bt_cross *m, tw_backend *be, tw_comm *comm, const tw_bt_cross_opts *o,
                           tw_err *err) {
    memset(m, 0, sizeof *m);
    m->be = be;
    m->comm = comm;
    m->o = *o;
    const tw_bt_opts *bo = &o->bt;
    int ranks = tw_comm_size(comm), c_in[2] = {bo->c_in, o->c_s2};
    tw_status st = tw_bt_opts_check(bo, ranks, err);
    if (st != TW_OK) return st;
    tw_params_init(&m->P, be);
    m->bad = tw_mem_alloc(be, sizeof(int));
    for (int s = 0; s < 2; s++) {
        st = branch_register(&m->br[s], &m->P, be, s, c_in[s], bo, ranks, m->bad, err);
        if (st != TW_OK) return st;
    }
    tw_barlow_init(&m->loss, be, bo->n_local, bo->proj_dim, tw_comm_rank(comm), ranks, bo->lambda,
                   bo->c_gather, m->bad);
    tw_bt_loss_register(m->id_bn_stats, &m->P, bo->proj_dim);
    tw_params_alloc(&m->P, 0);   /* the optimizer keeps its own state */
    for (int s = 0; s < 2; s++) tw_projector_bind(&m->br[s].pj, &m->P);
    tw_bt_loss_bind(&m->loss, &m->P, m->id_bn_stats);
    for (int s = 0; s < 2; s++) {
        st = branch_alloc(&m->br[s], be, c_in[s], bo, err);
        if (st != TW_OK) return st;
        if (bo->backbone_sync) {
            tw_reducer red = tw_comm_reducer(comm);
            tw_resnet18_plans_sync(m->br[s].plans, &m->br[s].net, &red, m->bad);
        }
    }
    if (bo->external_optim) return TW_OK;
    return tw_optim_create(&m->optim, be, m->P.segs, m->P.n_segs, m->P.n_params, &bo->optim, &bo->sched,
                           err);
}

void tw_bt_cross_free(tw_bt_cross *m) {
    tw_backend *be = m->be;
    if (!be) return;
    for (int s = 0; s < 2; s++) branch_free(&m->br[s], be, m->o.bt.bn_groups);
    tw_barlow_free(&m->loss, be);
    tw_params_free(&m->P);
    tw_mem_free(be, m->bad);
    if (m->optim) tw_optim_free(m->optim);
    memset(m, 0, sizeof *m);
}

/* A fixed odd constant ("S2 branch") mixed into the seed: distinct from seed for every seed. */
uint64_t tw_bt_cross_s2_seed(uint64_t seed) { return seed ^ 0x5332b4a9c4e1f00dULL; }

void tw_bt_cross_reset(tw_bt_cross *m, uint64_t seed) {
    uint64_t seeds[2] = {seed, tw_bt_cross_s2_seed(seed)};
    for (int s = 0; s < 2; s++) {
        tw_resnet18_init_weights(&m->br[s].net, seeds[s]);
        tw_projector_reset(&m->br[s].pj, &m->P, seeds[s]);
    }
    tw_bt_loss_reset(&m->loss, m->be);
    tw_bt_params_broadcast(m->comm, &m->P);
}

double tw_bt_cross_forward_backward(tw_bt_cross *m, const tw_grad_ready *ready) {
    tw_backend *be = m->be;
    const tw_bt_opts *o = &m->o.bt;
    int G = o->bn_groups, rows = o->n_local / G, c_in[2] = {o->c_in, m->o.c_s2};
    size_t f_group = (size_t)rows * TW_RESNET18_FEATS;

    /* forward: each source's backbone (per BN group) -> its projector -> the loss */
    tw_mem_zero(be, m->bad, sizeof(int));
    for (int s = 0; s < 2; s++) {
        tw_bt_branch *b = &m->br[s];
        size_t x_group = (size_t)rows * c_in[s] * o->h * o->w;
        for (int g = 0; g < G; g++) {
            tw_resnet18_forward(&b->acts[g], b->x + g * x_group, &b->net, b->plans, 1);
            tw_mem_copy(be, b->feats + g * f_group, b->acts[g].feats, f_group * sizeof(float));
        }
    }
    tw_reducer red = tw_comm_reducer(m->comm);
    for (int s = 0; s < 2; s++) tw_projector_forward(&m->br[s].pj, be, &red, 0, m->br[s].z, m->br[s].feats);
    double loss = tw_barlow_forward_backward(&m->loss, be, m->comm, m->br[0].dz, m->br[1].dz, m->br[0].z,
                                             m->br[1].z);

    /* backward: each projector (+= into its zeroed gradients: the arena range from its backbone's
     * end to the next branch's backbone, or to the end), then its backbone (= for the first BN
     * group, += after). The S2 branch first: it sits after the S1 branch in the arena, so what
     * is final grows from the arena's end (tw_grad_ready). */
    tw_params *P = &m->P;
    for (int s = 1; s >= 0; s--) {
        tw_bt_branch *b = &m->br[s];
        size_t end = s == 0 ? m->br[1].net.grad_begin : P->n_params;
        tw_mem_zero(be, P->grads + b->net.grad_end, (end - b->net.grad_end) * sizeof(float));
        tw_projector_backward(&b->pj, be, &red, 0, b->dfeats, b->dz, b->feats);
        tw_grad_ready_at(ready, b->net.grad_end);
        for (int g = 0; g < G; g++)
            tw_resnet18_backward(&b->net, &b->acts[g], b->dfeats + g * f_group, b->plans, g > 0, ready,
                                 g == G - 1);
    }
    return loss;
}

void tw_bt_cross_end_step(tw_bt_cross *m, int accepted) {
    for (int s = 0; s < 2; s++) tw_resnet18_sync_commit(m->br[s].plans, accepted);
    for (int s = 0; s < 2; s++) tw_projector_commit(&m->br[s].pj, m->be, accepted);
    tw_barlow_commit(&m->loss, m->be, accepted);
}

double tw_bt_cross_step(tw_bt_cross *m, double *lr) {
    double loss = tw_train_sum_step(m->comm, m->be, &m->P, m->optim, tw_bt_cross_forward_backward(m, NULL), lr,
                                    m->bad);
    tw_bt_cross_end_step(m, isfinite(loss));
    return loss;
}
