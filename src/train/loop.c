/* The training loop (loop.h). The task does the model's work; everything around it is here. */
#include "train/loop.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "data/loader.h"
#include "optim/optim_config.h"
#include "train/checkpoint.h"
#include "train/trainlog.h"
#include "train/runtime.h"
#include "train/step.h"

/* Checkpoints kept in the run directory: the newest and the one before it (a fallback when the
 * newest turns out unreadable). */
enum { KEEP_CKPTS = 2 };

typedef struct loop {
    const tw_loop_cfg *lc;
    tw_comm *comm;
    int rank, world;
    char run_dir[2 * TW_CFG_STR_MAX + 2];
    char last_ckpt[3 * TW_CFG_STR_MAX];
    tw_backend *be;
    tw_task task;
    tw_step *step;
    tw_ckpt_content content;
    tw_loader_opts lo;
    tw_loader *ld;
    tw_trainlog log;
    tw_ckpt_state cs;          /* the last accepted step's: step, loader position, loss, best */
    int resumed;
    int64_t spe, total;        /* steps per epoch, steps in all */
    int64_t saved_at, validated_at;
    tw_status st_metrics;      /* rank 0's last metrics line, agreed with the next batch */
    tw_loop_aug aug;
    int eval_batch;
    int stopped;               /* a rejected step ended the run (said already) */
} loop;

/* resume=auto: rank 0 chooses the newest checkpoint of the run that loads (invalid ones are
 * reported and skipped) and sends its path to the others, so that every rank resumes from the
 * same file even when their views of the run directory differ; a rank that then cannot load it
 * fails the job with a message naming the rank and the file. *loaded: 1 when one was loaded. */
static tw_status resume_auto(loop *L, tw_ckpt_state *s, int *loaded, tw_err *err) {
    char chosen[sizeof L->last_ckpt] = "";
    tw_status st = TW_OK;
    if (L->rank == 0) {
        char **paths;
        int n = tw_ckpt_list(&paths, L->run_dir);
        for (int i = 0; i < n && !chosen[0]; i++) {
            tw_err e = {0};
            if (tw_ckpt_load(paths[i], &L->content, s, &e) == TW_OK)
                snprintf(chosen, sizeof chosen, "%s", paths[i]);
            else
                tw_warn("twinfuse %s: warning: skipping invalid checkpoint: %s\n", L->lc->command, e.msg);
        }
        tw_ckpt_list_free(paths, n);
    }
    tw_comm_broadcast(L->comm, chosen, sizeof chosen, 0);
    if (L->rank != 0 && chosen[0]) st = tw_ckpt_load(chosen, &L->content, s, err);
    if ((st = tw_comm_agree(L->comm, st, err)) != TW_OK) return st;
    *loaded = chosen[0] != 0;
    snprintf(L->last_ckpt, sizeof L->last_ckpt, "%s", chosen);
    return TW_OK;
}

/* Deletes the run's checkpoints beyond the newest KEEP_CKPTS (rank 0). */
static void prune(const char *run_dir) {
    char **paths;
    int n = tw_ckpt_list(&paths, run_dir);
    for (int i = KEEP_CKPTS; i < n; i++) unlink(paths[i]);
    tw_ckpt_list_free(paths, n);
}

/* The checkpoint of step cs->step (rank 0 writes; every rank agrees on the outcome). */
static tw_status save(loop *L, const tw_ckpt_state *cs, tw_err *err) {
    char path[3 * TW_CFG_STR_MAX];
    tw_ckpt_path(path, sizeof path, L->run_dir, cs->step);
    tw_status st = TW_OK;
    if (L->rank == 0) {
        st = tw_ckpt_save(path, &L->content, cs, L->lc->yaml, err);
        if (st == TW_OK) prune(L->run_dir);
    }
    if ((st = tw_comm_agree(L->comm, st, err)) == TW_OK) snprintf(L->last_ckpt, sizeof L->last_ckpt, "%s", path);
    return st;
}

