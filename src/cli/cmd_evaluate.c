/* `twinfuse evaluate CHECKPOINT [--split S ...] [--json FILE] [--predictions FILE] [key=value ...]`:
 * scores the splits with a fine-tuned checkpoint (its configuration rebuilds the model; overrides
 * such as data.shards=DIR apply on top), every rank a disjoint slice, and prints mAP macro and
 * micro, F1 macro and micro at 0.5 and the per-class AP; --json writes them, --predictions the
 * per-patch scores and labels (one file per split: FILE, or FILE with -<split> before its
 * extension when several splits are asked). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_run.h"
#include "cli/commands.h"
#include "config/finetune.h"
#include "core/log.h"
#include "data/labels.h"
#include "data/split_names.h"
#include "train/checkpoint.h"
#include "train/classify.h"
#include "train/metrics.h"
#include "train/runtime.h"

#define MAX_SPLITS 4

typedef struct eval_args {
    const char *ckpt, *json, *predictions;
    const char *splits[MAX_SPLITS];
    int n_splits;
    char **overrides;
    int n_overrides;
} eval_args;

static const char usage[] =
    "usage: twinfuse evaluate CHECKPOINT [--split val|test|clouds ...] [--json FILE] [--predictions FILE]\n"
    "                         [key=value ...]   (overrides of the checkpoint's configuration)\n";

/* 0 when the command line is well formed. */
static int parse(eval_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->overrides = calloc((size_t)argc + 1, sizeof *a->overrides);
    if (!a->overrides || argc < 1 || argv[0][0] == '-') return 1;
    a->ckpt = argv[0];
    for (int i = 1; i < argc; i++) {
        int has_value = i + 1 < argc;
        if (!strcmp(argv[i], "--split") && has_value) {
            const char *s = argv[++i];
            int known = 0;
            for (int j = 0; tw_cfg_split_names[j]; j++) known |= !strcmp(s, tw_cfg_split_names[j]);
            if (!known || a->n_splits == MAX_SPLITS) {
                fprintf(stderr, "twinfuse evaluate: --split %s: want train, val, test or clouds (at most %d)\n", s,
                        MAX_SPLITS);
                return 1;
            }
            a->splits[a->n_splits++] = s;
        } else if (!strcmp(argv[i], "--json") && has_value) {
            a->json = argv[++i];
        } else if (!strcmp(argv[i], "--predictions") && has_value) {
            a->predictions = argv[++i];
        } else if (strchr(argv[i], '=') && argv[i][0] != '-') {
            a->overrides[a->n_overrides++] = argv[i];
        } else {
            fprintf(stderr, "twinfuse evaluate: unknown or incomplete argument '%s'\n", argv[i]);
            return 1;
        }
    }
    if (!a->n_splits) a->splits[a->n_splits++] = "val";
    return 0;
}

/* FILE for one split, FILE-<split>.<ext> for several. */
static void split_path(char *buf, size_t n, const char *path, const char *split, int several) {
    if (!several) {
        snprintf(buf, n, "%s", path);
        return;
    }
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) dot = path + strlen(path);
    snprintf(buf, n, "%.*s-%s%s", (int)(dot - path), path, split, dot);
}

