/* The classification task (finetune.h): the classifier of classifier_run.h, one view per sample whose
 * geometric augmentations are the same for the S1 and the S2 patch, BCE with logits, validation
 * mAP on eval.split. */
#include "train/finetune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "data/augment.h"
#include "train/classifier_run.h"
#include "train/loop.h"
#include "train/metrics.h"

typedef struct cls_task {
    const tw_finetune_cfg *cfg;
    tw_comm *comm;
    tw_classifier_run c;
    const tw_loop_aug *aug;         /* the loop's parameters (view 0: augment.view1) and scratch */
    tw_param_seg *segs;
    double *lr_scale;
    int *bad;                       /* the step's verdict int (train/step.h) */
} cls_task;

/* The loader's hook: view 0 of a sample; an S1+S2 pair gets one geometric transform (crop, flips,
 * turns: data/augment.h tw_augment_pair), photometric ones per source. */
static tw_status augment_sample(void *user, tw_view *out, const tw_view *in, uint64_t seed, int64_t epoch,
                                int64_t sample, int view, tw_err *err) {
    const tw_loop_aug *a = ((const cls_task *)user)->aug;
    if (out->h != out->w || out->h > in->h || out->w > in->w)
        return tw_err_set(err, TW_E_SHAPE, "augment: view %dx%d from a %dx%d sample", out->h, out->w, in->h, in->w);
    tw_augment_pair(out->s1, out->s2, a->scratch, in->s1, in->c_s1, in->s2, in->c_s2, in->h, in->w, out->h, &a->p_s1,
                    &a->p, seed, (uint32_t)epoch, (uint32_t)sample, (uint32_t)view);
    return TW_OK;
}

static void cls_loader_opts(tw_task *t, tw_loader_opts *lo) {
    cls_task *T = t->self;
    lo->n_views = 1;
    lo->augment = augment_sample;
    lo->augment_user = T;
    lo->out_h = lo->out_w = T->cfg->data.size;
}

static tw_status cls_reset(tw_task *t, uint64_t seed, tw_err *err) {
    return tw_classifier_run_init_weights(&((cls_task *)t->self)->c, seed, err);
}

static void cls_upload(tw_task *t, const tw_batch *b) {
    tw_classifier_run *c = &((cls_task *)t->self)->c;
    TW_ASSERT(b->n == c->n_local);
    tw_classifier_run_upload(c, b);
}

/* No host decision on the loss: logits that are not finite raise the step's verdict int on the device
 * (BCE with logits is finite for finite logits, and its gradient, sigmoid - target, stays finite
 * at an infinite logit, so the gradient check alone would miss them). */
static double cls_step(tw_task *t, const tw_grad_ready *ready) {
    cls_task *T = t->self;
    tw_classifier_run *c = &T->c;
    tw_classifier_forward(&c->acts, c->x_s1, c->x_s2, &c->m, c->plans, 1);
    tw_scale_check(c->be, c->acts.logits, (size_t)c->n_local * c->k, 1.0f, T->bad);
    double loss = tw_bce_logits(c->be, c->acts.dlogits, c->acts.logits, c->targets, c->n_local, c->k);
    tw_classifier_backward(&c->m, &c->acts, c->acts.dlogits, c->plans, ready);
    return loss;
}

static tw_status cls_validate(tw_task *t, int batch, double *score, char *summary, size_t n_summary,
                              tw_err *err) {
    cls_task *T = t->self;
    const tw_finetune_cfg *cfg = T->cfg;
    tw_classifier_scores s;
    tw_status st =
        tw_classifier_run_score_split(&T->c, T->comm, tw_cfg_split_names[cfg->eval.split], batch, 0, &s, err);
    if (st != TW_OK) return st;
    tw_metrics m;
    tw_metrics_compute(&m, s.scores, s.labels, s.n, s.k);
    *score = m.map_macro;
    snprintf(summary, n_summary, "%s mAP macro %.4f micro %.4f, F1 macro %.4f micro %.4f (%lld patches)",
             tw_cfg_split_names[cfg->eval.split], m.map_macro, m.map_micro, m.f1_macro, m.f1_micro, (long long)s.n);
    tw_metrics_free(&m);
    tw_classifier_scores_free(&s);
    return TW_OK;
}

static void cls_free(tw_task *t) {
    cls_task *T = t->self;
    if (!T) return;
    tw_classifier_run_free(&T->c);
    free(T->segs);
    free(T->lr_scale);
    free(T);
    t->self = NULL;
}

tw_status tw_finetune_task_init(tw_task *t, tw_backend *be, tw_comm *comm, const tw_finetune_cfg *cfg,
                                int bn_groups, int *bad, const tw_loop_aug *aug, tw_err *err) {
    cls_task *T = calloc(1, sizeof *T);
    if (!T) return tw_err_set(err, TW_E_NOMEM, "finetune: out of memory");
    T->cfg = cfg;
    T->comm = comm;
    T->bad = bad;
    T->aug = aug;
    *t = (tw_task){.kind = "classification", .unit = "images", .reduce = TW_GRAD_MEAN,
                   .loader_opts = cls_loader_opts, .reset = cls_reset, .upload = cls_upload, .step = cls_step,
                   .validate = cls_validate, .free = cls_free, .self = T};
    int n_local = cfg->data.batch / tw_comm_size(comm);
    tw_status st = tw_classifier_run_init(&T->c, be, comm, cfg, n_local, bn_groups, 1, err);
    if (st != TW_OK) return st;
    t->P = &T->c.P;
    t->sources = T->c.sources;

    /* The optimizer's segments: the trainable entries, the backbones' at the backbone factor. */
    tw_params *P = &T->c.P;
    T->segs = malloc(sizeof *T->segs * (size_t)(P->n_segs + 1));
    T->lr_scale = malloc(sizeof *T->lr_scale * (size_t)(P->n_segs + 1));
    TW_ASSERT(T->segs && T->lr_scale);
    int n = tw_classifier_run_trainable(&T->c, cfg->model.backbone_lr_scale, T->segs, T->lr_scale);
    TW_ASSERT(n > 0);
    t->segs = T->segs;
    t->lr_scale = T->lr_scale;
    t->n_segs = n;
    return TW_OK;
}

tw_classifier_run *tw_finetune_task_classifier(const tw_task *t) { return &((cls_task *)t->self)->c; }

static tw_status cls_make(tw_task *t, tw_backend *be, tw_comm *comm, int *bad, const tw_loop_aug *aug,
                          void *user, tw_err *err) {
    return tw_finetune_task_init(t, be, comm, user, 1, bad, aug, err);
}

int tw_finetune_run(tw_comm *comm, const tw_finetune_cfg *cfg, const char *yaml, const char *config_path) {
    tw_loop_cfg lc = {.command = "finetune", .run = &cfg->run, .data = &cfg->data, .optim = &cfg->optim,
                      .backend = &cfg->backend, .augment = &cfg->augment, .schema = tw_finetune_schema(),
                      .cfg = cfg, .yaml = yaml, .config_path = config_path,
                      .validate_every_epochs = cfg->eval.every_epochs, .eval_batch = cfg->eval.batch,
                      .make_task = cls_make, .user = (void *)cfg};
    return tw_loop_run(comm, &lc);
}
