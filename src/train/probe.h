/* The linear probe (docs/monitor.md): one-vs-rest L2-regularised logistic regression on frozen,
 * cached features, fitted to convergence by L-BFGS, the same recipe for every checkpoint so that
 * probes compare backbones and nothing else. */
#ifndef TW_PROBE_H
#define TW_PROBE_H

#include <stdint.h>

/* The fixed recipe: features standardised with the training rows' mean and std (a constant
 * feature is only centred); per class c the minimiser of
 *   (1/n) sum_i [log(1 + exp(z_i)) - y_ic z_i] + (l2 / 2) ||w_c||^2,  z_i = w_c . x_i + b_c
 * (the bias not penalised) = scikit-learn's LogisticRegression(C = 1 / (l2 n)) on the same
 * standardised features; L-BFGS (memory 10, backtracking Armijo line search) until the gradient's
 * largest component is below tol, or max_iter iterations. */
#define TW_PROBE_L2 1e-3
#define TW_PROBE_TOL 1e-6
#define TW_PROBE_MAX_ITER 2000

typedef struct tw_linprobe {
    int d, k;
    double *mean, *inv_std;     /* [d] the standardisation */
    double *w;                  /* [k, d] */
    double *b;                  /* [k] */
    int max_iter_used;          /* the most iterations a class took */
    int n_unconverged;          /* classes that stopped at max_iter or in a failed line search */
    int n_constant;             /* classes with only positives or only negatives in training: their
                                 * score is the constant logit +-30, no fit */
} tw_linprobe;

/* Fits k classes on x: [n, d] f32 and y: [n, k] f32 (> 0.5 positive), n >= 1. l2 > 0. */
void tw_linprobe_fit(tw_linprobe *p, const float *x, const float *y, int64_t n, int d, int k, double l2, double tol,
                     int max_iter);
/* scores: [n, k] logits of x: [n, d]. */
void tw_linprobe_scores(const tw_linprobe *p, float *scores, const float *x, int64_t n);
void tw_linprobe_free(tw_linprobe *p);

#endif
