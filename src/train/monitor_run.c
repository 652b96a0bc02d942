/* The pre-training's monitors (monitor_run.h): the cadence, a check's health figures and online
 * kNN, the alarm, and the JSON and log lines; the computations are monitor.c's and knn.c's. */
#include "train/monitor_run.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/finetune.h"
#include "core/log.h"
#include "data/loader.h"
#include "train/classifier_run.h"
#include "train/knn.h"
#include "train/monitor.h"
#include "train/trainlog.h"
#include "train/runtime.h"

struct tw_monitor_run {
    const tw_pretrain_cfg *cfg;
    tw_backend *be;
    tw_comm *comm;
    int64_t every;
    int64_t n_embed;            /* patches a kNN embeds: the memory and the queries */
    tw_collapse_alarm alarm;
    int warned;                 /* the current collapse has been reported */
    const char *knn_split;      /* NULL: no kNN */
    tw_finetune_cfg *fcfg;      /* the frozen classifier that embeds the kNN subsets */
    tw_classifier_run cls;
    int cls_ready;
    double frac_memory, frac_queries;
};

tw_status tw_monitor_run_create(tw_monitor_run **out, const tw_pretrain_cfg *cfg, tw_backend *be, tw_comm *comm,
                                tw_err *err) {
    *out = NULL;
    if (cfg->monitor.every_steps < 0) return TW_OK;
    tw_monitor_run *m = calloc(1, sizeof *m);
    if (!m) return tw_err_set(err, TW_E_NOMEM, "monitor: out of memory");
    m->cfg = cfg;
    m->be = be;
    m->comm = comm;
    m->every = cfg->monitor.every_steps;   /* 0: once an epoch */
    m->alarm.patience = cfg->monitor.patience;
    m->knn_split = tw_cfg_knn_split_name(cfg->monitor.knn_split);
    *out = m;
    return TW_OK;
}

void tw_monitor_run_free(tw_monitor_run *m) {
    if (!m) return;
    if (m->cls_ready) tw_classifier_run_free(&m->cls);
    free(m->fcfg);
    free(m);
}

int tw_monitor_run_due(const tw_monitor_run *m, int64_t step, int64_t steps_per_epoch) {
    int64_t every = m && m->every ? m->every : steps_per_epoch;
    return m && every > 0 && step % every == 0;
}

/* The number of patches of a split (the loader's count; its shards are opened and checked). */
static tw_status split_size(int64_t *n, const tw_loader_opts *base, const char *split, tw_err *err) {
    tw_loader_opts lo = *base;
    lo.split = split;
    lo.shuffle = 0;
    lo.drop_last = 0;
    lo.label_fraction = 1.0;
    lo.prefetch = 1;
    tw_loader *ld = NULL;
    tw_status st = tw_loader_init(&ld, &lo, err);
    if (st == TW_OK) *n = tw_loader_n_samples(ld);
    if (ld) tw_loader_free(ld);
    return st;
}

/* The frozen single-source (cross: feature-fusion) classifier of the pre-training's data, for
 * the global batch over the ranks, and the two subsets' fractions. */
static tw_status knn_setup(tw_monitor_run *m, tw_err *err) {
    const tw_pretrain_cfg *pc = m->cfg;
    m->fcfg = calloc(1, sizeof *m->fcfg);
    if (!m->fcfg) return tw_err_set(err, TW_E_NOMEM, "monitor: out of memory");
    char b[10][TW_CFG_STR_MAX + 32];
    char *ov[10];
    int n = 0;
    snprintf(b[n++], sizeof b[0], "data.shards=%s", pc->data.shards);
    snprintf(b[n++], sizeof b[0], "data.source=%s", tw_cfg_source_names[pc->data.source]);
    snprintf(b[n++], sizeof b[0], "data.s2_bands=%s", pc->data.s2_bands == TW_BANDS_RGB ? "rgb" : "all");
    snprintf(b[n++], sizeof b[0], "data.size=%d", pc->data.size);
    snprintf(b[n++], sizeof b[0], "data.classes=%d", pc->data.classes);
    snprintf(b[n++], sizeof b[0], "data.subset_seed=%" PRId64, pc->data.subset_seed);
    snprintf(b[n++], sizeof b[0], "data.batch=%d", pc->data.batch);
    snprintf(b[n++], sizeof b[0], "model.mode=frozen");
    if (pc->data.source == TW_SOURCE_S1S2) snprintf(b[n++], sizeof b[0], "model.fusion=feature");
    for (int i = 0; i < n; i++) ov[i] = b[i];
    tw_status st = tw_cfg_load(tw_finetune_schema(), m->fcfg, NULL, n, ov, err);
    int world = tw_comm_size(m->comm);
    if (st == TW_OK) st = tw_classifier_run_init(&m->cls, m->be, m->comm, m->fcfg, pc->data.batch / world, 1, 0, err);
    if (st != TW_OK) {
        tw_err_prefix(err, "monitor: ");
        return st;
    }
    m->cls_ready = 1;
    int64_t n_train = 0, n_q = 0;
    if ((st = split_size(&n_train, &m->cls.lo, "train", err)) != TW_OK) return st;
    /* Shards without the query split (an unlabelled archive, a test's train-only directory): the
     * health checks go on without the kNN, said once. */
    tw_err e = {0};
    if (split_size(&n_q, &m->cls.lo, m->knn_split, &e) != TW_OK || n_q == 0) {
        if (tw_comm_rank(m->comm) == 0)
            tw_warn("twinfuse pretrain: warning: no online kNN (monitor.knn_split=%s): %s\n", m->knn_split,
                    e.msg[0] ? e.msg : "the split is empty");
        m->knn_split = NULL;
        return TW_OK;
    }
    m->frac_memory = n_train > pc->monitor.knn_memory ? (double)pc->monitor.knn_memory / n_train : 1.0;
    m->frac_queries = n_q > pc->monitor.knn_queries ? (double)pc->monitor.knn_queries / n_q : 1.0;
    m->n_embed = (int64_t)ceil(m->frac_memory * n_train) + (int64_t)ceil(m->frac_queries * n_q);
    return TW_OK;
}

