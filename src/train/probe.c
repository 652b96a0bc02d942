/* The linear probe (probe.h): standardise, then per class an L-BFGS fit of the L2-regularised
 * logistic loss (Nocedal & Wright, Numerical Optimization, algorithm 7.4 and 3.1). Classes are
 * independent; OpenMP spreads them over the threads. */
#include "train/probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

enum { MEM = 10 };

typedef struct problem {
    const float *x;      /* [n, d] standardised */
    const float *y;      /* [n, k] */
    int64_t n;
    int d, k, c;         /* c: the class */
    double l2;
} problem;

static double softplus(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }

/* f(v) and g = grad f(v); v = (w [d], b). */
static double objective(const problem *P, const double *v, double *g) {
    int d = P->d;
    double f = 0, inv_n = 1.0 / (double)P->n;
    memset(g, 0, (size_t)(d + 1) * sizeof *g);
    for (int64_t i = 0; i < P->n; i++) {
        const float *xi = P->x + (size_t)i * d;
        double z = v[d], y = P->y[(size_t)i * P->k + P->c] > 0.5f ? 1.0 : 0.0;
        for (int j = 0; j < d; j++) z += v[j] * xi[j];
        f += softplus(z) - y * z;
        double r = (1.0 / (1.0 + exp(-z)) - y) * inv_n;
        for (int j = 0; j < d; j++) g[j] += r * xi[j];
        g[d] += r;
    }
    f *= inv_n;
    for (int j = 0; j < d; j++) {
        f += 0.5 * P->l2 * v[j] * v[j];
        g[j] += P->l2 * v[j];
    }
    return f;
}

