/* The classifier's structure (classifier.h): option checks, registration of the backbones and the
 * head under torch's names, torch's default initialisation, which entries train, the plans and
 * the activation sets. The step (forward, backward) is in classifier_pass.c. */
#include "model/classifier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"

void tw_classifier_opts_default(tw_classifier_opts *o) {
    memset(o, 0, sizeof *o);
    o->c_s2 = 12;
    o->fusion = TW_FUSION_NONE;
    o->head = TW_HEAD_LINEAR;
    o->n_classes = 19;
    o->mlp_hidden = 512;
    o->bn_groups = 1;
}

static tw_status check_opts(const tw_classifier_opts *o, tw_err *err) {
    if (o->c_s1 != 0 && o->c_s1 != 2)
        return tw_err_set(err, TW_E_RANGE, "classifier: c_s1 %d (want 0 or 2)", o->c_s1);
    if (o->c_s2 < 0 || o->c_s2 > 12)
        return tw_err_set(err, TW_E_RANGE, "classifier: c_s2 %d (want 0..12)", o->c_s2);
    int n_src = (o->c_s1 > 0) + (o->c_s2 > 0);
    if (o->fusion == TW_FUSION_NONE && n_src != 1)
        return tw_err_set(err, TW_E_RANGE, "classifier: fusion none takes exactly one source "
                          "(c_s1 %d, c_s2 %d)", o->c_s1, o->c_s2);
    if (o->fusion != TW_FUSION_NONE && n_src != 2)
        return tw_err_set(err, TW_E_RANGE, "classifier: %s fusion needs both sources (c_s1 %d, "
                          "c_s2 %d)", o->fusion == TW_FUSION_EARLY ? "early" : "feature",
                          o->c_s1, o->c_s2);
    if (o->fusion < TW_FUSION_NONE || o->fusion > TW_FUSION_FEATURE)
        return tw_err_set(err, TW_E_RANGE, "classifier: unknown fusion %d", (int)o->fusion);
    if (o->head < TW_HEAD_LINEAR || o->head > TW_HEAD_GATED)
        return tw_err_set(err, TW_E_RANGE, "classifier: unknown head %d", (int)o->head);
    if (o->head == TW_HEAD_GATED && o->fusion != TW_FUSION_FEATURE)
        return tw_err_set(err, TW_E_RANGE, "classifier: the gated head needs feature fusion");
    if (o->n_classes < 1 || o->n_classes > 4096)
        return tw_err_set(err, TW_E_RANGE, "classifier: n_classes %d (want 1..4096)", o->n_classes);
    if (o->head == TW_HEAD_CONCAT_MLP && (o->mlp_hidden < 1 || o->mlp_hidden > 65536))
        return tw_err_set(err, TW_E_RANGE, "classifier: mlp_hidden %d (want 1..65536)", o->mlp_hidden);
    if (o->bn_groups < 1 || o->bn_groups > TW_CLASSIFIER_MAX_GROUPS)
        return tw_err_set(err, TW_E_RANGE, "classifier: bn_groups %d (want 1..%d)", o->bn_groups,
                          TW_CLASSIFIER_MAX_GROUPS);
    if (o->frozen && o->bn_frozen)
        return tw_err_set(err, TW_E_RANGE, "classifier: frozen and bn_frozen exclude each other "
                          "(frozen backbones have no trained BN)");
    return TW_OK;
}

static void add_linear(tw_classifier *m, int l, const char *name, int d_in, int d_out) {
    char buf[TW_PARAM_NAME_MAX];
    int ws[2] = {d_out, d_in}, bs[1] = {d_out};
    snprintf(buf, sizeof buf, "%s.weight", name);
    m->w[l] = tw_params_add(m->P, buf, TW_PARAM_TRAIN, 2, ws);
    snprintf(buf, sizeof buf, "%s.bias", name);
    m->b[l] = tw_params_add(m->P, buf, TW_PARAM_TRAIN, 1, bs);
    m->d_out[l] = d_out;
}

tw_status tw_classifier_init(tw_classifier *m, tw_params *P, const tw_classifier_opts *o,
                             tw_err *err) {
    memset(m, 0, sizeof *m);
    tw_status st = check_opts(o, err);
    if (st != TW_OK) return st;
    m->o = *o;
    m->P = P;
    if (o->fusion == TW_FUSION_FEATURE) {
        m->n_nets = 2;
        if ((st = tw_resnet18_init(&m->net[0], P, "s1.", o->c_s1, err)) != TW_OK ||
            (st = tw_resnet18_init(&m->net[1], P, "s2.", o->c_s2, err)) != TW_OK)
            return st;
    } else {
        m->n_nets = 1;
        if ((st = tw_resnet18_init(&m->net[0], P, "backbone.", o->c_s1 + o->c_s2, err)) != TW_OK)
            return st;
    }
    m->d_feat = m->n_nets * TW_RESNET18_FEATS;
    int k = o->n_classes;
    if (o->head == TW_HEAD_LINEAR) {
        m->n_layers = 1;
        add_linear(m, 0, "head", m->d_feat, k);
    } else if (o->head == TW_HEAD_CONCAT_MLP) {
        m->n_layers = 2;
        add_linear(m, 0, "head.0", m->d_feat, o->mlp_hidden);
        add_linear(m, 1, "head.2", o->mlp_hidden, k);
    } else {
        m->n_layers = 2;
        add_linear(m, 0, "head.gate", m->d_feat, TW_RESNET18_FEATS);
        add_linear(m, 1, "head.fc", TW_RESNET18_FEATS, k);
    }
    return TW_OK;
}

