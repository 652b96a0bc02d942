/* `twinfuse embed CHECKPOINT --split S --out FILE.h5 [key=value ...]`: the pooled 512-d features
 * of every patch of a split (1024 for feature fusion: S1's then S2's) with their names and labels,
 * from a fine-tuned checkpoint or from a Barlow Twins pre-training checkpoint's backbone. Every
 * rank scores a disjoint slice; rank 0 writes the file (data/features_h5.h). With --s2/--s1 the
 * same features of each window of a scene, as a georeferenced raster (predict/predict.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_run.h"
#include "cli/commands.h"
#include "config/finetune.h"
#include "core/log.h"
#include "data/features_h5.h"
#include "data/split_names.h"
#include "predict/predict.h"
#include "train/checkpoint.h"
#include "train/classifier_run.h"
#include "train/runtime.h"

static const char usage[] =
    "usage: twinfuse embed CHECKPOINT --split train|val|test|clouds --out FILE.h5 [key=value ...]\n"
    "       twinfuse embed CHECKPOINT --s2 SCENE [--s1 SCENE] [--grid RASTER] [--s1-linear] [--stride N]\n"
    "                      [--batch N] --out FEATURES.tif [key=value ...]\n"
    "  the scene form: one pixel per window (stride default: a window), one float band per feature, NaN\n"
    "  where a window holds nodata; scene options as in `twinfuse predict --help`\n";

static tw_status embed(tw_comm *comm, const tw_finetune_cfg *cfg, const char *ckpt, const tw_ckpt_info *info,
                       const char *split, const char *out, tw_err *err) {
    tw_backend *be = NULL;
    tw_classifier_run c;
    memset(&c, 0, sizeof c);
    int world = tw_comm_size(comm);
    int batch = cfg->eval.batch > 0 ? cfg->eval.batch : cfg->data.batch;
    if (batch % world) return tw_err_set(err, TW_E_RANGE, "eval.batch=%d is not a multiple of the %d ranks", batch, world);
    tw_status st = tw_run_backend_create(&be, comm, &cfg->backend, err);
    if (st != TW_OK) return st;
    st = tw_comm_agree(comm, tw_classifier_run_init(&c, be, comm, cfg, batch / world, 1, 0, err), err);
    if (st == TW_OK)
        st = tw_comm_agree(comm, tw_classifier_run_load_weights(&c, ckpt, info->task, info->sources, err), err);
    tw_classifier_scores sc;
    memset(&sc, 0, sizeof sc);
    if (st == TW_OK) st = tw_classifier_run_score_split(&c, comm, split, batch, 1, &sc, err);
    if (st == TW_OK && tw_comm_rank(comm) == 0) {
        char *names = NULL;
        int64_t n_names = 0;
        st = tw_split_names_read(&names, &n_names, cfg->data.shards, split, err);
        if (st == TW_OK && n_names != sc.n)
            st = tw_err_set(err, TW_E_RANGE, "%s: split %s has %lld names for %lld patches", cfg->data.shards, split,
                            (long long)n_names, (long long)sc.n);
        if (st == TW_OK)
            st = tw_features_h5_write(out, sc.feats, sc.labels, names, sc.n, sc.d_feats, sc.k, c.sources, ckpt, split,
                                      err);
        if (st == TW_OK)
            tw_log("# %s: %lld patches of %s, %d features each (%s backbone%s of %s)\n", out, (long long)sc.n, split,
                   sc.d_feats, c.sources, c.m.n_nets > 1 ? "s" : "", ckpt);
        free(names);
    }
    st = tw_comm_agree(comm, st, err);
    tw_classifier_scores_free(&sc);
    tw_classifier_run_free(&c);
    tw_backend_free(be);
    return st;
}

/* A positive integer option; 0 when bad. */
static int positive(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    return *end || end == s || v < 1 || v > 1 << 20 ? 0 : (int)v;
}

/* The scene form: the backbone's features of every window of a scene. */
static tw_status embed_scene(tw_comm *comm, const tw_finetune_cfg *cfg, const char *ckpt, const tw_ckpt_info *info,
                             const tw_predict_scene_opts *o, int batch, tw_err *err) {
    tw_predictor p;
    tw_status st = tw_predictor_init(&p, comm, cfg, ckpt, !strcmp(info->task, "classification"), batch, err);
    if (st == TW_OK) st = tw_predict_scene(&p, comm, o, err);
    tw_predictor_free(&p);
    return st;
}

int tw_cmd_embed(int argc, char **argv) {
    if (tw_cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    const char *split = NULL, *out = NULL;
    tw_predict_scene_opts so = {.features = 1, .ckpt = argc > 0 ? argv[0] : NULL};
    int batch = 0;
    char **ov = calloc((size_t)argc + 1, sizeof *ov);
    int n_ov = 0, bad = !ov || argc < 1 || argv[0][0] == '-';
    for (int i = 1; !bad && i < argc; i++) {
        int has = i + 1 < argc;
        if (!strcmp(argv[i], "--split") && has) split = argv[++i];
        else if (!strcmp(argv[i], "--out") && has) out = argv[++i];
        else if (!strcmp(argv[i], "--s2") && has) so.s2 = argv[++i];
        else if (!strcmp(argv[i], "--s1") && has) so.s1 = argv[++i];
        else if (!strcmp(argv[i], "--grid") && has) so.grid = argv[++i];
        else if (!strcmp(argv[i], "--stride") && has) bad = !(so.stride = positive(argv[++i]));
        else if (!strcmp(argv[i], "--batch") && has) bad = !(batch = positive(argv[++i]));
        else if (!strcmp(argv[i], "--s1-linear")) so.s1_linear = 1;
        else if (strchr(argv[i], '=') && argv[i][0] != '-') ov[n_ov++] = argv[i];
        else bad = 1;
    }
    int scene = so.s2 || so.s1, known = 0;
    for (int j = 0; split && tw_cfg_split_names[j]; j++) known |= !strcmp(split, tw_cfg_split_names[j]);
    so.out = out;
    if (bad || (scene ? split != NULL : !known) || !out) {
        fputs(usage, stderr);
        free(ov);
        return 2;
    }
    tw_err err = {0};
    tw_ckpt_info info;
    tw_finetune_cfg *cfg = calloc(1, sizeof *cfg);
    tw_comm *comm = NULL;
    int code = 1;
    if (tw_ckpt_info_read(&info, argv[0], &err) != TW_OK) {
        if (tw_cli_is_rank0()) fprintf(stderr, "twinfuse embed: %s\n", err.msg);
    } else if (!cfg) {
    } else if (tw_cli_config_of_checkpoint("embed", cfg, argv[0], info.task, info.config, n_ov, ov)) {
    } else if ((comm = tw_cli_comm("embed", &cfg->backend))) {
        tw_status st = scene ? embed_scene(comm, cfg, argv[0], &info, &so, batch, &err)
                             : embed(comm, cfg, argv[0], &info, split, out, &err);
        if (st != TW_OK && tw_comm_rank(comm) == 0) fprintf(stderr, "twinfuse embed: %s\n", err.msg);
        code = st != TW_OK;
        tw_comm_free(comm);
    }
    tw_ckpt_info_free(&info);
    free(cfg);
    free(ov);
    return code;
}