/* The training model's backbones into the classifier's, entry by entry by name. */
static void copy_backbones(tw_classifier_run *c, const tw_params *P, const char *const bt_prefix[2]) {
    for (int i = 0; i < c->P.n_entries; i++) {
        const tw_param_entry *e = &c->P.entries[i];
        for (int net = 0; net < c->m.n_nets; net++) {
            const char *pre = c->m.net[net].prefix;
            size_t n_pre = strlen(pre);
            if (strncmp(e->name, pre, n_pre)) continue;
            char name[TW_PARAM_NAME_MAX + 32];
            snprintf(name, sizeof name, "%s%s", bt_prefix[net], e->name + n_pre);
            int j = tw_params_find(P, name);
            TW_ASSERT(j >= 0 && P->entries[j].kind == e->kind && P->entries[j].n_elems == e->n_elems);
            if (e->kind == TW_PARAM_COUNTER)
                *tw_params_counter(&c->P, i) = *tw_params_counter(P, j);
            else
                tw_mem_copy(c->be, tw_params_ptr(&c->P, i), tw_params_ptr(P, j), e->n_elems * sizeof(float));
            break;
        }
    }
}

/* At the default cadence (a check an epoch) the kNN's share of the compute stays under
 * TW_MONITOR_KNN_SHARE: a training pair costs two views' forward and backward per net (about 6
 * forwards of one backbone, cross-modal 3 per net), an embedded patch one forward per net. An
 * epoch too small for a kNN every epoch (the demo's 1000 patches) gets one every this many
 * epochs. Sizes only: every rank agrees, and every run of the same data checks at the same steps. */
static int64_t knn_cadence(const tw_monitor_run *m, int64_t steps_per_epoch) {
    TW_ASSERT(steps_per_epoch > 0);
    double pair_cost = 6.0 / m->cls.m.n_nets;
    double epoch_pairs = (double)steps_per_epoch * m->cfg->data.batch;
    double share = (double)m->n_embed / (pair_cost * epoch_pairs);
    return share > TW_MONITOR_KNN_SHARE ? (int64_t)ceil(share / TW_MONITOR_KNN_SHARE) : 1;
}

/* kNN mAP of the backbone now: memory = the train subset, queries = the knn_split subset. */
static tw_status knn_check(tw_monitor_run *m, const tw_params *P, const char *const bt_prefix[2], tw_metrics *out,
                           int64_t *n_mem, int64_t *n_q, tw_err *err) {
    copy_backbones(&m->cls, P, bt_prefix);
    /* With per-rank backbone BN every rank has its own running statistics: rank 0's (what its
     * checkpoint saves) embed every slice, so the figure does not depend on the rank count. */
    if (tw_comm_size(m->comm) > 1 && m->cls.P.n_buffers)
        tw_comm_broadcast(m->comm, m->cls.P.buffers, m->cls.P.n_buffers * sizeof(float), 0);
    tw_classifier_scores mem, q;
    memset(&mem, 0, sizeof mem);
    memset(&q, 0, sizeof q);
    int batch = m->cfg->data.batch;
    tw_status st = tw_classifier_run_score_subset(&m->cls, m->comm, "train", batch, m->frac_memory, 1, &mem, err);
    if (st == TW_OK)
        st = tw_classifier_run_score_subset(&m->cls, m->comm, m->knn_split, batch, m->frac_queries, 1, &q, err);
    /* Unlabelled shards (SSL4EO-S12, data/shard.h) read as all-zero labels: no kNN to score. */
    int64_t n_pos = 0;
    for (int64_t i = 0; st == TW_OK && i < mem.n * mem.k; i++) n_pos += mem.labels[i] > 0.5f;
    if (st == TW_OK && n_pos == 0) {
        if (tw_comm_rank(m->comm) == 0)
            tw_warn("twinfuse pretrain: warning: no online kNN: the train split's patches carry no labels\n");
        m->knn_split = NULL;
    } else if (st == TW_OK) {
        tw_knn_evaluate(out, mem.feats, mem.labels, mem.n, q.feats, q.labels, q.n, mem.d_feats, mem.k, TW_KNN_K,
                        TW_KNN_T);
        *n_mem = mem.n;
        *n_q = q.n;
    }
    tw_classifier_scores_free(&mem);
    tw_classifier_scores_free(&q);
    return st;
}

