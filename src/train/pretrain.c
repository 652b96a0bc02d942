/* `twinfuse pretrain` (pretrain.h): Barlow Twins as a task of the generic loop (loop.h) — the
 * model and step of bt_model.h, two augmented views per sample through the loader's hook, the
 * sum of the ranks' gradients (one global loss), checkpoints named "barlow-twins". */
#include "train/pretrain.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "data/augment.h"
#include "data/loader.h"
#include "train/bt_model.h"
#include "train/loop.h"

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

typedef struct bt_task {
    const tw_pretrain_cfg *cfg;
    tw_bt_model m;
    aug_hook hook;
    size_t view_bytes;
} bt_task;

static void bt_loader_opts(tw_task *t, tw_loader_opts *lo) {
    bt_task *T = t->self;
    lo->n_views = 2;
    lo->augment = augment_hook;
    lo->augment_user = &T->hook;
    lo->out_h = lo->out_w = T->cfg->data.size;
}

static tw_status bt_reset(tw_task *t, uint64_t seed, tw_err *err) {
    (void)err;
    tw_bt_model_reset(&((bt_task *)t->self)->m, seed);
    return TW_OK;
}

static double bt_step(tw_task *t, const tw_batch *b) {
    bt_task *T = t->self;
    tw_bt_model *m = &T->m;
    TW_ASSERT(b->n == m->o.n_local);
    for (int v = 0; v < 2; v++)
        tw_mem_from_host(m->be, m->x[v], T->hook.sar ? b->s1[v] : b->s2[v], T->view_bytes);
    return tw_bt_model_forward_backward(m);
}

static void bt_free(tw_task *t) {
    bt_task *T = t->self;
    if (!T) return;
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
    int c_in = T->hook.sar ? TW_S1_BANDS : (cfg->data.s2_bands == TW_BANDS_RGB ? 3 : TW_S2_BANDS);
    tw_bt_opts o = {.c_in = c_in, .h = cfg->data.size, .w = cfg->data.size,
                    .n_local = cfg->data.batch / tw_comm_size(comm), .bn_groups = 1,
                    .proj_dim = cfg->model.projector_dim, .lambda = (float)cfg->loss.lambda,
                    .external_optim = 1};
    T->view_bytes = (size_t)o.n_local * c_in * o.h * o.w * sizeof(float);
    *t = (tw_task){.kind = "barlow-twins", .sources = T->hook.sar ? "s1" : "s2", .unit = "pairs",
                   .reduce = TW_GRAD_SUM, .loader_opts = bt_loader_opts, .reset = bt_reset, .step = bt_step,
                   .free = bt_free, .self = T};
    tw_status st = tw_bt_model_init(&T->m, be, comm, &o, err);
    t->P = &T->m.P;
    t->segs = T->m.P.segs;
    t->n_segs = T->m.P.n_segs;
    return st;
}

int tw_pretrain_run(tw_comm *comm, const tw_pretrain_cfg *cfg, const char *yaml, const char *config_path) {
    if (cfg->model.backbone_bn == TW_BN_SYNC) {
        if (tw_comm_rank(comm) == 0)
            fprintf(stderr, "twinfuse pretrain: model.backbone_bn=sync: the op interface has no 2-D batch norm "
                            "with external statistics yet; use local (per-rank statistics, the default)\n");
        return 1;
    }
    tw_loop_cfg lc = {.command = "pretrain", .run = &cfg->run, .data = &cfg->data, .optim = &cfg->optim,
                      .backend = &cfg->backend, .schema = tw_pretrain_schema(), .cfg = cfg, .yaml = yaml,
                      .config_path = config_path, .make_task = bt_make, .user = (void *)cfg};
    return tw_loop_run(comm, &lc);
}
