/* `twinfuse pretrain` (pretrain.h): Barlow Twins as a task of the generic loop (loop.h) — the
 * model and step of bt_model.h, two augmented views per sample through the loader's hook (or,
 * with loss.pairing cross, bt_cross.h on the S1 and the S2 patch of each place), the sum of the
 * ranks' gradients (one global loss), checkpoints named "barlow-twins". */
#include "train/pretrain.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "data/augment.h"
#include "data/loader.h"
#include "train/bt_cross.h"
#include "train/bt_model.h"
#include "train/loop.h"
#include "train/monitor_run.h"

typedef struct aug_hook {
    tw_aug_params p;          /* the view's source (S2, or S1 when sar) */
    int sar;                  /* S1: the view comes from the s1 planes */
    int cross;                /* one loader view holds both sources, augmented independently */
    tw_aug_params p_s1;       /* cross: S1's (p with the dB scale) */
    float db_per_unit[TW_S1_BANDS];
} aug_hook;

/* The loader's hook (data/loader.h): one view of one sample, a pure function of its arguments.
 * Cross-modal pairs (loss.pairing cross) are the same place seen by two sensors; each source gets
 * its own, independent augmentation, as two views of one image do in Barlow Twins: S1 is
 * augmented as view 0 (augment.view1's probabilities) and S2 as view 1 (augment.view2's), on
 * their own Philox streams, so crops, flips and turns differ between the two. */
static tw_status augment_hook(void *user, tw_view *out, const tw_view *in, uint64_t seed, int64_t epoch,
                              int64_t sample, int view, tw_err *err) {
    const aug_hook *a = user;
    if (out->h != out->w || out->h > in->h || out->w > in->w)
        return tw_err_set(err, TW_E_SHAPE, "augment: view %dx%d from a %dx%d sample (data.size too large?)",
                          out->h, out->w, in->h, in->w);
    float *scratch = malloc(tw_augment_scratch_floats(out->h) * sizeof(float));
    if (!scratch) return tw_err_set(err, TW_E_NOMEM, "augment: scratch for %dx%d", out->h, out->w);
    if (a->cross) {
        tw_augment_view(out->s1, scratch, in->s1, in->c_s1, in->h, in->w, out->h, &a->p_s1, seed,
                        (uint32_t)epoch, (uint32_t)sample, 0);
        tw_augment_view(out->s2, scratch, in->s2, in->c_s2, in->h, in->w, out->h, &a->p, seed,
                        (uint32_t)epoch, (uint32_t)sample, 1);
    } else {
        float *dst = a->sar ? out->s1 : out->s2;
        const float *src = a->sar ? in->s1 : in->s2;
        int c = a->sar ? in->c_s1 : in->c_s2;
        tw_augment_view(dst, scratch, src, c, in->h, in->w, out->h, &a->p, seed, (uint32_t)epoch,
                        (uint32_t)sample, (uint32_t)view);
    }
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
    a->cross = cfg->loss.pairing == TW_PAIRING_CROSS;
    a->p.db_per_unit = a->sar ? a->db_per_unit : NULL;
    a->p_s1 = a->p;
    a->p_s1.db_per_unit = a->db_per_unit;
}

typedef struct bt_task {
    const tw_pretrain_cfg *cfg;
    tw_bt_model m;            /* loss.pairing views */
    tw_bt_cross mc;           /* loss.pairing cross */
    aug_hook hook;
    size_t view_bytes;        /* views: one view; cross: S1's */
    size_t s2_bytes;          /* cross: S2's */
    tw_monitor_run *mon;      /* NULL: monitor.every_steps -1 */
} bt_task;

static void bt_loader_opts(tw_task *t, tw_loader_opts *lo) {
    bt_task *T = t->self;
    lo->n_views = T->hook.cross ? 1 : 2;
    lo->augment = augment_hook;
    lo->augment_user = &T->hook;
    lo->out_h = lo->out_w = T->cfg->data.size;
}

static tw_status bt_reset(tw_task *t, uint64_t seed, tw_err *err) {
    (void)err;
    bt_task *T = t->self;
    if (T->hook.cross)
        tw_bt_cross_reset(&T->mc, seed);
    else
        tw_bt_model_reset(&T->m, seed);
    return TW_OK;
}

static double bt_step(tw_task *t, const tw_batch *b, const tw_grad_ready *ready) {
    bt_task *T = t->self;
    if (T->hook.cross) {
        tw_bt_cross *mc = &T->mc;
        TW_ASSERT(b->n == mc->o.bt.n_local);
        tw_mem_from_host(mc->be, mc->br[0].x, b->s1[0], T->view_bytes);
        tw_mem_from_host(mc->be, mc->br[1].x, b->s2[0], T->s2_bytes);
        return tw_bt_cross_forward_backward(mc, ready);
    }
    tw_bt_model *m = &T->m;
    TW_ASSERT(b->n == m->o.n_local);
    for (int v = 0; v < 2; v++)
        tw_mem_from_host(m->be, m->x[v], T->hook.sar ? b->s1[v] : b->s2[v], T->view_bytes);
    return tw_bt_model_forward_backward(m, ready);
}

static void bt_end_step(tw_task *t, int accepted) {
    bt_task *T = t->self;
    if (T->hook.cross) tw_bt_cross_end_step(&T->mc, accepted);
    else tw_bt_model_end_step(&T->m, accepted);
}

/* The monitors (monitor_run.h) on this step's embeddings: the first view's (cross: S1's) projector
 * output and pooled features, and the global cross-correlation, copied to the host. */