void tw_classifier_reset(tw_classifier *m, uint64_t seed) {
    tw_params *P = m->P;
    for (int i = 0; i < m->n_nets; i++) tw_resnet18_init_weights(&m->net[i], seed + 1000003u * (uint64_t)i);
    for (int l = 0; l < m->n_layers; l++) {
        const tw_param_entry *we = &P->entries[m->w[l]];
        int fan_in = we->shape[1], d_out = we->shape[0];
        size_t n = we->n_elems;
        float *h = malloc((n + (size_t)d_out) * sizeof(float));
        TW_ASSERT(h);
        /* nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) is uniform in ±1/sqrt(fan_in),
         * and the bias is uniform in the same bound. */
        float bound = 1.0f / sqrtf((float)fan_in);
        tw_rng r;
        tw_rng_init(&r, seed, 0x68656164u /* "head" */, (uint32_t)l, 0);
        for (size_t i = 0; i < n + (size_t)d_out; i++) h[i] = (2.0f * tw_rng_uniform(&r) - 1.0f) * bound;
        tw_mem_from_host(P->be, tw_params_ptr(P, m->w[l]), h, n * sizeof(float));
        tw_mem_from_host(P->be, tw_params_ptr(P, m->b[l]), h + n, (size_t)d_out * sizeof(float));
        free(h);
    }
}

int tw_classifier_in_backbone(const tw_classifier *m, int entry) {
    TW_ASSERT(entry >= 0 && entry < m->P->n_entries);
    const char *name = m->P->entries[entry].name;
    for (int i = 0; i < m->n_nets; i++) {
        const char *pre = m->net[i].prefix;
        if (!strncmp(name, pre, strlen(pre))) return 1;
    }
    return 0;
}

int tw_classifier_trainable(const tw_classifier *m, int entry) {
    TW_ASSERT(entry >= 0 && entry < m->P->n_entries);
    if (m->P->entries[entry].kind != TW_PARAM_TRAIN) return 0;
    return !(m->o.frozen && tw_classifier_in_backbone(m, entry));
}

/* ---- plans and activation sets ----------------------------------------------------------- */

void tw_classifier_plans_free(tw_classifier_plans *p) {
    if (!p) return;
    for (int i = 0; i < 2; i++) tw_resnet18_plans_free(p->net[i]);
    free(p);
}

tw_status tw_classifier_plans_make(tw_classifier_plans **out, tw_backend *be,
                                   const tw_classifier *m, int n, int h, int w, tw_err *err) {
    *out = NULL;
    int g = m->o.bn_groups;
    if (n < 1 || n % g)
        return tw_err_set(err, TW_E_RANGE, "classifier: batch %d is not a positive multiple of "
                          "bn_groups %d", n, g);
    tw_classifier_plans *p = calloc(1, sizeof *p);
    TW_ASSERT(p);
    p->be = be;
    p->n = n;
    p->h = h;
    p->w = w;
    p->groups = g;
    for (int i = 0; i < m->n_nets; i++) {
        tw_status st = tw_resnet18_plans_make(&p->net[i], be, &m->net[i], n / g, h, w, err);
        if (st != TW_OK) {
            tw_classifier_plans_free(p);
            return st;
        }
    }
    *out = p;
    return TW_OK;
}

/* Places a's head tensors in one arena from base (NULL: only counts); returns its size. */
static size_t acts_layout(tw_classifier_acts *a, const tw_classifier *m,
                          const tw_classifier_plans *p, char *base) {
    size_t at = 0, n = (size_t)p->n;
#define PLACE(ptr, n_floats)                                   \
    do {                                                       \
        (ptr) = base ? (float *)(base + at) : NULL;            \
        at += ((n_floats) * sizeof(float) + 63) / 64 * 64;     \
    } while (0)
    if (m->o.fusion == TW_FUSION_EARLY)
        PLACE(a->x_early, n * (size_t)(m->o.c_s1 + m->o.c_s2) * p->h * p->w);
    for (int i = 0; i < m->n_nets; i++) {
        PLACE(a->feats[i], n * TW_RESNET18_FEATS);
        PLACE(a->dfeats[i], n * TW_RESNET18_FEATS);
    }
    if (m->n_layers == 2) {
        PLACE(a->hid, n * m->d_out[0]);
        PLACE(a->dhid, n * m->d_out[0]);
    }
    if (m->o.head == TW_HEAD_GATED) {
        PLACE(a->fused, n * TW_RESNET18_FEATS);
        PLACE(a->dfused, n * TW_RESNET18_FEATS);
    }
    PLACE(a->logits, n * m->o.n_classes);
    PLACE(a->dlogits, n * m->o.n_classes);
#undef PLACE
    return at;
}

void tw_classifier_acts_make(tw_classifier_acts *a, const tw_classifier *m,
                             const tw_classifier_plans *p, int for_training) {
    memset(a, 0, sizeof *a);
    a->for_training = for_training;
    int eval_only = !for_training || m->o.frozen;
    for (int i = 0; i < m->n_nets; i++)
        for (int g = 0; g < p->groups; g++) {
            if (eval_only) tw_resnet18_acts_make_eval(&a->net[i][g], p->net[i]);
            else tw_resnet18_acts_make(&a->net[i][g], p->net[i]);
        }
    a->n_bytes = acts_layout(a, m, p, NULL);
    a->arena = tw_mem_alloc(p->be, a->n_bytes);
    tw_mem_zero(p->be, a->arena, a->n_bytes);
    acts_layout(a, m, p, a->arena);
}

void tw_classifier_acts_free(tw_classifier_acts *a, tw_backend *be) {
    for (int i = 0; i < 2; i++)
        for (int g = 0; g < TW_CLASSIFIER_MAX_GROUPS; g++)
            if (a->net[i][g].arena) tw_resnet18_acts_free(&a->net[i][g], be);
    if (a->arena) tw_mem_free(be, a->arena);
    memset(a, 0, sizeof *a);
}
