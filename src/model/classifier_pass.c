/* The classifier's forward and backward (classifier.h): input stacking for early fusion, the
 * backbones per BN group, and the heads as GEMMs. A Linear y = x Wᵀ + b keeps W [out, in] as
 * torch does; over the concatenation [f1, f2] it is two GEMMs on the two column blocks of W
 * (leading dimension in = 1024), so the features are never copied into one buffer. */
#include <string.h>

#include "core/log.h"
#include "model/classifier.h"

/* The head's input: one or two [n, 512] blocks of the concatenation. */
typedef struct head_in {
    int n_parts;
    const float *x[2];
    float *dx[2];
} head_in;

/* y [n, out] = [x0, x1] Wᵀ + b. */
static void linear_forward(tw_backend *be, float *y, const head_in *in, int d_part, const float *w,
                           const float *b, int n, int d_out) {
    int ld = d_part * in->n_parts;
    for (int i = 0; i < in->n_parts; i++)
        tw_gemm(be, 0, 1, n, d_out, d_part, 1.0f, in->x[i], d_part, w + (size_t)i * d_part, ld,
                i ? 1.0f : 0.0f, y, d_out);
    tw_bias_forward(be, y, b, n, d_out);
}

/* dW = dyᵀ [x0, x1] (=), db = Σ dy (=); dx_i = dy W_i (=, or += when accumulate), skipped where
 * in->dx[i] is NULL. */
static void linear_backward(tw_backend *be, float *dw, float *db, const head_in *in, int d_part,
                            const float *dy, const float *w, int n, int d_out, int accumulate) {
    int ld = d_part * in->n_parts;
    for (int i = 0; i < in->n_parts; i++) {
        tw_gemm(be, 1, 0, d_out, d_part, n, 1.0f, dy, d_out, in->x[i], d_part, 0.0f,
                dw + (size_t)i * d_part, ld);
        if (in->dx[i])
            tw_gemm(be, 0, 0, n, d_part, d_out, 1.0f, dy, d_out, w + (size_t)i * d_part, ld,
                    accumulate ? 1.0f : 0.0f, in->dx[i], d_part);
    }
    tw_bias_backward(be, db, dy, n, d_out);
}

/* Whether the backbones run (and are differentiated) with batch statistics. */
static int bn_batch_stats(const tw_classifier *m, int train) {
    return train && !m->o.frozen && !m->o.bn_frozen;
}

/* Early fusion: per sample, the S2 bands then VV, VH. */
static void stack_early(tw_classifier_acts *a, const float *x_s1, const float *x_s2,
                        const tw_classifier *m, const tw_classifier_plans *p) {
    size_t hw = (size_t)p->h * p->w, n2 = m->o.c_s2 * hw, n1 = m->o.c_s1 * hw;
    for (int s = 0; s < p->n; s++) {
        float *dst = a->x_early + (size_t)s * (n1 + n2);
        tw_mem_copy(p->be, dst, x_s2 + (size_t)s * n2, n2 * sizeof(float));
        tw_mem_copy(p->be, dst + n2, x_s1 + (size_t)s * n1, n1 * sizeof(float));
    }
}

