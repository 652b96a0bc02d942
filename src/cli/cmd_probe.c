/* `twinfuse probe CHECKPOINT [--knn] [--linear] [--fractions L] [--splits L] [--out FILE.json]
 * [key=value ...]`: the frozen-feature evaluation of a backbone (docs/monitor.md) — a Barlow Twins
 * checkpoint's, a fine-tuned checkpoint's, or imported weights (weights:FILE) — by weighted kNN
 * (train/knn.h) and a linear probe (train/probe.h) at label fractions of the training split, on
 * the evaluation splits. Every rank embeds a disjoint slice; rank 0 probes and writes the JSON. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_run.h"
#include "cli/commands.h"
#include "config/finetune.h"
#include "core/atomic_file.h"
#include "core/log.h"
#include "data/sampler.h"
#include "train/checkpoint.h"
#include "train/classifier_run.h"
#include "train/knn.h"
#include "train/probe.h"
#include "train/runtime.h"

static const char usage[] =
    "usage: twinfuse probe CHECKPOINT|weights:FILE [--knn] [--linear] [--fractions 0.01,0.1,1]\n"
    "                      [--splits val,test,clouds] [--out FILE.json] [key=value ...]\n"
    "  kNN (k=20, T=0.07) and linear-probe (logistic regression, L2 1e-3) mAP of the frozen backbone\n"
    "  (both when neither is named); model.init=scratch probes a random backbone of the same shape.\n"
    "  --out defaults to CHECKPOINT with .probe.json for .safetensors.\n";

enum { MAX_LIST = 16 };

typedef struct probe_args {
    const char *ckpt, *out;
    int knn, linear;
    double fractions[MAX_LIST];
    int n_fractions;
    char splits[MAX_LIST][16];
    int n_splits;
} probe_args;

/* Parses "a,b,c" into fractions in (0, 1]; 0 on a bad list. */
static int parse_fractions(probe_args *a, const char *s) {
    a->n_fractions = 0;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || !(v > 0 && v <= 1) || a->n_fractions == MAX_LIST || (*end && *end != ',')) return 0;
        a->fractions[a->n_fractions++] = v;
        s = *end ? end + 1 : end;
    }
    return a->n_fractions > 0;
}

static int parse_splits(probe_args *a, const char *s) {
    a->n_splits = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (!n || n >= sizeof a->splits[0] || a->n_splits == MAX_LIST) return 0;
        memcpy(a->splits[a->n_splits], s, n);
        a->splits[a->n_splits][n] = 0;
        int known = 0;
        for (int j = 0; tw_cfg_split_names[j]; j++) known |= !strcmp(a->splits[a->n_splits], tw_cfg_split_names[j]);
        if (!known) return 0;
        a->n_splits++;
        s += n + (s[n] == ',');
    }
    return a->n_splits > 0;
}

/* The JSON text grows in a malloc'd buffer. */
typedef struct text {
    char *s;
    size_t n, cap;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        TW_ASSERT(w >= 0);
        if (t->s && t->n + (size_t)w < t->cap) {
            t->n += (size_t)w;
            return;
        }
        t->cap = 2 * (t->cap + (size_t)w + 256);
        t->s = realloc(t->s, t->cap);
        TW_ASSERT(t->s);
    }
}

/* A JSON string (the paths we write hold no control characters; quotes and backslashes escaped). */
static void put_str(text *t, const char *s) {
    put(t, "\"");
    for (; *s; s++) put(t, *s == '"' || *s == '\\' ? "\\%c" : "%c", *s);
    put(t, "\"");
}

/* Rows idx[0..n) of a [*, w] array into a new one. */
static float *take_rows(const float *a, const int64_t *idx, int64_t n, int w) {
    float *o = malloc((size_t)n * w * sizeof *o + 1);
    TW_ASSERT(o);
    for (int64_t i = 0; i < n; i++) memcpy(o + (size_t)i * w, a + (size_t)idx[i] * w, (size_t)w * sizeof *o);
    return o;
}

/* One result line: the table on stdout and an object in the JSON. */
static void result(text *t, int *first, const char *method, double frac, int64_t n_train, const char *split,
                   const tw_metrics *m, const char *extra) {
    tw_log("%-7s %9.4g %8" PRId64 "  %-7s %9.4f %9.4f\n", method, frac, n_train, split, m->map_macro, m->map_micro);
    put(t, "%s\n  {\"method\": \"%s\", \"label_fraction\": %.17g, \"n_train\": %" PRId64
        ", \"split\": \"%s\", \"n\": %" PRId64 ", \"map_macro\": %.17g, \"map_micro\": %.17g%s}",
        *first ? "" : ",", method, frac, n_train, split, m->n, m->map_macro, m->map_micro, extra);
    *first = 0;
}

