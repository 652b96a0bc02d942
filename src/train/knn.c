/* Weighted kNN scores (knn.h): normalise, one similarity row per query, a partial selection of
 * the k best, the weighted vote. Queries are independent; OpenMP spreads them over the threads. */
#include "train/knn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* Rows of x [n, d] scaled to unit L2 norm into out (zeros stay zeros). */
static void normalise_rows(float *out, const float *x, int64_t n, int d) {
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + (size_t)i * d;
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)r[j] * r[j];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int j = 0; j < d; j++) out[(size_t)i * d + j] = r[j] * inv;
    }
}

typedef struct nb {
    float sim;
    int64_t idx;
} nb;

/* a ranks before b: higher similarity, then lower index. */
static int nb_before(nb a, nb b) { return a.sim > b.sim || (a.sim == b.sim && a.idx < b.idx); }

void tw_knn_scores(float *scores, const float *mem, const float *mem_labels, int64_t n_mem, const float *queries,
                   int64_t n_q, int d, int n_cls, int k, double t) {
    TW_ASSERT(k >= 1 && t > 0 && n_mem >= 1);
    if (k > n_mem) k = (int)n_mem;
    float *m = malloc((size_t)n_mem * d * sizeof *m), *q = malloc((size_t)n_q * d * sizeof *q + 1);
    TW_ASSERT(m && q);
    normalise_rows(m, mem, n_mem, d);
    normalise_rows(q, queries, n_q, d);
#pragma omp parallel
    {
        nb *best = malloc((size_t)k * sizeof *best);   /* sorted, best first */
        TW_ASSERT(best);
#pragma omp for schedule(static)
        for (int64_t a = 0; a < n_q; a++) {
            const float *qa = q + (size_t)a * d;
            int n_best = 0;
            for (int64_t i = 0; i < n_mem; i++) {
                const float *mi = m + (size_t)i * d;
                float s = 0;
                for (int j = 0; j < d; j++) s += qa[j] * mi[j];
                nb c = {s, i};
                if (n_best == k && !nb_before(c, best[k - 1])) continue;
                int p = n_best < k ? n_best++ : k - 1;   /* insertion into the sorted list */
                while (p > 0 && nb_before(c, best[p - 1])) {
                    best[p] = best[p - 1];
                    p--;
                }
                best[p] = c;
            }
            float *out = scores + (size_t)a * n_cls;
            double wsum = 0, *acc = calloc((size_t)n_cls, sizeof *acc);
            TW_ASSERT(acc);
            for (int b = 0; b < n_best; b++) {
                double w = exp(((double)best[b].sim - 1.0) / t);
                wsum += w;
                const float *y = mem_labels + (size_t)best[b].idx * n_cls;
                for (int j = 0; j < n_cls; j++)
                    if (y[j] > 0.5f) acc[j] += w;
            }
            for (int j = 0; j < n_cls; j++) out[j] = (float)(wsum > 0 ? acc[j] / wsum : 0.0);
            free(acc);
        }
        free(best);
    }
    free(m);
    free(q);
}

void tw_knn_evaluate(tw_metrics *m, const float *mem, const float *mem_labels, int64_t n_mem, const float *queries,
                     const float *q_labels, int64_t n_q, int d, int n_cls, int k, double t) {
    float *s = malloc((size_t)n_q * n_cls * sizeof *s + 1);
    TW_ASSERT(s);
    tw_knn_scores(s, mem, mem_labels, n_mem, queries, n_q, d, n_cls, k, t);
    tw_metrics_compute(m, s, q_labels, n_q, n_cls);
    free(s);
}
