/* The pre-training loop (pretrain.h): set-up, resume, then step after step until run.max_steps or
 * optim.epochs; a checkpoint every run.ckpt_every_steps and at the end. Every rank runs the same
 * code; rank 0 prints, writes metrics and checkpoints. */
#include "train/pretrain.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "data/augment.h"
#include "data/loader.h"
#include "optim/optim_config.h"
#include "train/bt_model.h"
#include "train/checkpoint.h"
#include "train/report.h"

/* Checkpoints kept in the run directory: the newest and the one before it (a fallback when the
 * newest turns out unreadable). */
enum { KEEP_CKPTS = 2 };

typedef struct aug_hook {
    tw_aug_params p;
    int sar;                  /* S1: the view comes from the s1 planes */
    float db_per_unit[TW_S1_BANDS];
} aug_hook;

/* The loader's hook (data/loader.h): one view of one sample, a pure function of its arguments. */
static tw_status augment_hook(void *user, tw_view *out, const tw_view *in, uint64_t seed, int64_t epoch,
                              int64_t sample, int view, tw_err *err) {
    const aug_hook *a = user;
    float *dst = a->sar ? out->s1 : out->s2;
    const float *src = a->sar ? in->s1 : in->s2;
    int c = a->sar ? in->c_s1 : in->c_s2;
    if (out->h != out->w || out->h > in->h || out->w > in->w)
        return tw_err_set(err, TW_E_SHAPE, "augment: view %dx%d from a %dx%d sample (data.size too large?)",
                          out->h, out->w, in->h, in->w);
    float *scratch = malloc(tw_augment_scratch_floats(out->h) * sizeof(float));
    if (!scratch) return tw_err_set(err, TW_E_NOMEM, "augment: scratch for %dx%d", out->h, out->w);
    tw_augment_view(dst, scratch, src, c, in->h, in->w, out->h, &a->p, seed, (uint32_t)epoch,
                    (uint32_t)sample, (uint32_t)view);
    free(scratch);
    return TW_OK;
}

static void aug_from_cfg(aug_hook *a, const tw_pretrain_cfg *cfg) {
    const tw_aug_probs *v[2] = {&cfg->augment.view1, &cfg->augment.view2};
    for (int i = 0; i < 2; i++)
        a->p.view[i] = (tw_aug_view_probs){(float)v[i]->crop, (float)v[i]->flip, (float)v[i]->rot90,
                                           (float)v[i]->jitter, (float)v[i]->blur, (float)v[i]->noise,
                                           (float)v[i]->speckle, (float)v[i]->band_dropout};
    a->p.crop_min_scale = (float)cfg->augment.crop_min_scale;
    a->p.jitter_brightness = (float)cfg->augment.jitter_brightness;
    a->p.jitter_contrast = (float)cfg->augment.jitter_contrast;
    a->p.blur_sigma_min = (float)cfg->augment.blur_sigma_min;
    a->p.blur_sigma_max = (float)cfg->augment.blur_sigma_max;
    a->p.noise_std = (float)cfg->augment.noise_std;
    a->p.speckle_looks = cfg->augment.speckle_looks;
    a->p.band_dropout_frac = (float)cfg->augment.band_dropout_frac;
    a->sar = cfg->data.source == TW_SOURCE_S1;
    a->p.db_per_unit = a->sar ? a->db_per_unit : NULL;
}

/* mkdir -p for the run directory. */
static tw_status make_dirs(const char *path, tw_err *err) {
    char buf[4 * TW_CFG_STR_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        int end = *p == 0;
        if (*p == '/' || end) {
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST)
                return tw_err_set(err, TW_E_IO, "%s: cannot create: %s", buf, strerror(errno));
            if (end) break;
            *p = '/';
        }
    }
    return TW_OK;
}

static tw_status write_text(const char *path, const char *text, tw_err *err) {
    FILE *f = fopen(path, "w");
    if (!f) return tw_err_set(err, TW_E_IO, "%s: cannot write: %s", path, strerror(errno));
    int ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    return ok ? TW_OK : tw_err_set(err, TW_E_IO, "%s: write failed", path);
}

