/* Multi-label classification metrics exactly as scikit-learn 1.9 computes them (average precision
 * per class, mAP macro and micro, F1 macro and micro at 0.5), and the files `twinfuse evaluate`
 * writes: the JSON report and the per-patch predictions CSV. Scoring the split is classifier_run.c's.
 *
 * Rules (tests/train/test_metrics.c checks each against scikit-learn on random and adversarial
 * cases; docs/finetune.md "## Metrics" says the same):
 * - AP of class j = sklearn.metrics.average_precision_score(y[:, j], s[:, j]): the step-wise sum
 *   over the distinct score thresholds t (descending) of (R(t) - R(t_prev)) * P(t), where equal
 *   scores form one threshold (sklearn's precision_recall_curve). AP is rank-based: logits and
 *   probabilities give the same value. Sums are in double.
 * - A class without positives: sklearn warns and sets its recall to 1 at every threshold, so its
 *   AP is 0; mAP macro (average='macro') is the plain mean over all k classes, that 0 included.
 * - mAP micro = average='micro': one AP over all n*k (score, label) pairs pooled; 0 with no
 *   positive at all.
 * - F1 at 0.5: a pair is predicted positive iff its logit >= 0 (sigmoid(logit) >= 0.5, sklearn's
 *   `y_pred = prob >= 0.5`); per class F1 = 2TP / (2TP + FP + FN), 0 when TP + FP + FN = 0
 *   (zero_division's default); macro = mean over the k classes, micro = F1 of the pooled counts.
 * - Scores are expected finite; a NaN ranks below every number (one tied group of its own). */
#ifndef TW_METRICS_H
#define TW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct tw_metrics {
    int64_t n;                /* samples */
    int k;                    /* classes */
    double map_macro, map_micro, f1_macro, f1_micro;
    double *ap;               /* [k] per-class average precision */
    double *f1;               /* [k] per-class F1 at 0.5 */
    int64_t *n_pos;           /* [k] positives per class */
} tw_metrics;

/* m = the metrics of scores (logits) [n, k] f32 against labels [n, k] f32 (0 or 1; > 0.5 counts
 * as positive), n >= 1, k >= 1. O(n log n) per class and O(nk log nk) for micro AP. Free with
 * tw_metrics_free (also safe on a zeroed struct). */
void tw_metrics_compute(tw_metrics *m, const float *scores, const float *labels, int64_t n, int k);
void tw_metrics_free(tw_metrics *m);

/* Average precision of one binary problem: scores[i * stride], labels[i * stride], i < n. */
double tw_metrics_ap(const float *scores, const float *labels, int64_t n, int64_t stride);

/* Writes path atomically (core/atomic_file.h) as
 *   {"format": "twinfuse-metrics/1", "splits": [{"split", "n_samples", "map_macro", "map_micro",
 *    "f1_macro", "f1_micro", "per_class_ap": {class name: ap, ...}}, ...]}
 * one object per split, in order; class_names: [m[i].k] (data/labels.h). Reals round-trip
 * (17 significant digits). */
tw_status tw_metrics_write_json(const char *path, const char *const *splits, const tw_metrics *m, int n_splits,
                                const char *const *class_names, tw_err *err);

/* Writes path atomically as CSV (RFC 4180 quoting where a field holds a comma or a quote):
 *   header  patch,score:<class 0>,...,score:<class k-1>,label:<class 0>,...,label:<class k-1>
 *   rows    name, k scores (logits, %.9g: the f32 exactly), k labels (0 or 1)
 * names: n rows of name_bytes (NUL-padded, e.g. TW_SHARD_NAME_BYTES); scores, labels [n, k].
 * tests/train/check_predictions.py recomputes the report's metrics from it with scikit-learn. */
tw_status tw_predictions_write(const char *path, const char *names, size_t name_bytes, const float *scores,
                               const float *labels, int64_t n, int k, const char *const *class_names,
                               tw_err *err);

#endif
