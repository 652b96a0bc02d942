/* The Barlow Twins model (bt_model.h). The forward reads like the official one,
 * z1 = projector(backbone(y1)); z2 = projector(backbone(y2)), with the cross-modal pairs' second
 * view through the S2 branch; the backward is the same list reversed. */
#include "model/bt_model.h"

#include <string.h>

#include "core/log.h"

static const char *const prefixes[2][2][2] = {
    {{"backbone.", ""}, {"", ""}},                     /* one branch for both views */
    {{"s1.backbone.", "s1."}, {"s2.backbone.", "s2."}} /* cross: S1, S2 */
};

/* The branch that view v goes through, and its projector's view slot. */
static int branch_of(const tw_bt_model *m, int v) { return m->o.cross ? v % 2 : 0; }
static int slot_of(const tw_bt_model *m, int v) { return m->o.cross ? v / 2 : v; }

tw_status tw_bt_model_opts_check(const tw_bt_model_opts *o, int n_ranks, tw_err *err) {
    int G = o->bn_groups, n = o->n_local;
    if (G < 1 || G > TW_BT_MAX_GROUPS || n % G)
        return tw_err_set(err, TW_E_RANGE, "bn_groups %d must divide the %d pairs per rank (1..%d)", G, n,
                          TW_BT_MAX_GROUPS);
    if (o->backbone_sync && G != 1)
        return tw_err_set(err, TW_E_RANGE, "bn_groups %d: a synchronised backbone BN takes one batch per rank", G);
    if (n < 2 && n_ranks < 2)
        return tw_err_set(err, TW_E_RANGE, "batch norm needs at least 2 pairs per step, got %d", n);
    if (o->intra && !o->cross)
        return tw_err_set(err, TW_E_USAGE, "a second view of each source (intra) needs the cross-modal model");
    if (!o->cross && o->c_in[1] != o->c_in[0])
        return tw_err_set(err, TW_E_SHAPE, "one backbone for both views: %d and %d channels", o->c_in[0],
                          o->c_in[1]);
    return TW_OK;
}

tw_status tw_bt_model_register(tw_bt_model *m, tw_backend *be, tw_params *P, const tw_bt_model_opts *o,
                               const tw_reducer *red, int *bad, tw_err *err) {
    memset(m, 0, sizeof *m);
    m->be = be;
    m->o = *o;
    m->red = *red;
    m->n_branches = o->cross ? 2 : 1;
    m->n_views = o->intra ? 4 : 2;
    tw_status st = tw_bt_model_opts_check(o, red->n_ranks, err);
    for (int b = 0; b < m->n_branches && st == TW_OK; b++) {
        tw_bt_branch *br = &m->br[b];
        st = tw_resnet18_init(&br->net, P, prefixes[o->cross][b][0], o->c_in[b], err);
        if (st != TW_OK) break;
        tw_projector_init(&br->pj, be, o->n_local, TW_RESNET18_FEATS, o->proj_dim, red->n_ranks, bad);
        tw_projector_register(&br->pj, P, prefixes[o->cross][b][1]);
    }
    return st;
}

tw_status tw_bt_model_alloc(tw_bt_model *m, const tw_params *P, int *bad, tw_err *err) {
    const tw_bt_model_opts *o = &m->o;
    tw_backend *be = m->be;
    int n = o->n_local, G = o->bn_groups;
    for (int b = 0; b < m->n_branches; b++) {
        tw_bt_branch *br = &m->br[b];
        tw_projector_bind(&br->pj, P);
        tw_status st = tw_resnet18_plans_make(&br->plans, be, &br->net, n / G, o->h, o->w, err);
        if (st != TW_OK) return st;
        if (o->backbone_sync) tw_resnet18_plans_sync(br->plans, &br->net, &m->red, bad);
    }
    size_t f_bytes = (size_t)n * TW_RESNET18_FEATS * sizeof(float);
    size_t z_bytes = (size_t)n * o->proj_dim * sizeof(float);
    for (int v = 0; v < m->n_views; v++) {
        for (int g = 0; g < G; g++) tw_resnet18_acts_make(&m->acts[v][g], m->br[branch_of(m, v)].plans);
        m->x[v] = tw_mem_alloc(be, (size_t)n * o->c_in[v % 2] * o->h * o->w * sizeof(float));
        m->feats[v] = tw_mem_alloc(be, f_bytes);
        m->dfeats[v] = tw_mem_alloc(be, f_bytes);
        m->z[v] = tw_mem_alloc(be, z_bytes);
        m->dz[v] = tw_mem_alloc(be, z_bytes);
    }
    return TW_OK;
}