void tw_classifier_forward(tw_classifier_acts *a, const float *x_s1, const float *x_s2,
                           tw_classifier *m, tw_classifier_plans *p, int train) {
    tw_backend *be = p->be;
    const float *x[2];
    if (m->o.fusion == TW_FUSION_FEATURE) {
        TW_ASSERT(x_s1 && x_s2);
        x[0] = x_s1;
        x[1] = x_s2;
    } else if (m->o.fusion == TW_FUSION_EARLY) {
        TW_ASSERT(x_s1 && x_s2);
        stack_early(a, x_s1, x_s2, m, p);
        x[0] = a->x_early;
    } else {
        x[0] = m->o.c_s1 ? x_s1 : x_s2;
        TW_ASSERT(x[0]);
    }
    TW_ASSERT(a->for_training || !train);
    a->train = train;
    int G = p->groups, rows = p->n / G, bn_train = bn_batch_stats(m, train);
    size_t f_group = (size_t)rows * TW_RESNET18_FEATS;
    for (int i = 0; i < m->n_nets; i++) {
        size_t x_group = (size_t)rows * m->net[i].c_in * p->h * p->w;
        for (int g = 0; g < G; g++) {
            tw_resnet18_forward(&a->net[i][g], x[i] + g * x_group, &m->net[i], p->net[i], bn_train);
            tw_mem_copy(be, a->feats[i] + g * f_group, a->net[i][g].feats, f_group * sizeof(float));
        }
    }
    /* the head */
    tw_params *P = m->P;
    head_in in = {m->n_nets, {a->feats[0], a->feats[1]}, {NULL, NULL}};
    int n = p->n, k = m->o.n_classes;
    if (m->o.head == TW_HEAD_LINEAR) {
        linear_forward(be, a->logits, &in, TW_RESNET18_FEATS, tw_params_ptr(P, m->w[0]),
                       tw_params_ptr(P, m->b[0]), n, k);
        return;
    }
    linear_forward(be, a->hid, &in, TW_RESNET18_FEATS, tw_params_ptr(P, m->w[0]),
                   tw_params_ptr(P, m->b[0]), n, m->d_out[0]);
    size_t n_hid = (size_t)n * m->d_out[0];
    head_in second = {1, {a->hid, NULL}, {NULL, NULL}};
    if (m->o.head == TW_HEAD_CONCAT_MLP) {
        tw_relu_forward_f32(be, a->hid, a->hid, n_hid);
    } else {
        /* gated: hid = g = sigmoid(gate([f1, f2])), fused = g f1 + (1 - g) f2 */
        tw_sigmoid_forward(be, a->hid, a->hid, n_hid);
        tw_blend_forward(be, a->fused, a->hid, a->feats[0], a->feats[1], n_hid);
        second.x[0] = a->fused;
    }
    linear_forward(be, a->logits, &second, m->d_out[0], tw_params_ptr(P, m->w[1]),
                   tw_params_ptr(P, m->b[1]), n, k);
}

void tw_classifier_backward(tw_classifier *m, tw_classifier_acts *a, const float *dlogits,
                            tw_classifier_plans *p, const tw_grad_ready *ready) {
    TW_ASSERT(a->train && a->for_training);
    tw_backend *be = p->be;
    tw_params *P = m->P;
    int n = p->n, k = m->o.n_classes, need_dfeats = !m->o.frozen;
    head_in in = {m->n_nets, {a->feats[0], a->feats[1]},
                  {need_dfeats ? a->dfeats[0] : NULL, need_dfeats ? a->dfeats[1] : NULL}};
    if (m->o.head == TW_HEAD_LINEAR) {
        linear_backward(be, tw_params_grad(P, m->w[0]), tw_params_grad(P, m->b[0]), &in,
                        TW_RESNET18_FEATS, dlogits, tw_params_ptr(P, m->w[0]), n, k, 0);
    } else {
        size_t n_hid = (size_t)n * m->d_out[0];
        int gated = m->o.head == TW_HEAD_GATED;
        head_in second = {1, {gated ? a->fused : a->hid, NULL}, {gated ? a->dfused : a->dhid, NULL}};
        linear_backward(be, tw_params_grad(P, m->w[1]), tw_params_grad(P, m->b[1]), &second,
                        m->d_out[0], dlogits, tw_params_ptr(P, m->w[1]), n, k, 0);
        if (gated) {
            /* dg into dhid, the direct paths g df and (1 - g) df into dfeats (=; mere scratch
             * when frozen); the gate's paths are added by the first layer's backward (+=). */
            tw_blend_backward(be, a->dhid, a->dfeats[0], a->dfeats[1], a->dfused, a->hid,
                              a->feats[0], a->feats[1], n_hid);
            tw_sigmoid_backward(be, a->dhid, a->dhid, a->hid, n_hid);
        } else {
            tw_relu_backward_f32(be, a->dhid, a->dhid, a->hid, n_hid);
        }
        linear_backward(be, tw_params_grad(P, m->w[0]), tw_params_grad(P, m->b[0]), &in,
                        TW_RESNET18_FEATS, a->dhid, tw_params_ptr(P, m->w[0]), n, m->d_out[0],
                        gated);
    }
    /* The head's tensors come after the backbones' in the arena: final now. */
    tw_grad_ready_at(ready, P->entries[m->w[0]].offset);
    if (!need_dfeats) return;
    int G = p->groups, rows = n / G;
    size_t f_group = (size_t)rows * TW_RESNET18_FEATS;
    /* The last backbone in the arena first, so that what is final grows from the arena's end. */
    for (int i = m->n_nets - 1; i >= 0; i--)
        for (int g = 0; g < G; g++)
            tw_resnet18_backward(&m->net[i], &a->net[i][g], a->dfeats[i] + g * f_group, p->net[i],
                                 g > 0, ready, g == G - 1);
}