tw_status tw_monitor_run_check(tw_monitor_run *m, int64_t step, int64_t steps_per_epoch, const tw_monitor_embeds *e,
                               const tw_params *P, const char *const bt_prefix[2], tw_check_report *out,
                               tw_err *err) {
    double t0 = tw_trainlog_now();
    tw_health h;
    tw_monitor_std_compute(&h.z, e->z, e->n_local, e->dz, m->comm);
    tw_monitor_std_compute(&h.f, e->f, e->n_local, e->df, m->comm);
    tw_monitor_xcorr_terms(&h.c_diag, &h.c_off, e->c, e->dz);
    int rows = m->cfg->monitor.erank_rows;
    h.erank_z = tw_monitor_erank_sample(e->z, e->n_local, e->dz, rows, m->comm, &h.erank_rows);
    h.erank_f = tw_monitor_erank_sample(e->f, e->n_local, e->df, rows, m->comm, NULL);
    double t_health = tw_trainlog_now() - t0;
    tw_metrics km;
    memset(&km, 0, sizeof km);
    int64_t n_mem = 0, n_q = 0;
    tw_status st = TW_OK;
    if (m->knn_split && !m->cls_ready && (st = tw_comm_agree(m->comm, knn_setup(m, err), err)) != TW_OK) return st;
    /* knn_setup may have found no query split and turned the kNN off. */
    int64_t knn_every_epochs = m->knn_split && !m->every ? knn_cadence(m, steps_per_epoch) : 0;
    int knn_now = m->knn_split && (m->every || (step / steps_per_epoch) % knn_every_epochs == 0);
    if (knn_now && (st = knn_check(m, P, bt_prefix, &km, &n_mem, &n_q, err)) != TW_OK) return st;
    knn_now = knn_now && m->knn_split;   /* ... or found the train split unlabelled */
    double dt = tw_trainlog_now() - t0;
    char knn_json[200] = "", knn_line[96] = "";
    if (knn_now) {
        snprintf(knn_json, sizeof knn_json,
                 ", \"knn_map_macro\": %.9g, \"knn_map_micro\": %.9g, \"knn_memory\": %" PRId64
                 ", \"knn_queries\": %" PRId64 ", \"knn_every_epochs\": %" PRId64,
                 km.map_macro, km.map_micro, n_mem, n_q, knn_every_epochs);
        snprintf(knn_line, sizeof knn_line, "kNN mAP %.4f (micro %.4f, %s) | ", km.map_macro, km.map_micro,
                 m->knn_split);
        snprintf(out->note, sizeof out->note, "kNN %.4f", km.map_macro);
    }
    tw_metrics_free(&km);
    char why[384] = "";
    int fired = tw_collapse_alarm_update(&m->alarm, &h, why, sizeof why);
    snprintf(out->json, sizeof out->json,
             "{\"z_std_mean\": %.9g, \"z_std_min\": %.9g, \"z_std_low\": %.9g, \"f_std_mean\": %.9g, "
             "\"f_std_min\": %.9g, \"f_std_low\": %.9g, \"c_diag\": %.9g, \"c_off\": %.9g, \"erank_z\": %.9g, "
             "\"erank_f\": %.9g%s, \"bad_checks\": %d, \"health_s\": %.6f, \"monitor_s\": %.6f}",
             h.z.mean, h.z.min, h.z.frac_low, h.f.mean, h.f.min, h.f.frac_low, h.c_diag, h.c_off, h.erank_z, h.erank_f,
             knn_json, m->alarm.n_bad, t_health, dt);
    snprintf(out->line, sizeof out->line,
             "# monitor step %" PRId64 ": %sstd z %.3f f %.3f | erank z %.1f f %.1f | C diag %.3f |off| %.4f | "
             "%.2f s%s",
             step, knn_line, h.z.mean, h.f.mean, h.erank_z, h.erank_f, h.c_diag, h.c_off, dt,
             m->alarm.n_bad ? " | past the collapse thresholds" : "");
    if (!m->alarm.n_bad) m->warned = 0;
    if (!fired) return TW_OK;
    if (m->cfg->monitor.on_collapse == TW_COLLAPSE_STOP)
        return tw_err_set(err, TW_E_RANGE, "the embedding collapsed at step %" PRId64 ": %s; stopping "
                          "(monitor.on_collapse=stop)", step, why);
    if (!m->warned && tw_comm_rank(m->comm) == 0)
        tw_warn("twinfuse pretrain: warning: the embedding collapsed at step %" PRId64 ": %s "
                "(monitor.on_collapse=warn: training goes on)\n", step, why);
    m->warned = 1;
    return TW_OK;
}