static tw_status bt_after_step(tw_task *t, int64_t step, char *json, size_t n_json, char *line, size_t n_line,
                               tw_err *err) {
    bt_task *T = t->self;
    if (!tw_monitor_run_due(T->mon, step)) return TW_OK;
    int cross = T->hook.cross, dz = T->cfg->model.projector_dim;
    tw_backend *be = cross ? T->mc.be : T->m.be;
    int64_t n = cross ? T->mc.o.bt.n_local : T->m.o.n_local;
    const float *z = cross ? T->mc.br[0].z : T->m.z[0], *f = cross ? T->mc.br[0].feats : T->m.feats[0];
    const float *c = cross ? T->mc.loss.c : T->m.loss.c;
    static const char *const single[2] = {"backbone.", NULL}, *const both[2] = {"s1.backbone.", "s2.backbone."};
    float *zh = malloc((size_t)n * dz * sizeof *zh), *fh = malloc((size_t)n * TW_RESNET18_FEATS * sizeof *fh);
    float *ch = malloc((size_t)dz * dz * sizeof *ch);
    if (!zh || !fh || !ch) {
        free(zh), free(fh), free(ch);
        return tw_err_set(err, TW_E_NOMEM, "monitor: host copies of the step's embeddings");
    }
    tw_mem_to_host(be, zh, z, (size_t)n * dz * sizeof *zh);
    tw_mem_to_host(be, fh, f, (size_t)n * TW_RESNET18_FEATS * sizeof *fh);
    tw_mem_to_host(be, ch, c, (size_t)dz * dz * sizeof *ch);
    tw_monitor_embeds e = {.n_local = n, .z = zh, .dz = dz, .f = fh, .df = TW_RESNET18_FEATS, .c = ch};
    tw_status st = tw_monitor_run_check(T->mon, step, &e, t->P, cross ? both : single, json, n_json, line, n_line, err);
    free(zh), free(fh), free(ch);
    return st;
}

static void bt_free(tw_task *t) {
    bt_task *T = t->self;
    if (!T) return;
    tw_monitor_run_free(T->mon);
    if (T->hook.cross)
        tw_bt_cross_free(&T->mc);
    else
        tw_bt_model_free(&T->m);
    free(T);
    t->self = NULL;
}

static tw_status bt_make(tw_task *t, tw_backend *be, tw_comm *comm, const tw_loader *probe, void *user,
                         tw_err *err) {
    const tw_pretrain_cfg *cfg = user;
    bt_task *T = calloc(1, sizeof *T);
    if (!T) return tw_err_set(err, TW_E_NOMEM, "pretrain: out of memory");
    T->cfg = cfg;
    aug_from_cfg(&T->hook, cfg);
    const tw_shard_norm *norm = tw_loader_norm(probe);
    for (int b = 0; b < TW_S1_BANDS; b++) T->hook.db_per_unit[b] = (float)norm->std[TW_S2_BANDS + b];
    int c_s2 = cfg->data.s2_bands == TW_BANDS_RGB ? 3 : TW_S2_BANDS;
    int c_in = T->hook.sar || T->hook.cross ? TW_S1_BANDS : c_s2;
    tw_bt_opts o = {.c_in = c_in, .h = cfg->data.size, .w = cfg->data.size,
                    .n_local = cfg->data.batch / tw_comm_size(comm), .bn_groups = 1,
                    .backbone_sync = cfg->model.backbone_bn == TW_BN_SYNC,
                    .c_gather = cfg->loss.c_exchange == TW_C_ALLGATHER,
                    .proj_dim = cfg->model.projector_dim, .lambda = (float)cfg->loss.lambda,
                    .external_optim = 1};
    T->view_bytes = (size_t)o.n_local * c_in * o.h * o.w * sizeof(float);
    T->s2_bytes = (size_t)o.n_local * c_s2 * o.h * o.w * sizeof(float);
    *t = (tw_task){.kind = "barlow-twins", .sources = tw_cfg_source_names[cfg->data.source], .unit = "pairs",
                   .reduce = TW_GRAD_SUM, .loader_opts = bt_loader_opts, .reset = bt_reset, .step = bt_step,
                   .end_step = bt_end_step, .after_step = bt_after_step, .free = bt_free, .self = T};
    tw_status st;
    if (T->hook.cross) {
        tw_bt_cross_opts oc = {.bt = o, .c_s2 = c_s2};
        st = tw_bt_cross_init(&T->mc, be, comm, &oc, err);
        t->P = &T->mc.P;
        t->bad = T->mc.bad;
    } else {
        st = tw_bt_model_init(&T->m, be, comm, &o, err);
        t->P = &T->m.P;
        t->bad = T->m.bad;
    }
    t->segs = t->P->segs;
    t->n_segs = t->P->n_segs;
    if (st == TW_OK) st = tw_monitor_run_create(&T->mon, cfg, be, comm, tw_loader_steps_per_epoch(probe), err);
    return st;
}

int tw_pretrain_run(tw_comm *comm, const tw_pretrain_cfg *cfg, const char *yaml, const char *config_path) {
    tw_loop_cfg lc = {.command = "pretrain", .run = &cfg->run, .data = &cfg->data, .optim = &cfg->optim,
                      .backend = &cfg->backend, .schema = tw_pretrain_schema(), .cfg = cfg, .yaml = yaml,
                      .config_path = config_path, .make_task = bt_make, .user = (void *)cfg};
    return tw_loop_run(comm, &lc);
}
