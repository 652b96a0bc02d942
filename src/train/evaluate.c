/* tw_evaluate_run (evaluate.h). */
#include "train/evaluate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "data/labels.h"
#include "data/split_names.h"
#include "train/checkpoint.h"
#include "train/classifier_run.h"
#include "train/runtime.h"

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
tw_status tw_evaluate_run(tw_comm *comm, const tw_finetune_cfg *cfg, const tw_evaluate_opts *a, tw_metrics *out,
                          tw_err *err) {
    tw_backend *be = NULL;
    tw_classifier_run c;
    memset(&c, 0, sizeof c);
    tw_metrics m[TW_EVAL_MAX_SPLITS];
    memset(m, 0, sizeof m);
    int rank = tw_comm_rank(comm), world = tw_comm_size(comm);
    int batch = cfg->eval.batch > 0 ? cfg->eval.batch : cfg->data.batch;
    tw_status st = TW_OK;
    if (batch % world) {
        st = tw_err_set(err, TW_E_RANGE, "eval.batch=%d is not a multiple of the %d ranks", batch, world);
        return st;
    }
    if ((st = tw_run_backend_create(&be, comm, &cfg->backend, err)) != TW_OK) return st;
    st = tw_comm_agree(comm, tw_classifier_run_init(&c, be, comm, cfg, batch / world, 1, 0, err), err);
    if (st == TW_OK && strcmp(c.sources, a->sources))
        st = tw_err_set(err, TW_E_FORMAT, "%s: a checkpoint of %s, the configuration reads %s", a->ckpt, a->sources,
                        c.sources);
    tw_ckpt_state cs;
    tw_ckpt_content content = {&c.P, NULL, "classification", c.sources};
    if (st == TW_OK) st = tw_comm_agree(comm, tw_ckpt_load(a->ckpt, &content, &cs, err), err);
    const char *const *class_names = cfg->data.classes == TW_N_CLASSES43 ? tw_labels_names43 : tw_labels_names19;
    for (int s = 0; s < a->n_splits && st == TW_OK; s++) {
        tw_classifier_scores sc;
        if ((st = tw_classifier_run_score_split(&c, comm, a->splits[s], batch, 0, &sc, err)) != TW_OK) break;
        tw_metrics_compute(&m[s], sc.scores, sc.labels, sc.n, sc.k);
        if (rank == 0) {
            tw_log("# %s: %lld patches | mAP macro %.4f micro %.4f | F1 macro %.4f micro %.4f\n", a->splits[s],
                   (long long)sc.n, m[s].map_macro, m[s].map_micro, m[s].f1_macro, m[s].f1_micro);
            for (int j = 0; a->per_class && j < sc.k; j++) tw_log("#   AP %-55s %.4f\n", class_names[j], m[s].ap[j]);
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
        tw_classifier_scores_free(&sc);
        st = tw_comm_agree(comm, st, err);
    }
    if (st == TW_OK && rank == 0 && a->json) {
        st = tw_metrics_write_json(a->json, a->splits, m, a->n_splits, class_names, err);
        if (st == TW_OK) tw_log("# metrics: %s\n", a->json);
    }
    st = tw_comm_agree(comm, st, err);
    for (int s = 0; s < TW_EVAL_MAX_SPLITS; s++) {
        if (out && s < a->n_splits && st == TW_OK) out[s] = m[s];
        else tw_metrics_free(&m[s]);
    }
    tw_classifier_run_free(&c);
    tw_backend_free(be);
    return st;
}