/* Scores the validation split; a better score than any before is kept as best.safetensors. */
static tw_status validate(loop *L, tw_ckpt_state *cs, int64_t epoch, tw_err *err) {
    double score = 0;
    char summary[256] = "";
    tw_status st = tw_comm_agree(L->comm, L->task.validate(&L->task, L->eval_batch, &score, summary, sizeof summary, err),
                                 err);
    if (st != TW_OK) return st;
    int better = cs->best_score < 0 || score > cs->best_score;
    tw_log("# validation after epoch %" PRId64 " (step %" PRId64 "): %s%s\n", epoch, cs->step, summary,
           better ? " (best so far)" : "");
    if (!better) return TW_OK;
    cs->best_score = score;
    cs->best_step = cs->step;
    char path[3 * TW_CFG_STR_MAX];
    snprintf(path, sizeof path, "%s/best.safetensors", L->run_dir);
    tw_ckpt_content weights = L->content;
    weights.optim = NULL;
    if (L->rank == 0) st = tw_ckpt_save(path, &weights, cs, L->lc->yaml, err);
    return tw_comm_agree(L->comm, st, err);
}

/* The run directory (rank 0): created, torn checkpoint writes removed, config.yaml written. */
static tw_status prepare_run_dir(loop *L, tw_err *err) {
    tw_status st = TW_OK;
    if (L->rank == 0) {
        char path[3 * TW_CFG_STR_MAX];
        st = tw_run_make_dirs(L->run_dir, err);
        int torn = st == TW_OK ? tw_ckpt_torn_remove(L->run_dir) : 0;
        if (torn) tw_log("# removed %d temporary file(s) of checkpoint writes that never finished\n", torn);
        if (st == TW_OK) {
            snprintf(path, sizeof path, "%s/config.yaml", L->run_dir);
            st = tw_run_write_text(path, L->lc->yaml, err);
        }
    }
    return tw_comm_agree(L->comm, st, err);
}

/* The augment section as the augmentations' parameters, and their scratch (loop.h). */
static tw_status make_aug(tw_loop_aug *a, const tw_augment_cfg *c, const tw_shard_norm *norm, int size, tw_err *err) {
    const tw_aug_probs *v[2] = {&c->view1, &c->view2};
    memset(&a->p, 0, sizeof a->p);
    for (int i = 0; i < 2; i++)
        a->p.view[i] = (tw_aug_view_probs){(float)v[i]->crop, (float)v[i]->flip, (float)v[i]->rot90,
                                           (float)v[i]->jitter, (float)v[i]->blur, (float)v[i]->noise,
                                           (float)v[i]->speckle, (float)v[i]->band_dropout};
    a->p.crop_min_scale = (float)c->crop_min_scale;
    a->p.jitter_brightness = (float)c->jitter_brightness;
    a->p.jitter_contrast = (float)c->jitter_contrast;
    a->p.blur_sigma_min = (float)c->blur_sigma_min;
    a->p.blur_sigma_max = (float)c->blur_sigma_max;
    a->p.noise_std = (float)c->noise_std;
    a->p.speckle_looks = c->speckle_looks;
    a->p.band_dropout_frac = (float)c->band_dropout_frac;
    for (int b = 0; b < TW_S1_BANDS; b++) a->db_per_unit[b] = (float)norm->std[TW_S2_BANDS + b];
    a->p_s1 = a->p;
    a->p_s1.db_per_unit = a->db_per_unit;
    a->scratch = malloc(tw_augment_scratch_floats(size) * sizeof(float));
    if (!a->scratch) return tw_err_set(err, TW_E_NOMEM, "augmentation scratch for %dx%d views", size, size);
    return TW_OK;
}

