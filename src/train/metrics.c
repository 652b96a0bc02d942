/* Classification metrics (metrics.h): average precision by sorting per class and pooled, F1 at
 * 0.5. The JSON report and the predictions CSV live in metrics_io.c. */
#include "train/metrics.h"

#include <math.h>
#include <stdlib.h>

#include "core/log.h"

typedef struct { float s; float y; } pair;

/* Descending score; NaN after every number. */
static int cmp_desc(const void *a, const void *b) {
    float x = ((const pair *)a)->s, y = ((const pair *)b)->s;
    if (x > y) return -1;
    if (x < y) return 1;
    return isnan(x) - isnan(y);
}

static int same_score(float a, float b) { return a == b || (isnan(a) && isnan(b)); }

/* p sorted by cmp_desc: sklearn's _binary_uninterpolated_average_precision, one term per
 * distinct threshold. No positives: recall is 1 everywhere, every step is 0, AP = 0. */
static double ap_sorted(const pair *p, int64_t n) {
    int64_t n_pos = 0;
    for (int64_t i = 0; i < n; i++) n_pos += p[i].y > 0.5f;
    if (!n_pos) return 0;
    double ap = 0;
    int64_t tp = 0, fp = 0, tp_prev = 0;
    for (int64_t i = 0; i < n; i++) {
        if (p[i].y > 0.5f) tp++;
        else fp++;
        if (i + 1 == n || !same_score(p[i].s, p[i + 1].s)) {
            ap += ((double)tp / (double)n_pos - (double)tp_prev / (double)n_pos) * ((double)tp / (double)(tp + fp));
            tp_prev = tp;
        }
    }
    return ap;
}

static double ap_strided(pair *buf, const float *scores, const float *labels, int64_t n, int64_t stride) {
    for (int64_t i = 0; i < n; i++) buf[i] = (pair){scores[i * stride], labels[i * stride]};
    qsort(buf, (size_t)n, sizeof *buf, cmp_desc);
    return ap_sorted(buf, n);
}

double tw_metrics_ap(const float *scores, const float *labels, int64_t n, int64_t stride) {
    pair *buf = malloc((size_t)n * sizeof *buf);
    TW_ASSERT(buf);
    double ap = ap_strided(buf, scores, labels, n, stride);
    free(buf);
    return ap;
}

static double f1_of(int64_t tp, int64_t fp, int64_t fn) {
    int64_t d = 2 * tp + fp + fn;
    return d ? 2.0 * (double)tp / (double)d : 0.0;
}

void tw_metrics_compute(tw_metrics *m, const float *scores, const float *labels, int64_t n, int k) {
    TW_ASSERT(n >= 1 && k >= 1);
    *m = (tw_metrics){.n = n, .k = k};
    m->ap = calloc((size_t)k, sizeof *m->ap);
    m->f1 = calloc((size_t)k, sizeof *m->f1);
    m->n_pos = calloc((size_t)k, sizeof *m->n_pos);
    pair *buf = malloc((size_t)n * (size_t)k * sizeof *buf);
    TW_ASSERT(m->ap && m->f1 && m->n_pos && buf);
    int64_t tp_all = 0, fp_all = 0, fn_all = 0;
    for (int j = 0; j < k; j++) {
        m->ap[j] = ap_strided(buf, scores + j, labels + j, n, k);
        int64_t tp = 0, fp = 0, fn = 0;
        for (int64_t i = 0; i < n; i++) {
            int y = labels[i * k + j] > 0.5f, yhat = scores[i * k + j] >= 0.0f;
            tp += y && yhat;
            fp += !y && yhat;
            fn += y && !yhat;
        }
        m->n_pos[j] = tp + fn;
        m->f1[j] = f1_of(tp, fp, fn);
        m->map_macro += m->ap[j];
        m->f1_macro += m->f1[j];
        tp_all += tp;
        fp_all += fp;
        fn_all += fn;
    }
    m->map_macro /= k;
    m->f1_macro /= k;
    m->f1_micro = f1_of(tp_all, fp_all, fn_all);
    m->map_micro = ap_strided(buf, scores, labels, n * k, 1);
    free(buf);
}

void tw_metrics_free(tw_metrics *m) {
    free(m->ap);
    free(m->f1);
    free(m->n_pos);
    *m = (tw_metrics){0};
}