void tw_bt_model_free(tw_bt_model *m) {
    tw_backend *be = m->be;
    if (!be) return;
    for (int v = 0; v < m->n_views; v++) {
        if (m->br[branch_of(m, v)].plans)
            for (int g = 0; g < m->o.bn_groups; g++) tw_resnet18_acts_free(&m->acts[v][g], be);
        tw_mem_free(be, m->x[v]);
        tw_mem_free(be, m->feats[v]);
        tw_mem_free(be, m->dfeats[v]);
        tw_mem_free(be, m->z[v]);
        tw_mem_free(be, m->dz[v]);
    }
    for (int b = 0; b < m->n_branches; b++) {
        if (m->br[b].plans) tw_resnet18_plans_free(m->br[b].plans);
        tw_projector_free(&m->br[b].pj, be);
    }
    memset(m, 0, sizeof *m);
}

/* A fixed odd constant ("S2 branch") mixed into the seed: distinct from seed for every seed. */
uint64_t tw_bt_s2_seed(uint64_t seed) { return seed ^ 0x5332b4a9c4e1f00dULL; }

void tw_bt_model_reset(tw_bt_model *m, tw_params *P, uint64_t seed) {
    uint64_t seeds[2] = {seed, tw_bt_s2_seed(seed)};
    for (int b = 0; b < m->n_branches; b++) {
        tw_resnet18_init_weights(&m->br[b].net, seeds[b]);
        tw_projector_reset(&m->br[b].pj, P, seeds[b]);
    }
}

void tw_bt_model_forward(tw_bt_model *m) {
    int G = m->o.bn_groups, rows = m->o.n_local / G;
    size_t f_group = (size_t)rows * TW_RESNET18_FEATS;
    for (int v = 0; v < m->n_views; v++) {
        tw_bt_branch *br = &m->br[branch_of(m, v)];
        size_t x_group = (size_t)rows * m->o.c_in[v % 2] * m->o.h * m->o.w;
        for (int g = 0; g < G; g++) {
            tw_resnet18_forward(&m->acts[v][g], m->x[v] + g * x_group, &br->net, br->plans, 1);
            tw_mem_copy(m->be, m->feats[v] + g * f_group, m->acts[v][g].feats, f_group * sizeof(float));
        }
    }
    for (int v = 0; v < m->n_views; v++)
        tw_projector_forward(&m->br[branch_of(m, v)].pj, m->be, &m->red, slot_of(m, v), m->z[v], m->feats[v]);
}

void tw_bt_model_backward(tw_bt_model *m, tw_params *P, const tw_grad_ready *ready) {
    int G = m->o.bn_groups, rows = m->o.n_local / G;
    size_t f_group = (size_t)rows * TW_RESNET18_FEATS;
    for (int b = m->n_branches - 1; b >= 0; b--) {
        tw_bt_branch *br = &m->br[b];
        /* The views through this branch: v0, v0 + step, ..., v1. */
        int v0 = m->o.cross ? b : 0, step = m->o.cross ? 2 : 1, v1 = m->n_views - (m->o.cross ? 2 - b : 1);
        /* The projector (+= into its zeroed range: from the backbone's end to the next branch's
         * backbone, or to the arena's end), then the backbone (= for its first call, += after). */
        size_t end = b + 1 < m->n_branches ? m->br[b + 1].net.grad_begin : P->n_params;
        tw_mem_zero(m->be, P->grads + br->net.grad_end, (end - br->net.grad_end) * sizeof(float));
        for (int v = v0; v <= v1; v += step)
            tw_projector_backward(&br->pj, m->be, &m->red, slot_of(m, v), m->dfeats[v], m->dz[v], m->feats[v]);
        tw_grad_ready_at(ready, br->net.grad_end);
        for (int v = v0; v <= v1; v += step)
            for (int g = 0; g < G; g++)
                tw_resnet18_backward(&br->net, &m->acts[v][g], m->dfeats[v] + g * f_group, br->plans,
                                     v > v0 || g > 0, ready, v == v1 && g == G - 1);
    }
}