/* Scores every split on every rank; rank 0 reports and writes. */
static tw_status evaluate(tw_comm *comm, const tw_finetune_cfg *cfg, const eval_args *a, const char *sources,
                          tw_err *err) {
    tw_backend *be = NULL;
    tw_cls c;
    memset(&c, 0, sizeof c);
    tw_metrics m[MAX_SPLITS];
    memset(m, 0, sizeof m);
    int rank = tw_comm_rank(comm), world = tw_comm_size(comm);
    int batch = cfg->eval.batch > 0 ? cfg->eval.batch : cfg->data.batch;
    tw_status st = TW_OK;
    if (batch % world) {
        st = tw_err_set(err, TW_E_RANGE, "eval.batch=%d is not a multiple of the %d ranks", batch, world);
        return st;
    }
    if ((st = tw_run_backend_create(&be, comm, &cfg->backend, err)) != TW_OK) return st;
    st = tw_run_agree(comm, tw_cls_init(&c, be, comm, cfg, batch / world, 1, 0, err), err);
    if (st == TW_OK && strcmp(c.sources, sources))
        st = tw_err_set(err, TW_E_FORMAT, "%s: a checkpoint of %s, the configuration reads %s", a->ckpt, sources,
                        c.sources);
    tw_ckpt_state cs;
    tw_ckpt_content content = {&c.P, NULL, "classification", c.sources};
    if (st == TW_OK) st = tw_run_agree(comm, tw_ckpt_load(a->ckpt, &content, &cs, err), err);
    const char *const *class_names = cfg->data.classes == TW_N_CLASSES43 ? tw_labels_names43 : tw_labels_names19;
    for (int s = 0; s < a->n_splits && st == TW_OK; s++) {
        tw_cls_scores sc;
        if ((st = tw_cls_score_split(&c, comm, a->splits[s], batch, 0, &sc, err)) != TW_OK) break;
        tw_metrics_compute(&m[s], sc.scores, sc.labels, sc.n, sc.k);
        if (rank == 0) {
            tw_log("# %s: %lld patches | mAP macro %.4f micro %.4f | F1 macro %.4f micro %.4f\n", a->splits[s],
                   (long long)sc.n, m[s].map_macro, m[s].map_micro, m[s].f1_macro, m[s].f1_micro);
            for (int j = 0; j < sc.k; j++) tw_log("#   AP %-55s %.4f\n", class_names[j], m[s].ap[j]);
        }
        if (rank == 0 && a->predictions) {
            char path[1024], *names = NULL;
            int64_t n_names = 0;
            split_path(path, sizeof path, a->predictions, a->splits[s], a->n_splits > 1);
            st = tw_split_names_read(&names, &n_names, cfg->data.shards, a->splits[s], err);
            if (st == TW_OK && n_names != sc.n)
                st = tw_err_set(err, TW_E_RANGE, "%s: split %s has %lld names for %lld patches", cfg->data.shards,
                                a->splits[s], (long long)n_names, (long long)sc.n);
            if (st == TW_OK)
                st = tw_predictions_write(path, names, TW_SHARD_NAME_BYTES, sc.scores, sc.labels, sc.n, sc.k,
                                          class_names, err);
            if (st == TW_OK) tw_log("# predictions of %s: %s\n", a->splits[s], path);
            free(names);
        }
        tw_cls_scores_free(&sc);
        st = tw_run_agree(comm, st, err);
    }
    if (st == TW_OK && rank == 0 && a->json) {
        st = tw_metrics_write_json(a->json, a->splits, m, a->n_splits, class_names, err);
        if (st == TW_OK) tw_log("# metrics: %s\n", a->json);
    }
    st = tw_run_agree(comm, st, err);
    for (int s = 0; s < MAX_SPLITS; s++) tw_metrics_free(&m[s]);
    tw_cls_free(&c);
    tw_backend_free(be);
    return st;
}

int tw_cmd_evaluate(int argc, char **argv) {
    eval_args a;
    if (parse(&a, argc, argv)) {
        fputs(usage, stderr);
        free(a.overrides);
        return 2;
    }
    tw_err err = {0};
    tw_ckpt_info info;
    tw_finetune_cfg *cfg = calloc(1, sizeof *cfg);
    int code = 1;
    tw_comm *comm = NULL;
    if (tw_ckpt_info_read(&info, a.ckpt, &err) != TW_OK) {
        if (tw_cli_is_rank0()) fprintf(stderr, "twinfuse evaluate: %s\n", err.msg);
    } else if (strcmp(info.task, "classification")) {
        if (tw_cli_is_rank0())
            fprintf(stderr, "twinfuse evaluate: %s is a %s checkpoint; evaluate scores classification checkpoints "
                            "(twinfuse finetune); `twinfuse embed` takes pre-training ones\n", a.ckpt, info.task);
    } else if (cfg && !tw_cli_load_config("evaluate", tw_finetune_schema(), cfg, a.ckpt, info.config, a.n_overrides,
                                          a.overrides) &&
               (comm = tw_cli_comm("evaluate", &cfg->backend))) {
        tw_status st = evaluate(comm, cfg, &a, info.sources, &err);
        if (st != TW_OK && tw_comm_rank(comm) == 0) fprintf(stderr, "twinfuse evaluate: %s\n", err.msg);
        code = st != TW_OK;
        tw_comm_free(comm);
    }
    tw_ckpt_info_free(&info);
    free(cfg);
    free(a.overrides);
    return code;
}