/* The loader options, the task and the step around it (optimizer, buckets, rollback). */
static tw_status set_up(loop *L, tw_err *err) {
    const tw_loop_cfg *lc = L->lc;
    tw_loader_opts *lo = &L->lo;
    tw_loader *probe = NULL;
    const char *split = tw_cfg_split_names[lc->data->split];
    /* The shards' metadata: the normalisation the augmentations need before any view is made
     * (the loader's thread starts at once), and the patch size data.size must fit in. */
    tw_shard_meta meta;
    tw_status st = tw_run_shard_meta(&meta, lc->data->shards, split, err);
    if (st == TW_OK && (lc->data->size > meta.h || lc->data->size > meta.w))
        st = tw_err_set(err, TW_E_RANGE, "data.size=%d is larger than the %dx%d patches of %s", lc->data->size, meta.h,
                        meta.w, meta.path);
    if (st == TW_OK) st = make_aug(&L->aug, lc->augment, &meta.norm, lc->data->size, err);
    L->eval_batch = lc->eval_batch > 0 ? lc->eval_batch : lc->data->batch;
    if (st == TW_OK && L->eval_batch % L->world)
        st = tw_err_set(err, TW_E_RANGE, "eval.batch=%d is not a multiple of the %d ranks", L->eval_batch, L->world);
    if (st == TW_OK && L->eval_batch > lc->data->batch)
        st = tw_err_set(err, TW_E_RANGE, "eval.batch=%d: at most data.batch=%d (the plans' batch)", L->eval_batch,
                        lc->data->batch);
    if (st == TW_OK) st = tw_run_loader_opts(lo, L->comm, lc->data, split, err);
    lo->seed = (uint64_t)lc->run->seed;
    lo->prefetch = 1;
    int prefetch = lc->data->prefetch > 0 ? lc->data->prefetch : 1;
    /* A loader without the hook counts the epoch's steps (the label-fraction subset is the
     * loader's), which the optimizer's schedule needs before a checkpoint can say where the data
     * resumes; the training loader is made after that. */
    if (st == TW_OK) st = tw_loader_init(&probe, lo, err);
    if ((st = tw_comm_agree(L->comm, st, err)) != TW_OK) return st;
    L->spe = tw_loader_steps_per_epoch(probe);
    int64_t n_samples = tw_loader_n_samples(probe);
    if (L->spe < 1) st = tw_err_set(err, TW_E_RANGE, "%s: %" PRId64 " samples in split %s, fewer than one batch of %d",
                                    lc->data->shards, n_samples, lo->split, lc->data->batch);
    if (st == TW_OK) st = tw_step_init(&L->step, L->be, L->comm, err);
    if (st == TW_OK)
        st = lc->make_task(&L->task, L->be, L->comm, tw_step_bad(L->step), &L->aug, lc->user, err);
    tw_loader_free(probe);
    if ((st = tw_comm_agree(L->comm, st, err)) != TW_OK) return st;
    lo->prefetch = prefetch;
    L->task.loader_opts(&L->task, lo);

    tw_step_opts so = {.bucket_elems = (size_t)lc->backend->bucket_kib * 1024 / sizeof(float),
                       .graph = lc->backend->graph == TW_CFG_GRAPH_ON    ? TW_GRAPH_ON
                              : lc->backend->graph == TW_CFG_GRAPH_OFF ? TW_GRAPH_OFF : TW_GRAPH_AUTO};
    tw_optim_from_cfg(&so.optim, &so.sched, lc->optim, lc->data->batch, L->spe);
    st = tw_step_bind(L->step, &L->task, &so, err);
    L->content = (tw_ckpt_content){L->task.P, tw_step_optim(L->step), L->task.kind, L->task.sources};
    return tw_comm_agree(L->comm, st, err);
}

/* From run.resume's checkpoint, or the task's initialisation; then the training loader, where
 * the checkpoint left the data. */
static tw_status resume(loop *L, tw_err *err) {
    const tw_loop_cfg *lc = L->lc;
    tw_status st = TW_OK;
    L->cs = (tw_ckpt_state){.seed = (uint64_t)lc->run->seed, .best_score = -1};
    if (!strcmp(lc->run->resume, "auto")) {
        if ((st = resume_auto(L, &L->cs, &L->resumed, err)) != TW_OK) return st;
    } else if (strcmp(lc->run->resume, "never")) {
        st = tw_ckpt_load(lc->run->resume, &L->content, &L->cs, err);
        if ((st = tw_comm_agree(L->comm, st, err)) != TW_OK) return st;
        L->resumed = 1;
        snprintf(L->last_ckpt, sizeof L->last_ckpt, "%s", lc->run->resume);
    }
    if (!L->resumed &&
        (st = tw_comm_agree(L->comm, L->task.reset(&L->task, (uint64_t)lc->run->seed, err), err)) != TW_OK)
        return st;
    if (L->resumed && L->cs.seed != (uint64_t)lc->run->seed && L->rank == 0)
        tw_warn("twinfuse %s: warning: %s was written with run.seed=%" PRIu64 ", this run has %" PRId64
                "; continuing with the checkpoint's seed for the data order\n", lc->command, L->last_ckpt, L->cs.seed,
                lc->run->seed);
    L->lo.start_epoch = L->cs.loader_epoch;
    L->lo.start_step = L->cs.loader_step;
    L->lo.seed = L->cs.seed;
    st = tw_loader_init(&L->ld, &L->lo, err);
    L->total = lc->run->max_steps != TW_CFG_UNSET ? lc->run->max_steps : (int64_t)lc->optim->epochs * L->spe;
    L->saved_at = L->validated_at = L->resumed ? L->cs.step : -1;
    return tw_comm_agree(L->comm, st, err);
}

