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
#include "train/checkpoint.h"
#include "train/evaluate.h"

typedef struct eval_args {
    tw_evaluate_opts o;
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
    a->o.ckpt = argv[0];
    a->o.per_class = 1;
    for (int i = 1; i < argc; i++) {
        int has_value = i + 1 < argc;
        if (!strcmp(argv[i], "--split") && has_value) {
            const char *s = argv[++i];
            int known = 0;
            for (int j = 0; tw_cfg_split_names[j]; j++) known |= !strcmp(s, tw_cfg_split_names[j]);
            if (!known || a->o.n_splits == TW_EVAL_MAX_SPLITS) {
                fprintf(stderr, "twinfuse evaluate: --split %s: want train, val, test or clouds (at most %d)\n", s,
                        TW_EVAL_MAX_SPLITS);
                return 1;
            }
            a->o.splits[a->o.n_splits++] = s;
        } else if (!strcmp(argv[i], "--json") && has_value) {
            a->o.json = argv[++i];
        } else if (!strcmp(argv[i], "--predictions") && has_value) {
            a->o.predictions = argv[++i];
        } else if (strchr(argv[i], '=') && argv[i][0] != '-') {
            a->overrides[a->n_overrides++] = argv[i];
        } else {
            fprintf(stderr, "twinfuse evaluate: unknown or incomplete argument '%s'\n", argv[i]);
            return 1;
        }
    }
    if (!a->o.n_splits) a->o.splits[a->o.n_splits++] = "val";
    return 0;
}

int tw_cmd_evaluate(int argc, char **argv) {
    if (tw_cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
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
    if (tw_ckpt_info_read(&info, a.o.ckpt, &err) != TW_OK) {
        if (tw_cli_is_rank0()) fprintf(stderr, "twinfuse evaluate: %s\n", err.msg);
    } else if (strcmp(info.task, "classification")) {
        if (tw_cli_is_rank0())
            fprintf(stderr, "twinfuse evaluate: %s is a %s checkpoint; evaluate scores classification checkpoints "
                            "(twinfuse finetune); `twinfuse embed` takes pre-training ones\n", a.o.ckpt, info.task);
    } else if (cfg && !tw_cli_load_config("evaluate", tw_finetune_schema(), cfg, a.o.ckpt, info.config, a.n_overrides,
                                          a.overrides) &&
               (comm = tw_cli_comm("evaluate", &cfg->backend))) {
        a.o.sources = info.sources;
        tw_status st = tw_evaluate_run(comm, cfg, &a.o, NULL, &err);
        if (st != TW_OK && tw_comm_rank(comm) == 0) fprintf(stderr, "twinfuse evaluate: %s\n", err.msg);
        code = st != TW_OK;
        tw_comm_free(comm);
    }
    tw_ckpt_info_free(&info);
    free(cfg);
    free(a.overrides);
    return code;
}