static double dot(const double *a, const double *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double max_abs(const double *a, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* Minimises from v = 0; returns the iterations, negative when it did not converge. */
static int lbfgs(const problem *P, double *v, double tol, int max_iter) {
    int n = P->d + 1;
    double *buf = calloc((size_t)n * (4 + 2 * MEM) + 2 * MEM, sizeof *buf);
    TW_ASSERT(buf);
    double *g = buf, *dir = g + n, *v_new = dir + n, *g_new = v_new + n;
    double *S = g_new + n, *Y = S + (size_t)MEM * n, *rho = Y + (size_t)MEM * n, *alpha = rho + MEM;
    memset(v, 0, (size_t)n * sizeof *v);
    double f = objective(P, v, g);
    int it = 0, n_mem = 0, head = 0, ok = 1;
    while (max_abs(g, n) > tol) {
        if (it == max_iter) {
            ok = 0;
            break;
        }
        /* The two-loop recursion: dir = -H g. */
        for (int i = 0; i < n; i++) dir[i] = -g[i];
        for (int m = 0; m < n_mem; m++) {
            int s = (head - 1 - m + MEM) % MEM;
            alpha[s] = rho[s] * dot(S + (size_t)s * n, dir, n);
            for (int i = 0; i < n; i++) dir[i] -= alpha[s] * Y[(size_t)s * n + i];
        }
        double gamma = 1.0;
        if (n_mem) {
            int s = (head - 1 + MEM) % MEM;
            gamma = dot(S + (size_t)s * n, Y + (size_t)s * n, n) / dot(Y + (size_t)s * n, Y + (size_t)s * n, n);
        } else {
            gamma = 1.0 / fmax(1.0, sqrt(dot(g, g, n)));
        }
        for (int i = 0; i < n; i++) dir[i] *= gamma;
        for (int m = n_mem - 1; m >= 0; m--) {
            int s = (head - 1 - m + MEM) % MEM;
            double beta = rho[s] * dot(Y + (size_t)s * n, dir, n);
            for (int i = 0; i < n; i++) dir[i] += (alpha[s] - beta) * S[(size_t)s * n + i];
        }
        double slope = dot(g, dir, n);
        if (slope >= 0) {   /* not a descent direction (round-off): restart from the gradient */
            for (int i = 0; i < n; i++) dir[i] = -g[i] / fmax(1.0, sqrt(dot(g, g, n)));
            slope = dot(g, dir, n);
            n_mem = 0;
        }
        /* Backtracking until the Armijo condition holds. */
        double step = 1.0, f_new = f;
        int found = 0;
        for (int ls = 0; ls < 60; ls++, step *= 0.5) {
            for (int i = 0; i < n; i++) v_new[i] = v[i] + step * dir[i];
            f_new = objective(P, v_new, g_new);
            if (f_new <= f + 1e-4 * step * slope) {
                found = 1;
                break;
            }
        }
        if (!found) {   /* no decrease left at double precision */
            ok = max_abs(g, n) <= 1e3 * tol;
            break;
        }
        double *s = S + (size_t)head * n, *y = Y + (size_t)head * n;
        for (int i = 0; i < n; i++) {
            s[i] = v_new[i] - v[i];
            y[i] = g_new[i] - g[i];
        }
        double sy = dot(s, y, n);
        if (sy > 1e-20) {   /* the curvature condition; else the pair is dropped */
            rho[head] = 1.0 / sy;
            head = (head + 1) % MEM;
            if (n_mem < MEM) n_mem++;
        }
        memcpy(v, v_new, (size_t)n * sizeof *v);
        memcpy(g, g_new, (size_t)n * sizeof *g);
        f = f_new;
        it++;
    }
    free(buf);
    return ok ? it : -it - 1;
}

void tw_linprobe_fit(tw_linprobe *p, const float *x, const float *y, int64_t n, int d, int k, double l2, double tol,
                     int max_iter) {
    TW_ASSERT(n >= 1 && d >= 1 && k >= 1 && l2 > 0);
    memset(p, 0, sizeof *p);
    p->d = d;
    p->k = k;
    p->mean = calloc((size_t)d, sizeof *p->mean);
    p->inv_std = calloc((size_t)d, sizeof *p->inv_std);
    p->w = calloc((size_t)k * d, sizeof *p->w);
    p->b = calloc((size_t)k, sizeof *p->b);
    float *xs = malloc((size_t)n * d * sizeof *xs);
    TW_ASSERT(p->mean && p->inv_std && p->w && p->b && xs);
    for (int j = 0; j < d; j++) {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++) s += x[(size_t)i * d + j];
        double mu = s / n;
        for (int64_t i = 0; i < n; i++) {
            double c = x[(size_t)i * d + j] - mu;
            s2 += c * c;
        }
        double sd = sqrt(s2 / n);   /* population std, as sklearn's StandardScaler */
        p->mean[j] = mu;
        p->inv_std[j] = sd > 0 ? 1.0 / sd : 1.0;
    }
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            xs[(size_t)i * d + j] = (float)((x[(size_t)i * d + j] - p->mean[j]) * p->inv_std[j]);
    int max_used = 0, n_bad = 0, n_const = 0;
#pragma omp parallel for schedule(dynamic) reduction(max : max_used) reduction(+ : n_bad, n_const)
    for (int c = 0; c < k; c++) {
        int64_t pos = 0;
        for (int64_t i = 0; i < n; i++) pos += y[(size_t)i * k + c] > 0.5f;
        if (pos == 0 || pos == n) {
            p->b[c] = pos ? 30.0 : -30.0;
            n_const++;
            continue;
        }
        problem P = {xs, y, n, d, k, c, l2};
        double *v = malloc((size_t)(d + 1) * sizeof *v);
        TW_ASSERT(v);
        int it = lbfgs(&P, v, tol, max_iter);
        if (it < 0) {
            n_bad++;
            it = -it - 1;
        }
        if (it > max_used) max_used = it;
        memcpy(p->w + (size_t)c * d, v, (size_t)d * sizeof *v);
        p->b[c] = v[d];
        free(v);
    }
    p->max_iter_used = max_used;
    p->n_unconverged = n_bad;
    p->n_constant = n_const;
    free(xs);
}

void tw_linprobe_scores(const tw_linprobe *p, float *scores, const float *x, int64_t n) {
    int d = p->d, k = p->k;
    double *row = malloc((size_t)d * sizeof *row);
    TW_ASSERT(row);
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) row[j] = (x[(size_t)i * d + j] - p->mean[j]) * p->inv_std[j];
        for (int c = 0; c < k; c++) {
            double z = p->b[c];
            const double *w = p->w + (size_t)c * d;
            for (int j = 0; j < d; j++) z += w[j] * row[j];
            scores[(size_t)i * k + c] = (float)z;
        }
    }
    free(row);
}

void tw_linprobe_free(tw_linprobe *p) {
    free(p->mean);
    free(p->inv_std);
    free(p->w);
    free(p->b);
    memset(p, 0, sizeof *p);
}
