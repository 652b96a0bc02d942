/* The runnable classifier (classifier_run.h): model, plans and buffers from a fine-tuning
 * configuration, backbone initialisation from files, and split scoring over ranks. */
#include "train/classifier_run.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "data/augment.h"
#include "model/resnet18_io.h"
#include "train/checkpoint.h"
#include "train/runtime.h"

static const char *const s1_names[TW_S1_BANDS] = {"VV", "VH"};

tw_status tw_classifier_run_init(tw_classifier_run *c, tw_backend *be, tw_comm *comm, const tw_finetune_cfg *cfg,
                                int n_local, int bn_groups, int for_training, tw_err *err) {
    memset(c, 0, sizeof *c);
    c->be = be;
    c->cfg = cfg;
    tw_status st = tw_run_loader_opts(&c->lo, comm, &cfg->data, tw_cfg_split_names[cfg->data.split], err);
    if (st != TW_OK) return st;
    c->n_local = n_local;
    c->size = cfg->data.size;
    c->c_s1 = c->lo.use_s1 ? TW_S1_BANDS : 0;
    c->c_s2 = c->lo.n_s2_bands;
    c->k = cfg->data.classes;
    c->sources = tw_cfg_source_names[cfg->data.source];
    for (int i = 0; i < c->c_s2; i++) c->s2_names[i] = tw_shard_s2_bands[c->lo.s2_bands[i]];
    for (int i = 0; i < c->c_s1; i++) c->s2_names[c->c_s2 + i] = s1_names[i];

    static const tw_fusion fusions[] = {TW_FUSION_NONE, TW_FUSION_EARLY, TW_FUSION_FEATURE};
    static const tw_head_kind heads[] = {TW_HEAD_LINEAR, TW_HEAD_CONCAT_MLP, TW_HEAD_GATED};
    tw_classifier_opts o;
    tw_classifier_opts_default(&o);
    o.c_s1 = c->c_s1;
    o.c_s2 = c->c_s2;
    o.fusion = fusions[cfg->model.fusion];
    o.head = heads[cfg->model.head];
    o.n_classes = c->k;
    o.mlp_hidden = cfg->model.mlp_hidden;
    o.frozen = cfg->model.mode == TW_CFG_MODE_FROZEN;
    o.bn_frozen = cfg->model.bn == TW_CFG_FT_BN_FROZEN;
    o.bn_groups = bn_groups;
    tw_params_init(&c->P, be);
    if ((st = tw_classifier_init(&c->m, &c->P, &o, err)) != TW_OK) return st;
    tw_params_alloc(&c->P, 0);   /* the optimizer keeps its own state */
    if ((st = tw_classifier_plans_make(&c->plans, be, &c->m, n_local, c->size, c->size, err)) != TW_OK) return st;
    tw_classifier_acts_make(&c->acts, &c->m, c->plans, for_training);
    size_t plane = (size_t)n_local * c->size * c->size * sizeof(float);
    if (c->c_s1) c->x_s1 = tw_mem_alloc(be, plane * c->c_s1);
    if (c->c_s2) c->x_s2 = tw_mem_alloc(be, plane * c->c_s2);
    c->targets = tw_mem_alloc(be, (size_t)n_local * c->k * sizeof(float));
    return TW_OK;
}

int tw_classifier_run_trainable(const tw_classifier_run *c, double backbone_lr_scale, tw_param_seg *segs,
                                double *lr_scale) {
    const tw_params *P = &c->P;
    int n = 0, seg = 0;
    for (int i = 0; i < P->n_entries; i++) {
        if (P->entries[i].kind != TW_PARAM_TRAIN) continue;
        if (tw_classifier_trainable(&c->m, i)) {
            segs[n] = P->segs[seg];
            lr_scale[n++] = tw_classifier_in_backbone(&c->m, i) ? backbone_lr_scale : 1.0;
        }
        seg++;
    }
    TW_ASSERT(seg == P->n_segs);
    return n;
}

