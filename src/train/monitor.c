/* The embedding's health figures and the collapse alarm (monitor.h). Sums are in f64 and summed
 * over ranks with one all-reduce each; the eigenvalues are a textbook symmetric solver. */
#include "train/monitor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

void tw_monitor_std_compute(tw_monitor_std *out, const float *x, int64_t n_local, int d, tw_comm *comm) {
    /* sums: [d] of u, [d] of u^2, then the row count; u = x_i / ||x_i||. */
    double *s = calloc((size_t)2 * d + 1, sizeof *s);
    TW_ASSERT(s);
    for (int64_t i = 0; i < n_local; i++) {
        const float *r = x + (size_t)i * d;
        double nrm = 0;
        for (int j = 0; j < d; j++) nrm += (double)r[j] * r[j];
        double inv = nrm > 0 ? 1.0 / sqrt(nrm) : 0.0;
        for (int j = 0; j < d; j++) {
            double u = r[j] * inv;
            s[j] += u;
            s[d + j] += u * u;
        }
    }
    s[2 * d] = (double)n_local;
    if (comm && tw_comm_size(comm) > 1) tw_comm_allreduce(comm, s, (size_t)2 * d + 1, TW_F64, TW_REDUCE_SUM);
    double n = s[2 * d], sum = 0, mn = INFINITY;
    int low = 0;
    for (int j = 0; j < d; j++) {
        double mean = n > 0 ? s[j] / n : 0, var = n > 0 ? s[d + j] / n - mean * mean : 0;
        double sd = sqrt(var > 0 ? var : 0) * sqrt((double)d);
        sum += sd;
        if (sd < mn) mn = sd;
        low += sd < TW_MONITOR_STD_LOW;
    }
    out->mean = sum / d;
    out->min = mn;
    out->frac_low = (double)low / d;
    free(s);
}

void tw_monitor_xcorr_terms(double *mean_diag, double *mean_abs_off, const float *c, int d) {
    double diag = 0, off = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double v = c[(size_t)i * d + j];
            if (i == j) diag += v;
            else off += fabs(v);
        }
    *mean_diag = diag / d;
    *mean_abs_off = d > 1 ? off / ((double)d * (d - 1)) : 0.0;
}

/* Householder reduction of the symmetric a: [n, n] (lower triangle used, destroyed) to
 * tridiagonal form, eigenvalues only: diagonal in dg, sub-diagonal in e[1..n) (Numerical Recipes
 * tred2, without the transformation matrix). */
static void tridiagonalise(double *a, int n, double *dg, double *e) {
#define A(i, j) a[(size_t)(i) * n + (j)]
    for (int i = n - 1; i > 0; i--) {
        int l = i - 1;
        double h = 0, scale = 0;
        if (l > 0) {
            for (int k = 0; k <= l; k++) scale += fabs(A(i, k));
            if (scale == 0) {
                e[i] = A(i, l);
            } else {
                for (int k = 0; k <= l; k++) {
                    A(i, k) /= scale;
                    h += A(i, k) * A(i, k);
                }
                double f = A(i, l), g = f >= 0 ? -sqrt(h) : sqrt(h);
                e[i] = scale * g;
                h -= f * g;
                A(i, l) = f - g;
                f = 0;
                for (int j = 0; j <= l; j++) {
                    g = 0;
                    for (int k = 0; k <= j; k++) g += A(j, k) * A(i, k);
                    for (int k = j + 1; k <= l; k++) g += A(k, j) * A(i, k);
                    e[j] = g / h;
                    f += e[j] * A(i, j);
                }
                double hh = f / (h + h);
                for (int j = 0; j <= l; j++) {
                    f = A(i, j);
                    e[j] = g = e[j] - hh * f;
                    for (int k = 0; k <= j; k++) A(j, k) -= f * e[k] + g * A(i, k);
                }
            }
        } else {
            e[i] = A(i, l);
        }
    }
    e[0] = 0;
    for (int i = 0; i < n; i++) dg[i] = A(i, i);
#undef A
}

/* Eigenvalues of the symmetric tridiagonal matrix (dg, e from tridiagonalise) into dg, by the
 * QL algorithm with implicit shifts (Numerical Recipes tqli). */
static void tridiagonal_eigen(double *dg, double *e, int n) {
    for (int i = 1; i < n; i++) e[i - 1] = e[i];
    if (n > 0) e[n - 1] = 0;
    for (int l = 0; l < n; l++) {
        int iter = 0, m;
        do {
            for (m = l; m < n - 1; m++) {
                double dd = fabs(dg[m]) + fabs(dg[m + 1]);
                if (fabs(e[m]) <= 1e-15 * dd) break;
            }
            if (m == l) break;
            if (iter++ == 100) break;   /* does not happen on a symmetric matrix; keeps it bounded */
            double g = (dg[l + 1] - dg[l]) / (2.0 * e[l]), r = hypot(g, 1.0);
            g = dg[m] - dg[l] + e[l] / (g + (g >= 0 ? fabs(r) : -fabs(r)));
            double s = 1, c = 1, p = 0;
            int i;
            for (i = m - 1; i >= l; i--) {
                double f = s * e[i], b = c * e[i];
                e[i + 1] = r = hypot(f, g);
                if (r == 0) {
                    dg[i + 1] -= p;
                    e[m] = 0;
                    break;
                }
                s = f / r;
                c = g / r;
                g = dg[i + 1] - p;
                r = (dg[i] - g) * s + 2.0 * c * b;
                dg[i + 1] = g + (p = s * r);
                g = c * r - b;
            }
            if (r == 0 && i >= l) continue;
            dg[l] -= p;
            e[l] = g;
            e[m] = 0;
        } while (m != l);
    }
}

