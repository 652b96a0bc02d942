/* Weighted k-nearest-neighbour scores for multi-label classification on frozen features, the
 * online and offline kNN probe (docs/monitor.md). The neighbours and weights are those of DINO's
 * and solo-learn's kNN: cosine similarity on L2-normalised features, the k most similar memory
 * rows, each weighted by exp(similarity / T); a class's score is its weighted vote share. */
#ifndef TW_KNN_H
#define TW_KNN_H

#include <stdint.h>

#include "train/metrics.h"

/* DINO (eval_knn.py) and solo-learn (WeightedKNNClassifier) both use k = 20 and T = 0.07. */
#define TW_KNN_K 20
#define TW_KNN_T 0.07

/* scores: [n_q, n_cls] out: score_qj = sum_{i in N_k(q)} w_i y_ij / sum_{i in N_k(q)} w_i, in
 * [0, 1], with N_k(q) the k memory rows of highest cosine similarity s_i to query q (ties: the
 * lower memory index first; k is cut to n_mem) and w_i = exp((s_i - 1) / T) (exp(s_i / T) up to a
 * factor that cancels: scikit-learn's KNeighborsClassifier(metric="cosine",
 * weights=lambda dist: exp(-dist / T)).predict_proba gives the same). A row of zeros has
 * similarity 0 with everything. mem: [n_mem, d], mem_labels: [n_mem, n_cls] (> 0.5 positive),
 * queries: [n_q, d]; all f32 host. */
void tw_knn_scores(float *scores, const float *mem, const float *mem_labels, int64_t n_mem, const float *queries,
                   int64_t n_q, int d, int n_cls, int k, double t);

/* tw_knn_scores then tw_metrics_compute against the queries' labels [n_q, n_cls]: m holds mAP
 * macro and micro (free with tw_metrics_free). */
void tw_knn_evaluate(tw_metrics *m, const float *mem, const float *mem_labels, int64_t n_mem, const float *queries,
                     const float *q_labels, int64_t n_q, int d, int n_cls, int k, double t);

#endif
