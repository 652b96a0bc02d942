/* The embedding's health during pre-training (docs/monitor.md): the per-dimension spread of the
 * projector output and of the backbone's pooled features, the two terms of the Barlow Twins
 * cross-correlation, the effective rank on a bounded sample, and the collapse alarm on them.
 * Host arrays in, figures out, summed over ranks; where the arrays come from is the loop's. */
#ifndef TW_MONITOR_H
#define TW_MONITOR_H

#include <stddef.h>
#include <stdint.h>

#include "dist/comm.h"

/* A dimension whose normalised std is below this is "dead" (counted in frac_low). */
#define TW_MONITOR_STD_LOW 0.1
/* The alarm's thresholds (a check is bad when any holds): the mean normalised std of the projector
 * output or of the backbone features below TW_MONITOR_STD_COLLAPSE, or, on a sample of at least
 * TW_MONITOR_ERANK_MIN_ROWS rows, an effective rank below TW_MONITOR_ERANK_COLLAPSE (a sample of
 * r rows has rank r at most: 2 rows cannot tell). A collapsed embedding (every sample the same)
 * has std 0 and effective rank 1; a healthy one has std near 1 and a rank of tens or more. */
#define TW_MONITOR_STD_COLLAPSE 0.05
#define TW_MONITOR_ERANK_COLLAPSE 2.0
#define TW_MONITOR_ERANK_MIN_ROWS 8

/* Per-dimension spread of rows that are first scaled to unit L2 norm (scale-free, as lightly's
 * std_of_l2_normalized), times sqrt(d) so that isotropic rows give about 1 and identical rows 0:
 * std_j = sqrt(d) * population std over all ranks' rows of x_ij / ||x_i||. */
typedef struct tw_monitor_std {
    double mean, min;        /* over the d dimensions */
    double frac_low;         /* share of dimensions with std_j < TW_MONITOR_STD_LOW */
} tw_monitor_std;

/* out from x: [n_local, d] host f32, this rank's rows; sums all-reduced in f64 over comm (NULL:
 * this process alone). A row of zeros stays zeros. Every rank gets the same figures. */
void tw_monitor_std_compute(tw_monitor_std *out, const float *x, int64_t n_local, int d, tw_comm *comm);

/* The two terms of the Barlow Twins loss, separately, from the global cross-correlation
 * c: [d, d] host f32: *mean_diag = mean of C_ii (1 when the views agree), *mean_abs_off = mean of
 * |C_ij| over i != j (0 when the dimensions are decorrelated). */
void tw_monitor_xcorr_terms(double *mean_diag, double *mean_abs_off, const float *c, int d);

/* Effective rank (RankMe, Garrido et al. 2023; Roy & Vetterli 2007) of x: [n, d] host f32:
 * exp(-sum_k p_k log p_k), p_k = s_k / sum s, s the singular values (no centring). A rank-r
 * matrix with r equal singular values gives r; zero matrix gives 0. Eigenvalues of the smaller
 * Gram matrix in f64 (Householder + implicit QL): O(min(n,d)^2 max(n,d)). */
double tw_monitor_erank(const float *x, int n, int d);

/* The same on a bounded sample over ranks: rank r's first ceil(max_rows / world) rows (at most
 * n_local), all ranks' gathered, so every rank gets the same value; *rows_out (NULL: not wanted)
 * gets the sample's row count. */
double tw_monitor_erank_sample(const float *x, int64_t n_local, int d, int max_rows, tw_comm *comm, int *rows_out);

/* One check's figures (what metrics.jsonl gets under "health"). */
typedef struct tw_health {
    tw_monitor_std z, f;         /* projector output, backbone pooled features */
    double c_diag, c_off;        /* tw_monitor_xcorr_terms */
    double erank_z, erank_f;     /* tw_monitor_erank_sample */
    int erank_rows;              /* the rank's sample size */
} tw_health;

/* The collapse alarm: fires after `patience` consecutive bad checks (see the thresholds above). */
typedef struct tw_collapse_alarm {
    int patience;
    int n_bad;                   /* consecutive bad checks so far */
} tw_collapse_alarm;

/* Records a check. Returns 1 when this check makes n_bad reach patience (and every check after,
 * while it stays bad), with why naming what collapsed; 0 otherwise (a good check resets n_bad). */
int tw_collapse_alarm_update(tw_collapse_alarm *a, const tw_health *h, char *why, size_t n_why);

#endif
