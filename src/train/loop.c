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
#include "dist/buckets.h"
#include "optim/optim_config.h"
#include "train/checkpoint.h"
#include "train/report.h"
#include "train/runtime.h"
#include "train/update.h"

/* Checkpoints kept in the run directory: the newest and the one before it (a fallback when the
 * newest turns out unreadable). */
enum { KEEP_CKPTS = 2 };

typedef struct loop {
    const tw_loop_cfg *lc;
    tw_comm *comm;
    int rank, world;
    char run_dir[2 * TW_CFG_STR_MAX + 2];
    char last_ckpt[3 * TW_CFG_STR_MAX];
    tw_task task;
    tw_optim *optim;
    tw_ckpt_content content;
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
    if ((st = tw_run_agree(L->comm, st, err)) != TW_OK) return st;
    *loaded = chosen[0] != 0;
    snprintf(L->last_ckpt, sizeof L->last_ckpt, "%s", chosen);
    return TW_OK;
}

/* What a step changes beyond the gradients and the optimizer's update: the BN running statistics
 * (P->buffers) and counters that forward moves. Copied before every step, put back when the step
 * is rejected, so a rejected step leaves the model as it was whatever its layers do. */
typedef struct step_undo {
    float *buffers;       /* backend memory, [P->n_buffers]; NULL when there are none */
    int64_t *counters;    /* host, [P->n_counters] */
} step_undo;

static void undo_init(step_undo *u, tw_backend *be, const tw_params *P) {
    u->buffers = P->n_buffers ? tw_mem_alloc(be, P->n_buffers * sizeof(float)) : NULL;
    u->counters = malloc((P->n_counters ? P->n_counters : 1) * sizeof(int64_t));
    TW_ASSERT(u->counters);
}

static void undo_keep(step_undo *u, tw_backend *be, const tw_params *P) {
    if (u->buffers) tw_mem_copy(be, u->buffers, P->buffers, P->n_buffers * sizeof(float));
    if (P->n_counters) memcpy(u->counters, P->counters, P->n_counters * sizeof(int64_t));
}

static void undo_restore(const step_undo *u, tw_backend *be, tw_params *P) {
    if (u->buffers) tw_mem_copy(be, P->buffers, u->buffers, P->n_buffers * sizeof(float));
    if (P->n_counters) memcpy(P->counters, u->counters, P->n_counters * sizeof(int64_t));
}

static void undo_free(step_undo *u, tw_backend *be) {
    if (u->buffers) tw_mem_free(be, u->buffers);
    free(u->counters);
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
    if ((st = tw_run_agree(L->comm, st, err)) == TW_OK) snprintf(L->last_ckpt, sizeof L->last_ckpt, "%s", path);
    return st;
}

/* Scores the validation split; a better score than any before is kept as best.safetensors. */
static tw_status validate(loop *L, tw_ckpt_state *cs, int64_t epoch, tw_err *err) {
    double score = 0;
    char summary[256] = "";
    tw_status st = tw_run_agree(L->comm, L->task.validate(&L->task, &score, summary, sizeof summary, err), err);
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
    return tw_run_agree(L->comm, st, err);
}

/* Builds the loader options, the task and its optimizer. */
static tw_status set_up(loop *L, tw_backend *be, tw_loader_opts *lo, int64_t *spe, tw_err *err) {
    const tw_loop_cfg *lc = L->lc;
    tw_loader *probe = NULL;
    tw_status st = tw_run_loader_opts(lo, L->comm, lc->data, tw_cfg_split_names[lc->data->split], err);
    lo->seed = (uint64_t)lc->run->seed;
    lo->prefetch = 1;
    int prefetch = lc->data->prefetch > 0 ? lc->data->prefetch : 1;
    /* A first loader without the hook reads the shards' normalisation (augmentations may need
     * it before any view is made: the loader's thread starts at once) and the epoch's length. */
    if (st == TW_OK) st = tw_loader_init(&probe, lo, err);
    if ((st = tw_run_agree(L->comm, st, err)) != TW_OK) return st;
    *spe = tw_loader_steps_per_epoch(probe);
    int64_t n_samples = tw_loader_n_samples(probe);
    if (*spe < 1) st = tw_err_set(err, TW_E_RANGE, "%s: %" PRId64 " samples in split %s, fewer than one batch of %d",
                                  lc->data->shards, n_samples, lo->split, lc->data->batch);
    if (st == TW_OK) st = lc->make_task(&L->task, be, L->comm, probe, lc->user, err);
    tw_loader_free(probe);
    if ((st = tw_run_agree(L->comm, st, err)) != TW_OK) return st;
    lo->prefetch = prefetch;
    L->task.loader_opts(&L->task, lo);

    tw_optim_hparams h;
    tw_schedule sched;
    tw_optim_from_cfg(&h, &sched, lc->optim, lc->data->batch, *spe);
    st = tw_optim_create_scaled(&L->optim, be, L->task.segs, L->task.lr_scale, L->task.n_segs,
                                L->task.P->n_params, &h, &sched, err);
    L->content = (tw_ckpt_content){L->task.P, L->optim, L->task.kind, L->task.sources};
    return tw_run_agree(L->comm, st, err);
}