/* Rank 0's part: subsets, kNN and linear probes, the table and the JSON. */
static tw_status probe_all(const probe_args *a, const tw_finetune_cfg *cfg, const tw_classifier_scores *train,
                           const tw_classifier_scores *evals, tw_err *err) {
    int d = train->d_feats, k = train->k;
    text t = {0};
    put(&t, "{\"format\": \"twinfuse-probe/1\", \"checkpoint\": ");
    put_str(&t, a->ckpt);
    put(&t, ", \"init\": ");
    put_str(&t, cfg->model.init);
    put(&t, ", \"sources\": \"%s\", \"d_feats\": %d, \"n_train_split\": %" PRId64 ", \"subset_seed\": %" PRId64
        ",\n \"knn\": {\"k\": %d, \"t\": %.17g}, \"linear\": {\"l2\": %.17g, \"tol\": %.17g, \"max_iter\": %d},\n"
        " \"results\": [", tw_cfg_source_names[cfg->data.source], d, train->n, cfg->data.subset_seed, TW_KNN_K,
        TW_KNN_T, TW_PROBE_L2, TW_PROBE_TOL, TW_PROBE_MAX_ITER);
    tw_log("# method  fraction  n_train  split   mAP macro mAP micro\n");
    uint8_t *lab8 = malloc((size_t)train->n * k + 1);
    TW_ASSERT(lab8);
    for (int64_t i = 0; i < train->n * k; i++) lab8[i] = train->labels[i] > 0.5f;
    tw_status st = TW_OK;
    int first = 1;
    for (int f = 0; f < a->n_fractions && st == TW_OK; f++) {
        int64_t *idx = NULL, n_sub = 0;
        /* The subset the sweep's cells of this fraction train on (the same seed and rule). */
        st = tw_sampler_subset_labeled(&idx, &n_sub, train->n, lab8, k, a->fractions[f],
                                       (uint64_t)cfg->data.subset_seed, err);
        if (st != TW_OK) break;
        float *xs = take_rows(train->feats, idx, n_sub, d), *ys = take_rows(train->labels, idx, n_sub, k);
        for (int s = 0; a->knn && s < a->n_splits; s++) {
            tw_metrics m;
            tw_knn_evaluate(&m, xs, ys, n_sub, evals[s].feats, evals[s].labels, evals[s].n, d, k, TW_KNN_K, TW_KNN_T);
            result(&t, &first, "knn", a->fractions[f], n_sub, a->splits[s], &m, "");
            tw_metrics_free(&m);
        }
        if (a->linear) {
            tw_linprobe p;
            tw_linprobe_fit(&p, xs, ys, n_sub, d, k, TW_PROBE_L2, TW_PROBE_TOL, TW_PROBE_MAX_ITER);
            if (p.n_unconverged)
                tw_warn("twinfuse probe: warning: fraction %g: %d class(es) of the linear probe did not converge in %d "
                        "iterations\n", a->fractions[f], p.n_unconverged, TW_PROBE_MAX_ITER);
            char extra[128];
            snprintf(extra, sizeof extra, ", \"iterations\": %d, \"unconverged\": %d, \"constant_classes\": %d",
                     p.max_iter_used, p.n_unconverged, p.n_constant);
            for (int s = 0; s < a->n_splits; s++) {
                float *sc = malloc((size_t)evals[s].n * k * sizeof *sc + 1);
                TW_ASSERT(sc);
                tw_linprobe_scores(&p, sc, evals[s].feats, evals[s].n);
                tw_metrics m;
                tw_metrics_compute(&m, sc, evals[s].labels, evals[s].n, k);
                result(&t, &first, "linear", a->fractions[f], n_sub, a->splits[s], &m, extra);
                tw_metrics_free(&m);
                free(sc);
            }
            tw_linprobe_free(&p);
        }
        free(xs);
        free(ys);
        free(idx);
    }
    put(&t, "\n]}\n");
    if (st == TW_OK) st = tw_atomic_write_text(a->out, t.s, err);
    if (st == TW_OK) tw_log("# %s\n", a->out);
    free(lab8);
    free(t.s);
    return st;
}

