/* ResNet18's forward and backward over one activation set, with the backward's stage-by-stage
 * "gradients final" calls (core/grad_ready.h). Plans, parameters
 * and activation sets are made in resnet18.c. BN is fused with the ReLU after it, and each
 * block's residual add with its ReLU. */
#include "core/log.h"
#include "model/resnet18.h"

/* ---- forward -------------------------------------------------------------------------------- */

/* A synchronised unit keeps its global mean and inv_std where a local one keeps its batch mean
 * and variance. */
static tw_syncbn_cache sync_cache(tw_resnet18_acts *a, int u) {
    return (tw_syncbn_cache){a->save_mean[u], a->save_var[u]};
}

static void unit_forward(tw_resnet18_acts *a, const tw_tensor *x, tw_resnet18 *m,
                         tw_resnet18_plans *p, int u, int train) {
    const tw_resnet18_unit *x_u = &m->u[u];
    tw_params *P = m->P;
    tw_conv_forward(p->be, p->conv[u], &a->conv_y[u], x, tw_params_ptr(P, x_u->w));
    if (train && p->sync) {
        tw_syncbn_cache c = sync_cache(a, u);
        tw_syncbn_forward_2d(&p->sync->bn[u], p->be, &p->sync->red, &a->bn_y[u], &c, &a->conv_y[u],
                             tw_params_ptr(P, x_u->gamma), tw_params_ptr(P, x_u->beta));
    } else if (train) {
        tw_bn_forward_train(p->be, p->bn[u], &a->bn_y[u], a->save_mean[u], a->save_var[u],
                            a->bn_ws[u], &a->conv_y[u], tw_params_ptr(P, x_u->gamma),
                            tw_params_ptr(P, x_u->beta), tw_params_ptr(P, x_u->run_mean),
                            tw_params_ptr(P, x_u->run_var));
        (*tw_params_counter(P, x_u->n_tracked))++;
    } else {
        tw_bn_forward_eval(p->be, p->bn[u], &a->bn_y[u], &a->conv_y[u],
                           tw_params_ptr(P, x_u->gamma), tw_params_ptr(P, x_u->beta),
                           tw_params_ptr(P, x_u->run_mean), tw_params_ptr(P, x_u->run_var));
    }
}

/* y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut = x or bn(conv1x1(x)). */
static void block_forward(tw_resnet18_acts *a, const tw_tensor *x, tw_resnet18 *m,
                          tw_resnet18_plans *p, int i, int train) {
    const tw_resnet18_block *b = &m->b[i];
    unit_forward(a, x, m, p, b->conv1, train);
    unit_forward(a, &a->bn_y[b->conv1], m, p, b->conv2, train);
    if (b->down >= 0) unit_forward(a, x, m, p, b->down, train);
    tw_add_relu_forward(p->be, &a->block_y[i], &a->bn_y[b->conv2],
                        b->down >= 0 ? &a->bn_y[b->down] : x);
}

void tw_resnet18_forward(tw_resnet18_acts *a, const float *x, tw_resnet18 *m,
                         tw_resnet18_plans *p, int train) {
    TW_ASSERT(p->c == m->c_in && a->x.n == p->n && a->x.h == p->h && a->x.w == p->w);
    TW_ASSERT(!(train && a->eval_only));
    a->bn_train = train;
    tw_tensor image = {(void *)x, p->n, p->c, p->h, p->w, TW_F32, TW_LAYOUT_NCHW};
    tw_reorder(p->be, &a->x, &image);
    unit_forward(a, &a->x, m, p, 0, train);
    tw_maxpool_forward(p->be, p->pool, &a->pool_y, a->pool_ws, &a->bn_y[0]);
    for (int i = 0; i < TW_RESNET18_BLOCKS; i++) block_forward(a, i ? &a->block_y[i - 1] : &a->pool_y, m, p, i, train);
    tw_avgpool_forward(p->be, a->feats, &a->block_y[TW_RESNET18_BLOCKS - 1]);
}

/* ---- backward ------------------------------------------------------------------------------- */

/* Where unit tensor e's weight gradient goes: the arena (=) or the scratch that is added later. */
static float *grad_of(tw_resnet18 *m, tw_resnet18_plans *p, int e, int accumulate) {
    if (!accumulate) return tw_params_grad(m->P, e);
    return p->grad_scratch + (m->P->entries[e].offset - m->grad_begin);
}

/* From dy (the gradient at BN's output, before the fused ReLU when there is one): BN's and the
 * conv's weight gradients, and dx (the conv input's gradient, =) unless dx is NULL. */