/* The header (what runs where, and every resolved key once) and the metrics file. */
static tw_status header(loop *L, tw_err *err) {
    const tw_loop_cfg *lc = L->lc;
    char desc[256], host[64] = "?", path[3 * TW_CFG_STR_MAX];
    tw_backend_describe(L->be, desc, sizeof desc);
    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    tw_log("# twinfuse %s  config=%s  backend=%s  ranks=%d\n", lc->command,
           lc->config_path ? lc->config_path : "(defaults)", desc, L->world);
    tw_log("#   rank 0 host %s; %d %s per rank per step; %" PRId64 " steps per epoch; run dir %s\n", host,
           lc->data->batch / L->world, L->task.unit, L->spe, L->run_dir);
    if (L->rank == 0) tw_cfg_print(stdout, lc->schema, lc->cfg);
    if (L->resumed) tw_log("# resumed from %s at step %" PRId64 "\n", L->last_ckpt, L->cs.step);
    else tw_log("# starting from the initialisation of run.seed=%" PRId64 "\n", lc->run->seed);

    tw_status st = TW_OK;
    snprintf(path, sizeof path, "%s/metrics.jsonl", L->run_dir);
    if (strcmp(lc->run->resume, "never") && L->rank == 0) st = tw_trainlog_metrics_trim(path, L->cs.step, err);
    if ((st = tw_comm_agree(L->comm, st, err)) != TW_OK) return st;
    st = tw_trainlog_open(&L->log, L->rank == 0, path, lc->run->log_every, L->cs.step, L->total, L->spe, err);
    L->log.unit = L->task.unit;
    return tw_comm_agree(L->comm, st, err);
}

/* The task's monitors on the step just accepted (pretrain: train/monitor_run.h), their line in
 * the log and metrics.jsonl; a status from them stops the run after a checkpoint of this step. */
static tw_status monitors(loop *L, int64_t step, tw_err *err) {
    tw_check_report rep = {0};
    tw_err em = {0};
    tw_status sm = L->task.after_step(&L->task, step, L->spe, &rep, &em);
    sm = tw_comm_agree(L->comm, sm, &em);
    if (rep.json[0] && L->st_metrics == TW_OK)
        L->st_metrics = tw_trainlog_monitor(&L->log, step, rep.json, rep.line, rep.note, err);
    if (sm == TW_OK) return TW_OK;
    tw_status st;
    if (L->saved_at != step) {
        if ((st = save(L, &L->cs, err)) != TW_OK) return st;
        L->saved_at = step;
    }
    return tw_err_set(err, sm, "%s; checkpoint %s", em.msg, L->last_ckpt);
}

/* Everything after an accepted step, once per step: the progress line and metrics, the task's
 * monitors, then validation and checkpoints when due. */
