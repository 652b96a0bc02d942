/* `twinfuse pretrain` (pretrain.h): Barlow Twins (train/bt_task.h) as a task of the loop
 * (loop.h), by one of two small constructors: two augmented views of one source per sample
 * through the loader's hook, or (loss.pairing cross) the S1 and the S2 patch of each place, each
 * augmented on its own; the sum of the ranks' gradients (one global loss), checkpoints named
 * "barlow-twins". */
#include "train/pretrain.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "data/augment.h"
#include "data/loader.h"
#include "train/bt_task.h"
#include "train/loop.h"
#include "train/monitor_run.h"

typedef struct aug_hook {
    const tw_loop_aug *aug;   /* the loop's parameters and scratch */
    int sar;                  /* one source, S1: the views come from the s1 planes */
    int cross;                /* one loader view holds both sources, augmented independently */
} aug_hook;

/* The loader's hook (data/loader.h): one view of one sample, a pure function of its arguments.
 * Cross-modal pairs (loss.pairing cross) are the same place seen by two sensors; each source gets
 * its own, independent augmentation, as two views of one image do in Barlow Twins: S1 is
 * augmented as view 0 (augment.view1's probabilities) and S2 as view 1 (augment.view2's), on
 * their own Philox streams, so crops, flips and turns differ between the two. A second loader
 * view (loss.intra) draws S1 and S2 again on two more streams. */
static tw_status augment_hook(void *user, tw_view *out, const tw_view *in, uint64_t seed, int64_t epoch,
                              int64_t sample, int view, tw_err *err) {
    const aug_hook *a = user;
    const tw_loop_aug *g = a->aug;
    if (out->h != out->w || out->h > in->h || out->w > in->w)
        return tw_err_set(err, TW_E_SHAPE, "augment: view %dx%d from a %dx%d sample", out->h, out->w, in->h, in->w);
    if (a->cross) {
        tw_augment_view(out->s1, g->scratch, in->s1, in->c_s1, in->h, in->w, out->h, &g->p_s1, seed,
                        (uint32_t)epoch, (uint32_t)sample, (uint32_t)(2 * view));
        tw_augment_view(out->s2, g->scratch, in->s2, in->c_s2, in->h, in->w, out->h, &g->p, seed,
                        (uint32_t)epoch, (uint32_t)sample, (uint32_t)(2 * view + 1));
    } else {
        float *dst = a->sar ? out->s1 : out->s2;
        const float *src = a->sar ? in->s1 : in->s2;
        int c = a->sar ? in->c_s1 : in->c_s2;
        tw_augment_view(dst, g->scratch, src, c, in->h, in->w, out->h, a->sar ? &g->p_s1 : &g->p, seed,
                        (uint32_t)epoch, (uint32_t)sample, (uint32_t)view);
    }
    return TW_OK;
}

typedef struct pretrain_task {
    tw_task bt;               /* the Barlow Twins task this one wraps */
    const tw_pretrain_cfg *cfg;
    aug_hook hook;
    tw_monitor_run *mon;      /* NULL: monitor.every_steps -1 */
} pretrain_task;

static void loader_opts(tw_task *t, tw_loader_opts *lo) {
    pretrain_task *T = t->self;
    lo->n_views = T->hook.cross && !(T->cfg->loss.intra > 0) ? 1 : 2;
    lo->views = T->cfg->data.views == TW_CFG_VIEWS_SEASONAL ? TW_VIEWS_SEASONAL : TW_VIEWS_AUGMENT;
    lo->augment = augment_hook;
    lo->augment_user = &T->hook;
    lo->out_h = lo->out_w = T->cfg->data.size;
}

/* The wrapped task's calls. */
static tw_status pt_reset(tw_task *t, uint64_t seed, tw_err *err) {
    pretrain_task *T = t->self;
    return T->bt.reset(&T->bt, seed, err);
}
static void pt_upload(tw_task *t, const tw_batch *b) {
    pretrain_task *T = t->self;
    T->bt.upload(&T->bt, b);
}
static double pt_step(tw_task *t, const tw_grad_ready *ready) {
    pretrain_task *T = t->self;
    return T->bt.step(&T->bt, ready);
}
/* The monitors (monitor_run.h) on this step's embeddings: view 0's (cross: the S1 branch's)
 * projector output and pooled features, and the global cross-correlation, copied to the host. */
static tw_status pt_after_step(tw_task *t, int64_t step, int64_t steps_per_epoch, tw_check_report *out,
                               tw_err *err) {
    pretrain_task *T = t->self;
    if (!tw_monitor_run_due(T->mon, step, steps_per_epoch)) return TW_OK;
    const tw_bt_task *bt = tw_bt_task_of(&T->bt);
    const tw_bt_model *m = &bt->m;
    int64_t n = m->o.n_local;
    int dz = m->o.proj_dim;
    static const char *const shared[2] = {"backbone.", NULL}, *const both[2] = {"s1.backbone.", "s2.backbone."};
    float *zh = malloc((size_t)n * dz * sizeof *zh), *fh = malloc((size_t)n * TW_RESNET18_FEATS * sizeof *fh);
    float *ch = malloc((size_t)dz * dz * sizeof *ch);
    if (!zh || !fh || !ch) {
        free(zh), free(fh), free(ch);
        return tw_err_set(err, TW_E_NOMEM, "monitor: host copies of the step's embeddings");
    }
    tw_mem_to_host(m->be, zh, m->z[0], (size_t)n * dz * sizeof *zh);
    tw_mem_to_host(m->be, fh, m->feats[0], (size_t)n * TW_RESNET18_FEATS * sizeof *fh);
    tw_mem_to_host(m->be, ch, bt->loss.c, (size_t)dz * dz * sizeof *ch);
    tw_monitor_embeds e = {.n_local = n, .z = zh, .dz = dz, .f = fh, .df = TW_RESNET18_FEATS, .c = ch};
    const char *const *prefix = m->o.cross ? both : shared;
    tw_status st = tw_monitor_run_check(T->mon, step, steps_per_epoch, &e, t->P, prefix, out, err);
    free(zh), free(fh), free(ch);
    return st;
}