static void unit_backward(tw_resnet18 *m, tw_resnet18_acts *a, tw_tensor *dx, const tw_tensor *dy,
                          const tw_tensor *x, tw_resnet18_plans *p, int u, int accumulate) {
    const tw_resnet18_unit *x_u = &m->u[u];
    float *dgamma = grad_of(m, p, x_u->gamma, accumulate), *dbeta = grad_of(m, p, x_u->beta, accumulate);
    if (a->bn_train && p->sync) {
        tw_syncbn_cache c = sync_cache(a, u);
        tw_syncbn_backward_2d(&p->sync->bn[u], p->be, &p->sync->red, &a->d_conv_y[u], dgamma, dbeta,
                              dy, &a->bn_y[u], &a->conv_y[u], &c, tw_params_ptr(m->P, x_u->gamma));
    } else if (a->bn_train)
        tw_bn_backward(p->be, p->bn[u], &a->d_conv_y[u], dgamma, dbeta, dy, &a->conv_y[u],
                       a->save_mean[u], a->save_var[u], a->bn_ws[u], tw_params_ptr(m->P, x_u->gamma));
    else
        tw_bn_backward_eval(p->be, &a->d_conv_y[u], dgamma, dbeta, dy, &a->conv_y[u],
                            x_u->relu ? &a->bn_y[u] : NULL, tw_params_ptr(m->P, x_u->gamma),
                            tw_params_ptr(m->P, x_u->run_mean), tw_params_ptr(m->P, x_u->run_var),
                            TW_BN_EPS, x_u->relu);
    tw_conv_backward_weights(p->be, p->conv[u], grad_of(m, p, x_u->w, accumulate), &a->d_conv_y[u], x);
    if (dx) tw_conv_backward_data(p->be, p->conv[u], dx, &a->d_conv_y[u], tw_params_ptr(m->P, x_u->w));
}

/* dx = the gradient at block i's input x (=), from a->d_block_y[i]. */
static void block_backward(tw_resnet18 *m, tw_resnet18_acts *a, tw_tensor *dx, const tw_tensor *x,
                           tw_resnet18_plans *p, int i, int accumulate) {
    const tw_resnet18_block *b = &m->b[i];
    tw_tensor *g = &a->d_bn_y[b->conv2];   /* the gradient at both inputs of the add */
    tw_relu_backward(p->be, g, &a->d_block_y[i], &a->block_y[i]);
    unit_backward(m, a, &a->d_bn_y[b->conv1], g, &a->bn_y[b->conv1], p, b->conv2, accumulate);
    unit_backward(m, a, &a->d_main[i], &a->d_bn_y[b->conv1], x, p, b->conv1, accumulate);
    if (b->down >= 0) {
        unit_backward(m, a, &a->d_down[i], g, x, p, b->down, accumulate);
        tw_add(p->be, dx, &a->d_main[i], &a->d_down[i]);
    } else {
        tw_add(p->be, dx, &a->d_main[i], g);
    }
}

/* Stage s's (0: stem, 1..4: layer1..4) range in the arena: from its first tensor to the next
 * stage's (torchvision's registration order keeps a stage's tensors together). */
static size_t stage_lo(const tw_resnet18 *m, int s) {
    return s == 0 ? m->grad_begin : m->P->entries[m->u[m->b[2 * (s - 1)].conv1].w].offset;
}

/* Stage s's weight gradients are final: with accumulate, the scratch's share is added to the
 * arena first (the alignment gaps are 0 + 0), then `ready` hears of it. */
static void stage_done(tw_resnet18 *m, tw_resnet18_plans *p, int s, int accumulate, const tw_grad_ready *ready) {
    size_t lo = stage_lo(m, s), hi = s == 4 ? m->grad_end : stage_lo(m, s + 1);
    if (accumulate) {
        tw_tensor g = {m->P->grads + lo, 1, (int)(hi - lo), 1, 1, TW_F32, TW_LAYOUT_NCHW};
        tw_tensor sc = {p->grad_scratch + (lo - m->grad_begin), 1, (int)(hi - lo), 1, 1, TW_F32, TW_LAYOUT_NCHW};
        tw_add(p->be, &g, &g, &sc);
    }
    tw_grad_ready_at(ready, lo);
}

void tw_resnet18_backward(tw_resnet18 *m, tw_resnet18_acts *a, const float *dfeats,
                          tw_resnet18_plans *p, int accumulate, const tw_grad_ready *ready, int last) {
    TW_ASSERT(!a->eval_only);
    tw_avgpool_backward(p->be, &a->d_block_y[TW_RESNET18_BLOCKS - 1], dfeats);
    size_t final_lo = m->grad_end;   /* what `ready` has heard is final */
    for (int s = 3; s >= 0; s--) {
        for (int i = 2 * s + 1; i >= 2 * s; i--) {
            block_backward(m, a, i ? &a->d_block_y[i - 1] : &a->d_pool_y,
                           i ? &a->block_y[i - 1] : &a->pool_y, p, i, accumulate);
            tw_grad_ready_at(ready, final_lo);   /* progress between blocks */
        }
        if (ready && last) {
            stage_done(m, p, 1 + s, accumulate, ready);
            final_lo = stage_lo(m, 1 + s);
        }
    }
    tw_maxpool_backward(p->be, p->pool, &a->d_bn_y[0], &a->d_pool_y, a->pool_ws);
    unit_backward(m, a, NULL, &a->d_bn_y[0], &a->x, p, 0, accumulate);
    if (ready && last) {
        stage_done(m, p, 0, accumulate, ready);
    } else if (accumulate) {
        /* One add over the backbone's whole gradient range; the alignment gaps are 0 + 0. */
        size_t n = m->grad_end - m->grad_begin;
        tw_tensor g = {m->P->grads + m->grad_begin, 1, (int)n, 1, 1, TW_F32, TW_LAYOUT_NCHW};
        tw_tensor s = {p->grad_scratch, 1, (int)n, 1, 1, TW_F32, TW_LAYOUT_NCHW};
        tw_add(p->be, &g, &g, &s);
    }
}