static tw_status after_step(loop *L, const tw_batch *b, double loss, double lr, double dt, tw_err *err) {
    const tw_loop_cfg *lc = L->lc;
    tw_ckpt_state *cs = &L->cs;
    int64_t step = cs->step + 1;
    L->st_metrics = tw_trainlog_step(&L->log, step, b->epoch, loss, lr, dt, lc->data->batch / dt, err);
    cs->step = step;
    tw_loader_state(L->ld, &cs->loader_epoch, &cs->loader_step);
    cs->loss = loss;
    tw_status st = TW_OK;
    if (L->task.after_step && (st = monitors(L, step, err)) != TW_OK) return st;
    int at_end = step == L->total, epoch_end = step % L->spe == 0;
    int64_t epochs_done = step / L->spe;
    int every = lc->validate_every_epochs;
    if (L->task.validate && (at_end || (every > 0 && epoch_end && epochs_done % every == 0))) {
        tw_trainlog_break(&L->log);
        if ((st = validate(L, cs, epochs_done, err)) != TW_OK) return st;
        L->validated_at = step;
    }
    if ((lc->run->ckpt_every_steps > 0 && step % lc->run->ckpt_every_steps == 0) || at_end ||
        L->validated_at == step) {
        if ((st = save(L, cs, err)) != TW_OK) return st;
        L->saved_at = step;
    }
    return TW_OK;
}

/* Steps until the last; a rejected step (non-finite loss or gradients) stops the run with the
 * parameters of the step before it. */
static tw_status train(loop *L, tw_err *err) {
    tw_status st;
    while (L->cs.step < L->total) {
        double t0 = tw_trainlog_now(), lr = NAN;
        const tw_batch *b = NULL;
        if ((st = L->st_metrics) == TW_OK) st = tw_loader_next(L->ld, &b, err);
        if ((st = tw_comm_agree(L->comm, st, err)) != TW_OK) return st;
        double loss = tw_loop_step(L->step, b, &lr);
        if (!isfinite(loss)) {
            tw_trainlog_break(&L->log);
            tw_log("# stopped at step %" PRId64 ": non-finite loss or gradients; the parameters stay those of "
                   "step %" PRId64 ", the last good checkpoint is %s\n", L->cs.step + 1, L->cs.step,
                   L->last_ckpt[0] ? L->last_ckpt : "(none)");
            L->stopped = 1;
            return TW_E_RANGE;
        }
        tw_backend_sync(L->be);
        if ((st = after_step(L, b, loss, lr, tw_trainlog_now() - t0, err)) != TW_OK) return st;
    }
    return tw_comm_agree(L->comm, L->st_metrics, err);
}

int tw_loop_run(tw_comm *comm, const tw_loop_cfg *lc) {
    loop L;
    memset(&L, 0, sizeof L);
    L.lc = lc;
    L.comm = comm;
    L.rank = tw_comm_rank(comm);
    L.world = tw_comm_size(comm);
    tw_err err = {0};
    tw_status st = TW_OK;
    snprintf(L.run_dir, sizeof L.run_dir, "%s/%s", lc->run->out_dir, lc->run->name);

    if (lc->data->batch % L.world)
        st = tw_err_set(&err, TW_E_RANGE, "data.batch=%d is not a multiple of the %d ranks", lc->data->batch, L.world);
    if (st == TW_OK) st = prepare_run_dir(&L, &err);
    if (st == TW_OK) st = tw_run_backend_create(&L.be, comm, lc->backend, &err);
    if (st == TW_OK) st = set_up(&L, &err);
    if (st == TW_OK) st = resume(&L, &err);
    if (st == TW_OK) st = header(&L, &err);
    if (st == TW_OK) st = train(&L, &err);
    if (st == TW_OK) {
        tw_trainlog_break(&L.log);
        tw_log("# done: %" PRId64 " steps, loss %.4e, 0 non-finite losses, checkpoint %s %s\n", L.cs.step, L.cs.loss,
               L.last_ckpt[0] ? L.last_ckpt : "(none)", L.saved_at == L.cs.step ? "OK" : "(from before)");
        if (L.task.validate && L.cs.best_score >= 0)
            tw_log("# best validation score %.6f at step %" PRId64 ": %s/best.safetensors\n", L.cs.best_score,
                   L.cs.best_step, L.run_dir);
    } else if (L.rank == 0 && !L.stopped) {
        tw_trainlog_break(&L.log);
        fprintf(stderr, "twinfuse %s: %s\n", lc->command, err.msg);
    }
    tw_trainlog_close(&L.log);
    if (L.ld) tw_loader_free(L.ld);
    tw_step_free(L.step);
    if (L.task.free) L.task.free(&L.task);
    free(L.aug.scratch);
    if (L.be) tw_backend_free(L.be);
    return st == TW_OK ? 0 : 1;
}