/* Every rank reaches the same verdict: a failure on any rank fails them all. */
static tw_status agree(tw_comm *comm, tw_status st, tw_err *err) {
    int64_t bad = st != TW_OK;
    tw_comm_allreduce(comm, &bad, 1, TW_I64, TW_REDUCE_MAX);
    if (bad && st == TW_OK) return tw_err_set(err, TW_E_COMM, "another rank failed (see its message)");
    return st;
}

/* Sets OpenMP's thread count before the backend starts: backend.threads, or the cores shared by
 * the ranks on this node. */
static void set_threads(tw_comm *comm, int threads) {
    int64_t local = tw_comm_local_rank(comm) + 1;
    tw_comm_allreduce(comm, &local, 1, TW_I64, TW_REDUCE_MAX);
    if (threads <= 0 && (local <= 1 || getenv("OMP_NUM_THREADS"))) return;
    if (threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)(cores / local > 0 ? cores / local : 1);
    }
    char buf[16];
    snprintf(buf, sizeof buf, "%d", threads);
    setenv("OMP_NUM_THREADS", buf, 1);
}

/* resume=auto: the newest checkpoint of the run that loads; invalid ones are reported and
 * skipped. Returns 1 when one was loaded. */
static int resume_auto(tw_bt_model *m, tw_ckpt_state *s, const char *run_dir, char *used, size_t n_used) {
    char **paths;
    int n = tw_ckpt_list(&paths, run_dir), loaded = 0;
    for (int i = 0; i < n && !loaded; i++) {
        tw_err err = {0};
        if (tw_ckpt_load(paths[i], m, s, &err) == TW_OK) {
            loaded = 1;
            snprintf(used, n_used, "%s", paths[i]);
        } else if (tw_comm_rank(m->comm) == 0) {
            tw_warn("twinfuse pretrain: warning: skipping invalid checkpoint: %s\n", err.msg);
        }
    }
    tw_ckpt_list_free(paths, n);
    return loaded;
}

/* Deletes the run's checkpoints beyond the newest KEEP_CKPTS (rank 0). */
static void prune(const char *run_dir) {
    char **paths;
    int n = tw_ckpt_list(&paths, run_dir);
    for (int i = KEEP_CKPTS; i < n; i++) unlink(paths[i]);
    tw_ckpt_list_free(paths, n);
}