static void pt_free(tw_task *t) {
    pretrain_task *T = t->self;
    if (!T) return;
    tw_monitor_run_free(T->mon);
    if (T->bt.free) T->bt.free(&T->bt);
    free(T);
    t->self = NULL;
}

/* What both constructors share: the configuration's model and loss options, the hook, the
 * Barlow Twins task, and this task around it. */
static tw_status make(tw_task *t, tw_backend *be, tw_comm *comm, int *bad, const tw_loop_aug *aug,
                      const tw_pretrain_cfg *cfg, const tw_bt_model_opts *mo, tw_err *err) {
    pretrain_task *T = calloc(1, sizeof *T);
    if (!T) return tw_err_set(err, TW_E_NOMEM, "pretrain: out of memory");
    *t = (tw_task){.kind = "barlow-twins", .sources = tw_cfg_source_names[cfg->data.source], .unit = "pairs",
                   .reduce = TW_GRAD_SUM, .loader_opts = loader_opts, .reset = pt_reset, .upload = pt_upload,
                   .step = pt_step, .after_step = pt_after_step, .free = pt_free, .self = T};
    T->cfg = cfg;
    T->hook = (aug_hook){.aug = aug, .sar = cfg->data.source == TW_SOURCE_S1, .cross = mo->cross};
    tw_bt_opts o = {.model = *mo, .sar = T->hook.sar, .lambda = (float)cfg->loss.lambda,
                    .intra = (float)cfg->loss.intra,
                    .common = cfg->loss.common_dims,
                    .c_gather = cfg->loss.c_exchange == TW_C_ALLGATHER};
    tw_status st = tw_bt_task_init(&T->bt, be, comm, &o, bad, err);
    t->P = T->bt.P;
    t->n_values = T->bt.n_values;
    t->segs = T->bt.segs;
    t->n_segs = T->bt.n_segs;
    if (st == TW_OK) st = tw_monitor_run_create(&T->mon, cfg, be, comm, err);
    return st;
}

static tw_bt_model_opts model_opts(const tw_pretrain_cfg *cfg, tw_comm *comm) {
    return (tw_bt_model_opts){.h = cfg->data.size, .w = cfg->data.size,
                              .n_local = cfg->data.batch / tw_comm_size(comm), .bn_groups = 1,
                              .backbone_sync = cfg->model.backbone_bn == TW_BN_SYNC,
                              .proj_dim = cfg->model.projector_dim};
}

static int s2_channels(const tw_pretrain_cfg *cfg) { return cfg->data.s2_bands == TW_BANDS_RGB ? 3 : TW_S2_BANDS; }

/* Two augmented views of one source through one backbone. */
static tw_status make_views(tw_task *t, tw_backend *be, tw_comm *comm, int *bad, const tw_loop_aug *aug,
                            void *user, tw_err *err) {
    const tw_pretrain_cfg *cfg = user;
    tw_bt_model_opts mo = model_opts(cfg, comm);
    mo.c_in[0] = mo.c_in[1] = cfg->data.source == TW_SOURCE_S1 ? TW_S1_BANDS : s2_channels(cfg);
    return make(t, be, comm, bad, aug, cfg, &mo, err);
}

/* The S1 and the S2 patch of one place, through an S1 and an S2 branch. */
static tw_status make_cross(tw_task *t, tw_backend *be, tw_comm *comm, int *bad, const tw_loop_aug *aug,
                            void *user, tw_err *err) {
    const tw_pretrain_cfg *cfg = user;
    tw_bt_model_opts mo = model_opts(cfg, comm);
    mo.cross = 1;
    mo.intra = cfg->loss.intra > 0;
    mo.c_in[0] = TW_S1_BANDS;
    mo.c_in[1] = s2_channels(cfg);
    return make(t, be, comm, bad, aug, cfg, &mo, err);
}

int tw_pretrain_run(tw_comm *comm, const tw_pretrain_cfg *cfg, const char *yaml, const char *config_path) {
    tw_loop_cfg lc = {.command = "pretrain", .run = &cfg->run, .data = &cfg->data, .optim = &cfg->optim,
                      .backend = &cfg->backend, .augment = &cfg->augment, .schema = tw_pretrain_schema(), .cfg = cfg, .yaml = yaml,
                      .config_path = config_path,
                      .make_task = cfg->loss.pairing == TW_PAIRING_CROSS ||
                                           cfg->data.views == TW_CFG_VIEWS_CROSS ? make_cross : make_views,
                      .user = (void *)cfg};
    return tw_loop_run(comm, &lc);
}