int tw_loop_run(tw_comm *comm, const tw_loop_cfg *lc) {
    loop L;
    memset(&L, 0, sizeof L);
    L.lc = lc;
    L.comm = comm;
    L.rank = tw_comm_rank(comm);
    L.world = tw_comm_size(comm);
    int code = 1;
    tw_err err = {0};
    tw_status st = TW_OK;
    tw_backend *be = NULL;
    tw_loader *ld = NULL;
    tw_buckets *bk = NULL;
    step_undo undo = {NULL, NULL};
    tw_report rep;
    memset(&rep, 0, sizeof rep);
    char path[3 * TW_CFG_STR_MAX];
    snprintf(L.run_dir, sizeof L.run_dir, "%s/%s", lc->run->out_dir, lc->run->name);

    if (lc->data->batch % L.world) {
        st = tw_err_set(&err, TW_E_RANGE, "data.batch=%d is not a multiple of the %d ranks", lc->data->batch, L.world);
        goto done;
    }
    if (L.rank == 0) {
        st = tw_run_make_dirs(L.run_dir, &err);
        int torn = st == TW_OK ? tw_ckpt_torn_remove(L.run_dir) : 0;
        if (torn) tw_log("# removed %d temporary file(s) of checkpoint writes that never finished\n", torn);
        if (st == TW_OK) {
            snprintf(path, sizeof path, "%s/config.yaml", L.run_dir);
            st = tw_run_write_text(path, lc->yaml, &err);
        }
    }
    if ((st = tw_run_agree(comm, st, &err)) != TW_OK) goto done;
    if ((st = tw_run_backend_create(&be, comm, lc->backend, &err)) != TW_OK) goto done;
    tw_loader_opts lo;
    int64_t spe = 0;
    if ((st = set_up(&L, be, &lo, &spe, &err)) != TW_OK) goto done;

    /* Resume or start. */
    tw_ckpt_state cs = {.seed = (uint64_t)lc->run->seed, .best_score = -1};
    int resumed = 0;
    if (!strcmp(lc->run->resume, "auto")) {
        if ((st = resume_auto(&L, &cs, &resumed, &err)) != TW_OK) goto done;
    } else if (strcmp(lc->run->resume, "never")) {
        st = tw_ckpt_load(lc->run->resume, &L.content, &cs, &err);
        if ((st = tw_run_agree(comm, st, &err)) != TW_OK) goto done;
        resumed = 1;
        snprintf(L.last_ckpt, sizeof L.last_ckpt, "%s", lc->run->resume);
    }
    if (!resumed && (st = tw_run_agree(comm, L.task.reset(&L.task, (uint64_t)lc->run->seed, &err), &err)) != TW_OK)
        goto done;
    if (resumed && cs.seed != (uint64_t)lc->run->seed && L.rank == 0)
        tw_warn("twinfuse %s: warning: %s was written with run.seed=%" PRIu64 ", this run has %" PRId64
                "; continuing with the checkpoint's seed for the data order\n", lc->command, L.last_ckpt, cs.seed,
                lc->run->seed);
    lo.start_epoch = cs.loader_epoch;
    lo.start_step = cs.loader_step;
    lo.seed = cs.seed;
    st = tw_loader_init(&ld, &lo, &err);
    if ((st = tw_run_agree(comm, st, &err)) != TW_OK) goto done;
    int64_t total = lc->run->max_steps != TW_CFG_UNSET ? lc->run->max_steps : (int64_t)lc->optim->epochs * spe;

    /* The header: what runs where, and every resolved key once. */
    char desc[256], host[64] = "?";
    tw_backend_describe(be, desc, sizeof desc);
    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    tw_log("# twinfuse %s  config=%s  backend=%s  ranks=%d\n", lc->command,
           lc->config_path ? lc->config_path : "(defaults)", desc, L.world);
    tw_log("#   rank 0 host %s; %d %s per rank per step; %" PRId64 " steps per epoch; run dir %s\n", host,
           lc->data->batch / L.world, L.task.unit, spe, L.run_dir);
    if (L.rank == 0) tw_cfg_print(stdout, lc->schema, lc->cfg);
    if (resumed) tw_log("# resumed from %s at step %" PRId64 "\n", L.last_ckpt, cs.step);
    else tw_log("# starting from the initialisation of run.seed=%" PRId64 "\n", lc->run->seed);

    snprintf(path, sizeof path, "%s/metrics.jsonl", L.run_dir);
    if (strcmp(lc->run->resume, "never") && L.rank == 0) st = tw_report_metrics_trim(path, cs.step, &err);
    if ((st = tw_run_agree(comm, st, &err)) != TW_OK) goto done;
    st = tw_report_open(&rep, L.rank == 0, path, lc->run->log_every, cs.step, total, spe, &err);
    if ((st = tw_run_agree(comm, st, &err)) != TW_OK) goto done;
    rep.unit = L.task.unit;

    tw_grad_span span = tw_grad_span_of(L.task.segs, L.task.n_segs);
    st = tw_buckets_create(&bk, comm, L.task.P->grads + span.offset, span.offset, span.n_elems,
                           (size_t)lc->backend->bucket_kib * 1024 / sizeof(float), &err);
    if ((st = tw_run_agree(comm, st, &err)) != TW_OK) goto done;
    tw_grad_ready ready = tw_buckets_hook(bk);
    undo_init(&undo, be, L.task.P);
    int64_t step = cs.step, saved_at = resumed ? cs.step : -1, validated_at = resumed ? cs.step : -1;
    double loss = cs.loss;
    tw_status st_metrics = TW_OK;   /* rank 0's last metrics line, agreed with the next batch */
    while (step < total) {
        double t0 = tw_report_now();
        const tw_batch *b = NULL;
        if ((st = st_metrics) == TW_OK) st = tw_loader_next(ld, &b, &err);
        if ((st = tw_run_agree(comm, st, &err)) != TW_OK) goto done;
        tw_buckets_begin(bk);
        undo_keep(&undo, be, L.task.P);
        double l = L.task.step(&L.task, b, &ready), lr = NAN;
        if (L.task.reduce == TW_GRAD_MEAN && L.world > 1) {
            float lf = (float)l;   /* NaN on any rank makes the mean NaN on all */
            tw_comm_allreduce(comm, &lf, 1, TW_F32, TW_REDUCE_SUM);
            l = lf / L.world;
        }
        /* Every rank waits for every bucket whatever its loss, so all start the same collectives. */
        tw_buckets_wait(bk);
        if (isfinite(l)) lr = tw_train_apply(be, L.task.P, L.optim, span, L.task.reduce, L.world, L.task.bad);
        if (L.task.end_step) L.task.end_step(&L.task, isfinite(l) && isfinite(lr));
        if (!isfinite(l) || !isfinite(lr)) {
            undo_restore(&undo, be, L.task.P);
            tw_report_break(&rep);
            tw_log("# stopped at step %" PRId64 ": non-finite loss or gradients; the parameters stay those of "
                   "step %" PRId64 ", the last good checkpoint is %s\n", step + 1, step,
                   L.last_ckpt[0] ? L.last_ckpt : "(none)");
            goto done;
        }
        loss = l;
        step++;
        tw_backend_sync(be);
        double dt = tw_report_now() - t0;
        st_metrics = tw_report_step(&rep, step, b->epoch, loss, lr, dt, lc->data->batch / dt, &err);

        cs.step = step;
        tw_loader_state(ld, &cs.loader_epoch, &cs.loader_step);
        cs.loss = loss;
        /* The task's monitors on the step just accepted (pretrain: train/monitor_run.h). */
        if (L.task.after_step) {
            char mon[2048] = "", line[512] = "";
            tw_err em = {0};
            tw_status sm = tw_run_agree(comm, L.task.after_step(&L.task, step, mon, sizeof mon, line, sizeof line, &em),
                                        &em);
            if (mon[0] && st_metrics == TW_OK) st_metrics = tw_report_monitor(&rep, step, mon, line, &err);
            if (sm != TW_OK) {
                if (saved_at != step && (st = save(&L, &cs, &err)) != TW_OK) goto done;
                st = tw_err_set(&err, sm, "%s; checkpoint %s", em.msg, L.last_ckpt);
                goto done;
            }
        }
        int at_end = step == total, epoch_end = step % spe == 0;
        int64_t epochs_done = step / spe;
        int every = lc->validate_every_epochs;
        int due = L.task.validate &&
                  (at_end || (every > 0 && epoch_end && epochs_done % every == 0));
        if (due) {
            tw_report_break(&rep);
            if ((st = validate(&L, &cs, epochs_done, &err)) != TW_OK) goto done;
            validated_at = step;
        }
        if ((lc->run->ckpt_every_steps > 0 && step % lc->run->ckpt_every_steps == 0) || at_end ||
            validated_at == step) {
            if ((st = save(&L, &cs, &err)) != TW_OK) goto done;
            saved_at = step;
        }
    }
    if ((st = tw_run_agree(comm, st_metrics, &err)) != TW_OK) goto done;
    tw_report_break(&rep);
    tw_log("# done: %" PRId64 " steps, loss %.4e, 0 non-finite losses, checkpoint %s %s\n", step, loss,
           L.last_ckpt[0] ? L.last_ckpt : "(none)", saved_at == step ? "OK" : "(from before)");
    if (L.task.validate && cs.best_score >= 0)
        tw_log("# best validation score %.6f at step %" PRId64 ": %s/best.safetensors\n", cs.best_score, cs.best_step,
               L.run_dir);
    code = 0;
done:
    if (st != TW_OK && L.rank == 0) {
        tw_report_break(&rep);
        fprintf(stderr, "twinfuse %s: %s\n", lc->command, err.msg);
    }
    tw_report_close(&rep);
    if (ld) tw_loader_free(ld);
    tw_buckets_free(bk);
    if (be) undo_free(&undo, be);
    if (L.optim) tw_optim_free(L.optim);
    if (L.task.free) L.task.free(&L.task);
    if (be) tw_backend_free(be);
    return code;
}