void tw_classifier_run_free(tw_classifier_run *c) {
    if (!c->be) return;
    if (c->plans) {
        tw_classifier_acts_free(&c->acts, c->be);
        tw_classifier_plans_free(c->plans);
    }
    tw_mem_free(c->be, c->x_s1);
    tw_mem_free(c->be, c->x_s2);
    tw_mem_free(c->be, c->targets);
    tw_params_free(&c->P);
    memset(c, 0, sizeof *c);
}

/* One backbone from its model.init* value. source: "s1", "s2" or "s1+s2" (early fusion). An ssl:
 * checkpoint of the same source holds the backbone under "backbone."; a cross-modal one ("s1+s2",
 * model/bt_model.h, cross) holds an S1 and an S2 backbone under "s1.backbone." and "s2.backbone.", which start
 * the backbone of that source (feature fusion's two, or a single-source model's), not early
 * fusion's one backbone over both. */
static tw_status init_backbone(tw_resnet18 *net, const char *key, const char *value, const char *source,
                               const char *const *names, tw_err *err) {
    tw_init_spec spec;
    if (!tw_init_spec_parse(&spec, value))
        return tw_err_set(err, TW_E_FORMAT, "%s: must be scratch, weights:FILE or ssl:CHECKPOINT, got '%s'", key, value);
    if (spec.kind == TW_INIT_SCRATCH) return TW_OK;
    tw_status st;
    char prefix[16] = "";
    if (spec.kind == TW_INIT_SSL) {
        tw_ckpt_info info;
        if ((st = tw_ckpt_info_read(&info, spec.path, err)) != TW_OK) {
            tw_err_prefix(err, "%s: ", key);
            return st;
        }
        int cross = !strcmp(info.sources, "s1+s2"), early = !strcmp(source, "s1+s2");
        int ok_task = !strcmp(info.task, "barlow-twins"), ok_src = cross ? !early : !strcmp(info.sources, source);
        char task[sizeof info.task], sources[sizeof info.sources];
        memcpy(task, info.task, sizeof task);
        memcpy(sources, info.sources, sizeof sources);
        tw_ckpt_info_free(&info);
        if (!ok_task)
            return tw_err_set(err, TW_E_FORMAT, "%s: %s is a %s checkpoint; ssl: needs a barlow-twins pre-training "
                              "checkpoint", key, spec.path, task);
        if (!ok_src && cross)
            return tw_err_set(err, TW_E_FORMAT, "%s: %s is a cross-modal pre-training (separate s1 and s2 "
                              "backbones); early fusion's one backbone over both cannot start from it", key, spec.path);
        if (!ok_src)
            return tw_err_set(err, TW_E_FORMAT, "%s: %s was pre-trained on %s, this backbone reads %s", key, spec.path,
                              sources, source);
        if (cross)
            snprintf(prefix, sizeof prefix, "%s.backbone.", source);
        else
            snprintf(prefix, sizeof prefix, "backbone.");
    }
    st = tw_resnet18_load_backbone(net, spec.path, prefix, names, err);
    if (st != TW_OK) tw_err_prefix(err, "%s: ", key);
    return st;
}

tw_status tw_classifier_run_init_weights(tw_classifier_run *c, uint64_t seed, tw_err *err) {
    const tw_finetune_model_cfg *mc = &c->cfg->model;
    tw_classifier_reset(&c->m, seed);
    const char *v1 = mc->init_s1[0] ? mc->init_s1 : mc->init, *v2 = mc->init_s2[0] ? mc->init_s2 : mc->init;
    const char *k1 = mc->init_s1[0] ? "model.init_s1" : "model.init", *k2 = mc->init_s2[0] ? "model.init_s2" : "model.init";
    switch (c->m.o.fusion) {
    case TW_FUSION_FEATURE: {
        tw_status st = init_backbone(&c->m.net[0], k1, v1, "s1", s1_names, err);
        return st != TW_OK ? st : init_backbone(&c->m.net[1], k2, v2, "s2", c->s2_names, err);
    }
    case TW_FUSION_EARLY:
        return init_backbone(&c->m.net[0], "model.init", mc->init, "s1+s2", c->s2_names, err);
    case TW_FUSION_NONE:
        break;
    }
    return c->c_s1 ? init_backbone(&c->m.net[0], k1, v1, "s1", s1_names, err)
                   : init_backbone(&c->m.net[0], k2, v2, "s2", c->s2_names, err);
}