double tw_monitor_erank(const float *x, int n, int d) {
    /* The squared singular values are the eigenvalues of the smaller Gram matrix. */
    int by_rows = n <= d, m = by_rows ? n : d;
    if (m < 1) return 0;
    double *g = calloc((size_t)m * m + 2 * (size_t)m, sizeof *g);
    TW_ASSERT(g);
    double *dg = g + (size_t)m * m, *e = dg + m;
    for (int a = 0; a < m; a++)
        for (int b = 0; b <= a; b++) {
            double s = 0;
            if (by_rows)
                for (int j = 0; j < d; j++) s += (double)x[(size_t)a * d + j] * x[(size_t)b * d + j];
            else
                for (int i = 0; i < n; i++) s += (double)x[(size_t)i * d + a] * x[(size_t)i * d + b];
            g[(size_t)a * m + b] = s;
        }
    tridiagonalise(g, m, dg, e);
    tridiagonal_eigen(dg, e, m);
    double total = 0, h = 0;
    for (int k = 0; k < m; k++) total += dg[k] = sqrt(dg[k] > 0 ? dg[k] : 0);
    /* Singular values below the round-off of the largest are zeros: without the cut a rank-r
     * matrix would read slightly above r. */
    double top = 0;
    for (int k = 0; k < m; k++) top = dg[k] > top ? dg[k] : top;
    for (int k = 0; k < m && total > 0; k++) {
        if (dg[k] <= 1e-6 * top) continue;
        double p = dg[k] / total;
        h -= p * log(p);
    }
    free(g);
    return total > 0 ? exp(h) : 0.0;
}

double tw_monitor_erank_sample(const float *x, int64_t n_local, int d, int max_rows, tw_comm *comm, int *rows_out) {
    int world = comm ? tw_comm_size(comm) : 1, rank = comm ? tw_comm_rank(comm) : 0;
    int per = (max_rows + world - 1) / world;
    /* rows: [world * per, d], then world counts; each rank fills its own block, the sum gathers. */
    size_t n_rows = (size_t)world * per;
    float *buf = calloc(n_rows * d + world, sizeof *buf);
    TW_ASSERT(buf);
    int mine = n_local < per ? (int)n_local : per;
    memcpy(buf + (size_t)rank * per * d, x, (size_t)mine * d * sizeof(float));
    buf[n_rows * d + rank] = (float)mine;
    if (world > 1) tw_comm_allreduce(comm, buf, n_rows * d + world, TW_F32, TW_REDUCE_SUM);
    /* Compact the blocks' filled rows. */
    int n = 0;
    for (int r = 0; r < world; r++) {
        int cnt = (int)buf[n_rows * d + r];
        memmove(buf + (size_t)n * d, buf + (size_t)r * per * d, (size_t)cnt * d * sizeof(float));
        n += cnt;
    }
    double er = tw_monitor_erank(buf, n, d);
    if (rows_out) *rows_out = n;
    free(buf);
    return er;
}

int tw_collapse_alarm_update(tw_collapse_alarm *a, const tw_health *h, char *why, size_t n_why) {
    char w[256] = "";
    size_t o = 0;
#define WHY(...) o += (size_t)snprintf(w + o, o < sizeof w ? sizeof w - o : 0, __VA_ARGS__)
    if (!(h->z.mean >= TW_MONITOR_STD_COLLAPSE))
        WHY("%sprojector output std %.3g < %.3g", o ? "; " : "", h->z.mean, TW_MONITOR_STD_COLLAPSE);
    if (!(h->f.mean >= TW_MONITOR_STD_COLLAPSE))
        WHY("%sbackbone feature std %.3g < %.3g", o ? "; " : "", h->f.mean, TW_MONITOR_STD_COLLAPSE);
    int ranked = h->erank_rows >= TW_MONITOR_ERANK_MIN_ROWS;
    if (ranked && !(h->erank_z >= TW_MONITOR_ERANK_COLLAPSE))
        WHY("%sprojector output effective rank %.3g < %.3g", o ? "; " : "", h->erank_z, TW_MONITOR_ERANK_COLLAPSE);
    if (ranked && !(h->erank_f >= TW_MONITOR_ERANK_COLLAPSE))
        WHY("%sbackbone feature effective rank %.3g < %.3g", o ? "; " : "", h->erank_f, TW_MONITOR_ERANK_COLLAPSE);
#undef WHY
    if (!o) {
        a->n_bad = 0;
        return 0;
    }
    a->n_bad++;
    if (why && n_why) snprintf(why, n_why, "%s (%d consecutive checks)", w, a->n_bad);
    return a->n_bad >= a->patience;
}