int tw_pretrain_run(tw_comm *comm, const tw_pretrain_cfg *cfg, const char *yaml, const char *config_path) {
    int rank = tw_comm_rank(comm), world = tw_comm_size(comm), code = 1;
    tw_err err = {0};
    tw_status st = TW_OK;
    tw_backend *be = NULL;
    tw_loader *ld = NULL;
    tw_bt_model m;
    tw_report rep;
    memset(&m, 0, sizeof m);
    memset(&rep, 0, sizeof rep);
    char run_dir[2 * TW_CFG_STR_MAX + 2], path[3 * TW_CFG_STR_MAX], last_ckpt[3 * TW_CFG_STR_MAX] = "";
    snprintf(run_dir, sizeof run_dir, "%s/%s", cfg->run.out_dir, cfg->run.name);

    if (cfg->model.backbone_bn == TW_BN_SYNC) {
        st = tw_err_set(&err, TW_E_UNSUPPORTED,
                        "model.backbone_bn=sync: the op interface has no 2-D batch norm with external "
                        "statistics yet; use local (per-rank statistics, the default)");
        goto done;
    }
    if (cfg->data.batch % world) {
        st = tw_err_set(&err, TW_E_RANGE, "data.batch=%d is not a multiple of the %d ranks", cfg->data.batch, world);
        goto done;
    }
    if (rank == 0) {
        st = make_dirs(run_dir, &err);
        if (st == TW_OK) {
            snprintf(path, sizeof path, "%s/config.yaml", run_dir);
            st = write_text(path, yaml, &err);
        }
    }
    if ((st = agree(comm, st, &err)) != TW_OK) goto done;

    set_threads(comm, cfg->backend.threads);
    tw_precision prec = cfg->backend.precision == TW_CFG_PREC_FP32 ? TW_PREC_FP32
                      : cfg->backend.precision == TW_CFG_PREC_BF16 ? TW_PREC_BF16 : TW_PREC_AUTO;
    tw_device dev = cfg->backend.device == TW_CFG_DEV_CUDA ? TW_DEVICE_CUDA : TW_DEVICE_CPU;
    st = tw_backend_create(&be, dev, prec, tw_comm_local_rank(comm), &err);
    if ((st = agree(comm, st, &err)) != TW_OK) goto done;

    /* The loader's options; a first loader without the hook reads the shards' normalisation
     * (the speckle needs each band's std in dB before any view is made: the loader's thread
     * starts at once) and the epoch's length, then goes. */
    aug_hook hook;
    memset(&hook, 0, sizeof hook);
    aug_from_cfg(&hook, cfg);
    tw_loader_opts lo;
    tw_loader_opts_default(&lo);
    lo.dir = cfg->data.shards;
    lo.split = tw_cfg_split_names[cfg->data.split];
    lo.global_batch = cfg->data.batch;
    lo.rank = rank;
    lo.world = world;
    lo.seed = (uint64_t)cfg->run.seed;
    lo.use_s1 = cfg->data.source == TW_SOURCE_S1;
    if (cfg->data.source == TW_SOURCE_S1) lo.n_s2_bands = 0;
    else st = tw_loader_bands_parse(&lo, cfg->data.s2_bands == TW_BANDS_RGB ? "rgb" : "all", &err);
    lo.prefetch = 1;
    if (st == TW_OK) st = tw_loader_init(&ld, &lo, &err);
    if ((st = agree(comm, st, &err)) != TW_OK) goto done;
    const tw_shard_norm *norm = tw_loader_norm(ld);
    for (int b = 0; b < TW_S1_BANDS; b++) hook.db_per_unit[b] = (float)norm->std[TW_S2_BANDS + b];
    int64_t spe = tw_loader_steps_per_epoch(ld), n_samples = tw_loader_n_samples(ld);
    tw_loader_free(ld);
    ld = NULL;
    if (spe < 1) {
        st = tw_err_set(&err, TW_E_RANGE, "%s: %" PRId64 " samples in split %s, fewer than one batch of %d",
                        cfg->data.shards, n_samples, lo.split, cfg->data.batch);
        goto done;
    }
    lo.prefetch = cfg->data.prefetch > 0 ? cfg->data.prefetch : 1;
    lo.n_views = 2;
    lo.augment = augment_hook;
    lo.augment_user = &hook;
    lo.out_h = lo.out_w = cfg->data.size;

    tw_bt_opts o = {.c_in = lo.use_s1 ? TW_S1_BANDS : lo.n_s2_bands, .h = cfg->data.size, .w = cfg->data.size,
                    .n_local = cfg->data.batch / world, .bn_groups = 1,
                    .proj_dim = cfg->model.projector_dim, .lambda = (float)cfg->loss.lambda};
    tw_optim_from_pretrain(&o.optim, &o.sched, cfg, spe);
    st = tw_bt_model_init(&m, be, comm, &o, &err);
    if ((st = agree(comm, st, &err)) != TW_OK) goto done;

    /* Resume or start. */
    tw_ckpt_state cs = {.seed = (uint64_t)cfg->run.seed};
    int resumed = 0;
    if (!strcmp(cfg->run.resume, "auto")) {
        resumed = resume_auto(&m, &cs, run_dir, last_ckpt, sizeof last_ckpt);
    } else if (strcmp(cfg->run.resume, "never")) {
        st = tw_ckpt_load(cfg->run.resume, &m, &cs, &err);
        if ((st = agree(comm, st, &err)) != TW_OK) goto done;
        resumed = 1;
        snprintf(last_ckpt, sizeof last_ckpt, "%s", cfg->run.resume);
    }
    if (!resumed) tw_bt_model_reset(&m, (uint64_t)cfg->run.seed);
    if (resumed && cs.seed != (uint64_t)cfg->run.seed && rank == 0)
        tw_warn("twinfuse pretrain: warning: %s was written with run.seed=%" PRIu64 ", this run has %" PRId64
                "; continuing with the checkpoint's seed for the data order\n", last_ckpt, cs.seed, cfg->run.seed);
    lo.start_epoch = cs.loader_epoch;
    lo.start_step = cs.loader_step;
    lo.seed = cs.seed;
    st = tw_loader_init(&ld, &lo, &err);
    if ((st = agree(comm, st, &err)) != TW_OK) goto done;
    int64_t total = cfg->run.max_steps != TW_CFG_UNSET ? cfg->run.max_steps : (int64_t)cfg->optim.epochs * spe;

    /* The header: what runs where, and every resolved key once. */
    char desc[256];
    tw_backend_describe(be, desc, sizeof desc);
    char host[64] = "?";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    tw_log("# twinfuse pretrain  config=%s  backend=%s  ranks=%d\n", config_path ? config_path : "(defaults)",
           desc, world);
    tw_log("#   rank 0 host %s; %d pairs per rank per step; %" PRId64 " steps per epoch; run dir %s\n", host,
           o.n_local, spe, run_dir);
    if (rank == 0) tw_cfg_print(stdout, tw_pretrain_schema(), cfg);
    if (resumed) tw_log("# resumed from %s at step %" PRId64 "\n", last_ckpt, cs.step);
    else tw_log("# starting from the initialisation of run.seed=%" PRId64 "\n", cfg->run.seed);

    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    st = tw_report_open(&rep, rank == 0, path, cfg->run.log_every, cs.step, total, spe, &err);
    if ((st = agree(comm, st, &err)) != TW_OK) goto done;

    int64_t step = cs.step, saved_at = resumed ? cs.step : -1;
    double loss = cs.loss;
    while (step < total) {
        double t0 = tw_report_now();
        const tw_batch *b = NULL;
        st = agree(comm, tw_loader_next(ld, &b, &err), &err);
        if (st != TW_OK) goto done;
        size_t bytes = (size_t)b->n * o.c_in * o.h * o.w * sizeof(float);
        TW_ASSERT(b->n == o.n_local);
        for (int v = 0; v < 2; v++) tw_mem_from_host(be, m.x[v], lo.use_s1 ? b->s1[v] : b->s2[v], bytes);
        double lr = 0;
        double l = tw_bt_model_step(&m, &lr);
        if (!isfinite(l)) {
            tw_report_break(&rep);
            tw_log("# stopped at step %" PRId64 ": non-finite loss or gradients; the parameters stay those of "
                   "step %" PRId64 ", the last good checkpoint is %s\n", step + 1, step,
                   last_ckpt[0] ? last_ckpt : "(none)");
            code = 1;
            goto done;
        }
        loss = l;
        step++;
        tw_backend_sync(be);
        double dt = tw_report_now() - t0;
        tw_report_step(&rep, step, b->epoch, loss, lr, dt, cfg->data.batch / dt);
        int at_end = step == total;
        if ((cfg->run.ckpt_every_steps > 0 && step % cfg->run.ckpt_every_steps == 0) || at_end) {
            cs.step = step;
            tw_loader_state(ld, &cs.loader_epoch, &cs.loader_step);
            cs.loss = loss;
            tw_ckpt_path(path, sizeof path, run_dir, step);
            if (rank == 0) {
                st = tw_ckpt_save(path, &m, &cs, yaml, &err);
                if (st == TW_OK) prune(run_dir);
            }
            if ((st = agree(comm, st, &err)) != TW_OK) goto done;
            snprintf(last_ckpt, sizeof last_ckpt, "%s", path);
            saved_at = step;
        }
    }
    tw_report_break(&rep);
    tw_log("# done: %" PRId64 " steps, loss %.4e, 0 non-finite losses, checkpoint %s %s\n", step, loss,
           last_ckpt[0] ? last_ckpt : "(none)", saved_at == step ? "OK" : "(from before)");
    code = 0;
done:
    if (st != TW_OK && rank == 0) {
        tw_report_break(&rep);
        fprintf(stderr, "twinfuse pretrain: %s\n", err.msg);
    }
    tw_report_close(&rep);
    if (ld) tw_loader_free(ld);
    tw_bt_model_free(&m);
    if (be) tw_backend_free(be);
    return code;
}