tw_status tw_classifier_run_load_weights(tw_classifier_run *c, const char *path, const char *task, const char *sources,
                                         tw_err *err) {
    if (strcmp(task, "classification")) return tw_classifier_run_init_weights(c, 0, err);
    tw_ckpt_state cs;
    tw_ckpt_content content = {&c->P, NULL, "classification", sources};
    return tw_ckpt_load(path, &content, &cs, err);
}

void tw_classifier_run_upload(tw_classifier_run *c, const tw_batch *b) {
    TW_ASSERT(b->n <= c->n_local);
    size_t plane = (size_t)c->size * c->size * sizeof(float);
    size_t n = (size_t)b->n, rest = (size_t)(c->n_local - b->n);
    if (c->x_s1) {
        TW_ASSERT(b->s1[0] && b->c_s1 == c->c_s1 && b->h == c->size);
        tw_mem_from_host(c->be, c->x_s1, b->s1[0], n * c->c_s1 * plane);
        if (rest) tw_mem_zero(c->be, (char *)c->x_s1 + n * c->c_s1 * plane, rest * c->c_s1 * plane);
    }
    if (c->x_s2) {
        TW_ASSERT(b->s2[0] && b->c_s2 == c->c_s2 && b->h == c->size);
        tw_mem_from_host(c->be, c->x_s2, b->s2[0], n * c->c_s2 * plane);
        if (rest) tw_mem_zero(c->be, (char *)c->x_s2 + n * c->c_s2 * plane, rest * c->c_s2 * plane);
    }
    size_t row = (size_t)c->k * sizeof(float);
    tw_mem_from_host(c->be, c->targets, b->labels, n * row);
    if (rest) tw_mem_zero(c->be, (char *)c->targets + n * row, rest * row);
}

/* Evaluation's view: the centre data.size window of each source (no augmentation). */
static tw_status centre_crop(void *user, tw_view *out, const tw_view *in, uint64_t seed, int64_t epoch, int64_t sample,
                             int view, tw_err *err) {
    (void)user;
    if (out->h > in->h || out->w > in->w)
        return tw_err_set(err, TW_E_SHAPE, "data.size=%d: larger than the shards' %dx%d patches", out->h, in->h, in->w);
    static const tw_aug_params none;   /* every probability 0: the centre window */
    float *scratch = malloc(tw_augment_scratch_floats(out->h) * sizeof(float));
    if (!scratch) return tw_err_set(err, TW_E_NOMEM, "evaluation crop of %dx%d", out->h, out->w);
    tw_augment_pair(out->s1, out->s2, scratch, in->s1, in->c_s1, in->s2, in->c_s2, in->h, in->w, out->h, &none, &none,
                    seed, (uint32_t)epoch, (uint32_t)sample, (uint32_t)view);
    free(scratch);
    return TW_OK;
}

void tw_classifier_scores_free(tw_classifier_scores *s) {
    free(s->scores);
    free(s->labels);
    free(s->feats);
    memset(s, 0, sizeof *s);
}

tw_status tw_classifier_run_score_split(tw_classifier_run *c, tw_comm *comm, const char *split, int global_batch,
                                       int want_feats, tw_classifier_scores *out, tw_err *err) {
    return tw_classifier_run_score_subset(c, comm, split, global_batch, 1.0, want_feats, out, err);
}