static tw_status run_probe(tw_comm *comm, const probe_args *a, const tw_finetune_cfg *cfg, const char *task,
                           const char *sources, tw_err *err) {
    tw_backend *be = NULL;
    tw_classifier_run c;
    memset(&c, 0, sizeof c);
    int world = tw_comm_size(comm);
    int batch = cfg->eval.batch > 0 ? cfg->eval.batch : cfg->data.batch;
    if (batch % world)
        return tw_err_set(err, TW_E_RANGE, "eval.batch=%d is not a multiple of the %d ranks", batch, world);
    tw_status st = tw_run_backend_create(&be, comm, &cfg->backend, err);
    if (st != TW_OK) return st;
    st = tw_comm_agree(comm, tw_classifier_run_init(&c, be, comm, cfg, batch / world, 1, 0, err), err);
    if (st == TW_OK) st = tw_comm_agree(comm, tw_classifier_run_load_weights(&c, a->ckpt, task, sources, err), err);
    tw_classifier_scores train, evals[MAX_LIST];
    memset(&train, 0, sizeof train);
    memset(evals, 0, sizeof evals);
    if (st == TW_OK) st = tw_classifier_run_score_split(&c, comm, "train", batch, 1, &train, err);
    for (int s = 0; s < a->n_splits && st == TW_OK; s++)
        st = tw_classifier_run_score_split(&c, comm, a->splits[s], batch, 1, &evals[s], err);
    if (st == TW_OK && tw_comm_rank(comm) == 0) {
        tw_log("# twinfuse probe %s (%s, model.init=%s): %d features, %" PRId64 " training patches\n", a->ckpt,
               c.sources, cfg->model.init, train.d_feats, train.n);
        st = probe_all(a, cfg, &train, evals, err);
    }
    st = tw_comm_agree(comm, st, err);
    tw_classifier_scores_free(&train);
    for (int s = 0; s < a->n_splits; s++) tw_classifier_scores_free(&evals[s]);
    tw_classifier_run_free(&c);
    tw_backend_free(be);
    return st;
}

int tw_cmd_probe(int argc, char **argv) {
    probe_args a = {.knn = 0, .linear = 0};
    parse_fractions(&a, "0.01,0.1,1");
    parse_splits(&a, "val,test,clouds");
    char **ov = calloc((size_t)argc + 1, sizeof *ov);
    int n_ov = 0, bad = !ov || argc < 1 || argv[0][0] == '-';
    if (argc == 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))) {
        fputs(usage, stdout);
        free(ov);
        return 0;
    }
    for (int i = 1; !bad && i < argc; i++) {
        if (!strcmp(argv[i], "--knn")) a.knn = 1;
        else if (!strcmp(argv[i], "--linear")) a.linear = 1;
        else if (!strcmp(argv[i], "--fractions") && i + 1 < argc) bad = !parse_fractions(&a, argv[++i]);
        else if (!strcmp(argv[i], "--splits") && i + 1 < argc) bad = !parse_splits(&a, argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) a.out = argv[++i];
        else if (strchr(argv[i], '=') && argv[i][0] != '-') ov[n_ov++] = argv[i];
        else bad = 1;
    }
    if (bad) {
        fputs(usage, stderr);
        free(ov);
        return 2;
    }
    if (!a.knn && !a.linear) a.knn = a.linear = 1;
    a.ckpt = argv[0];
    int weights = !strncmp(a.ckpt, "weights:", 8);
    char out[4096];
    if (!a.out) {
        const char *file = weights ? a.ckpt + 8 : a.ckpt;
        size_t n = strlen(file), ext = strlen(".safetensors");
        if (n > ext && !strcmp(file + n - ext, ".safetensors")) n -= ext;
        snprintf(out, sizeof out, "%.*s.probe.json", (int)n, file);
        a.out = out;
    }
    tw_err err = {0};
    tw_ckpt_info info;
    memset(&info, 0, sizeof info);
    tw_finetune_cfg *cfg = calloc(1, sizeof *cfg);
    tw_comm *comm = NULL;
    int code = 1;
    if (!cfg) {
    } else if (weights) {
        /* Imported weights: the fine-tuning defaults (and the overrides: data.*) around them. */
        char init[4096 + 16], mode[] = "model.mode=frozen";
        snprintf(init, sizeof init, "model.init=%s", a.ckpt);
        char **all = calloc((size_t)n_ov + 2, sizeof *all);
        all[0] = init;
        all[1] = mode;
        for (int i = 0; i < n_ov; i++) all[2 + i] = ov[i];
        int bad_cfg = tw_cli_load_config("probe", tw_finetune_schema(), cfg, NULL, NULL, n_ov + 2, all);
        free(all);
        snprintf(info.task, sizeof info.task, "weights");
        if (!bad_cfg && (comm = tw_cli_comm("probe", &cfg->backend))) code = 0;
    } else if (tw_ckpt_info_read(&info, a.ckpt, &err) != TW_OK) {
        if (tw_cli_is_rank0()) fprintf(stderr, "twinfuse probe: %s\n", err.msg);
    } else if (tw_cli_config_of_checkpoint("probe", cfg, a.ckpt, info.task, info.config, n_ov, ov)) {
    } else if ((comm = tw_cli_comm("probe", &cfg->backend))) {
        code = 0;
    }
    if (comm) {
        tw_status st = run_probe(comm, &a, cfg, info.task, info.sources, &err);
        if (st != TW_OK && tw_comm_rank(comm) == 0) fprintf(stderr, "twinfuse probe: %s\n", err.msg);
        code = st != TW_OK;
        tw_comm_free(comm);
    }
    tw_ckpt_info_free(&info);
    free(cfg);
    free(ov);
    return code;
}