tw_status tw_classifier_run_score_subset(tw_classifier_run *c, tw_comm *comm, const char *split, int global_batch,
                                        double fraction, int want_feats, tw_classifier_scores *out, tw_err *err) {
    memset(out, 0, sizeof *out);
    tw_loader_opts lo = c->lo;
    lo.split = split;
    lo.global_batch = global_batch;
    lo.shuffle = 0;
    lo.drop_last = 0;
    lo.label_fraction = fraction;
    lo.n_views = 1;
    lo.augment = centre_crop;
    lo.out_h = lo.out_w = c->size;
    lo.prefetch = 2;
    lo.start_epoch = lo.start_step = 0;
    TW_ASSERT(global_batch / tw_comm_size(comm) <= c->n_local);
    tw_loader *ld = NULL;
    tw_status st = tw_comm_agree(comm, tw_loader_init(&ld, &lo, err), err);
    if (st != TW_OK) return st;
    int64_t n = tw_loader_n_samples(ld), spe = tw_loader_steps_per_epoch(ld);
    int k = c->k, d = want_feats ? TW_RESNET18_FEATS * c->m.n_nets : 0;
    out->n = n;
    out->k = k;
    out->d_feats = d;
    /* Each rank writes its rows; the sums over ranks are then every row once (checked by count).
     * A row's place is its position in the (subset of the) split: unshuffled, global batch s holds
     * positions [s B, s B + m) and rank r the r-th contiguous slice of them (data/sampler.h); with
     * the whole split that is the sample index. */
    int rank = tw_comm_rank(comm), world = tw_comm_size(comm);
    size_t width = (size_t)2 * k + d + 1;
    float *rows = calloc((size_t)n * width + 1, sizeof(float));
    float *host = malloc((size_t)c->n_local * (k + TW_RESNET18_FEATS) * sizeof(float) + 1);
    TW_ASSERT(rows && host);
    for (int64_t s = 0; s < spe && st == TW_OK; s++) {
        const tw_batch *b = NULL;
        if ((st = tw_loader_next(ld, &b, err)) != TW_OK) break;
        if (b->n == 0) continue;
        tw_classifier_run_upload(c, b);
        tw_classifier_forward(&c->acts, c->x_s1, c->x_s2, &c->m, c->plans, 0);
        tw_mem_to_host(c->be, host, c->acts.logits, (size_t)b->n * k * sizeof(float));
        int64_t m = n - b->step * global_batch < global_batch ? n - b->step * global_batch : global_batch;
        int64_t first = b->step * global_batch + m * rank / world;
        for (int i = 0; i < b->n; i++) {
            TW_ASSERT(first + i < n && (fraction != 1.0 || first + i == b->index[i]));
            float *r = rows + (size_t)(first + i) * width;
            memcpy(r, host + (size_t)i * k, (size_t)k * sizeof(float));
            memcpy(r + k, b->labels + (size_t)i * k, (size_t)k * sizeof(float));
            r[width - 1] += 1.0f;
        }
        for (int net = 0; d && net < c->m.n_nets; net++) {
            tw_mem_to_host(c->be, host, c->acts.feats[net], (size_t)b->n * TW_RESNET18_FEATS * sizeof(float));
            for (int i = 0; i < b->n; i++)
                memcpy(rows + (size_t)(first + i) * width + 2 * k + net * TW_RESNET18_FEATS,
                       host + (size_t)i * TW_RESNET18_FEATS, TW_RESNET18_FEATS * sizeof(float));
        }
    }
    tw_loader_free(ld);
    free(host);
    if ((st = tw_comm_agree(comm, st, err)) != TW_OK) {
        free(rows);
        return st;
    }
    tw_comm_allreduce(comm, rows, (size_t)n * width, TW_F32, TW_REDUCE_SUM);
    out->scores = malloc((size_t)n * k * sizeof(float) + 1);
    out->labels = malloc((size_t)n * k * sizeof(float) + 1);
    out->feats = d ? malloc((size_t)n * d * sizeof(float)) : NULL;
    TW_ASSERT(out->scores && out->labels && (!d || out->feats));
    for (int64_t i = 0; i < n && st == TW_OK; i++) {
        const float *r = rows + (size_t)i * width;
        if (r[width - 1] != 1.0f)
            st = tw_err_set(err, TW_E_RANGE, "%s: split %s: sample %" PRId64 " scored %g times, not once",
                            c->cfg->data.shards, split, i, r[width - 1]);
        memcpy(out->scores + (size_t)i * k, r, (size_t)k * sizeof(float));
        memcpy(out->labels + (size_t)i * k, r + k, (size_t)k * sizeof(float));
        if (d) memcpy(out->feats + (size_t)i * d, r + 2 * k, (size_t)d * sizeof(float));
    }
    free(rows);
    if (st != TW_OK) tw_classifier_scores_free(out);
    return st;
}
