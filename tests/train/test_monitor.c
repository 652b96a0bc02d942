/* train.monitor: the health figures (normalised std, the cross-correlation's terms, effective
 * rank: a rank-k matrix with equal singular values gives k), weighted-kNN scores and mAP against
 * scikit-learn's KNeighborsClassifier, and the linear probe's mAP within 0.005 of scikit-learn's
 * LogisticRegression, on the cases ref_monitor.py writes; then the collapse alarm on a collapsed
 * and a healthy embedding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/knn.h"
#include "train/monitor.h"
#include "train/probe.h"

static FILE *ref;

static float *readf(long long n) {
    float *a = malloc((size_t)n * sizeof *a + 1);
    for (long long i = 0; i < n; i++)
        if (fscanf(ref, "%f", &a[i]) != 1) {
            fprintf(stderr, "reference: short array\n");
            exit(1);
        }
    return a;
}

static double readd(void) {
    double v;
    if (fscanf(ref, "%lf", &v) != 1) {
        fprintf(stderr, "reference: missing value\n");
        exit(1);
    }
    return v;
}

static int near(const char *cs, const char *what, double got, double want, double tol) {
    int ok = fabs(got - want) <= tol;
    printf("%s %-12s %-18s %.9f  reference %.9f\n", ok ? "ok  " : "FAIL", cs, what, got, want);
    return !ok;
}

/* The alarm fires at exactly the patience-th consecutive check of a collapsed embedding (every
 * row the same) and never on isotropic rows. */
static int alarm_cases(void) {
    int n = 64, d = 32, fails = 0;
    float *same = malloc((size_t)n * d * sizeof *same), *iso = malloc((size_t)n * d * sizeof *iso);
    unsigned s = 1;
    for (int i = 0; i < n * d; i++) {
        s = s * 1103515245u + 12345u;
        iso[i] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
        same[i] = (float)(i % d) + 1.0f;
    }
    const float *which[2] = {same, iso};
    for (int c = 0; c < 2; c++) {
        tw_health h;
        tw_monitor_std_compute(&h.z, which[c], n, d, NULL);
        h.f = h.z;
        h.c_diag = 1;
        h.c_off = 0;
        h.erank_z = h.erank_f = tw_monitor_erank_sample(which[c], n, d, 48, NULL, &h.erank_rows);
        tw_collapse_alarm a = {.patience = 3};
        int fired_at = 0;
        char why[256] = "";
        for (int check = 1; check <= 5 && !fired_at; check++)
            if (tw_collapse_alarm_update(&a, &h, why, sizeof why)) fired_at = check;
        int ok = c == 0 ? fired_at == 3 : fired_at == 0;
        printf("%s alarm %-9s std %.4f erank %.3f: ", ok ? "ok  " : "FAIL", c ? "healthy" : "collapsed", h.z.mean,
               h.erank_z);
        if (fired_at) printf("fired at check %d\n", fired_at);
        else printf("never fired\n");
        if (fired_at) printf("       why: %s\n", why);
        fails += !ok;
    }
    /* A good check resets the count. */
    tw_collapse_alarm a = {.patience = 2};
    tw_health bad = {.z = {0, 0, 1}, .f = {1, 1, 0}, .erank_z = 10, .erank_f = 10, .erank_rows = 64}, good = bad;
    good.z = good.f;
    int r = tw_collapse_alarm_update(&a, &bad, NULL, 0) + tw_collapse_alarm_update(&a, &good, NULL, 0) +
            tw_collapse_alarm_update(&a, &bad, NULL, 0);
    int r2 = tw_collapse_alarm_update(&a, &bad, NULL, 0);
    printf("%s alarm reset by a good check (fires after 2 bad in a row only)\n", r == 0 && r2 == 1 ? "ok  " : "FAIL");
    fails += !(r == 0 && r2 == 1);
    /* A sample of 4 rows cannot show a rank of more than 4: its low rank alone is no collapse; with
     * 8 rows it is. */
    tw_collapse_alarm a1 = {.patience = 1};
    tw_health few = good;
    few.erank_z = few.erank_f = 1.5;
    few.erank_rows = 4;
    int r_few = tw_collapse_alarm_update(&a1, &few, NULL, 0);
    few.erank_rows = 8;
    int r_many = tw_collapse_alarm_update(&a1, &few, NULL, 0);
    printf("%s effective rank 1.5 of 4 rows: no alarm; of 8 rows: alarm\n", !r_few && r_many ? "ok  " : "FAIL");
    fails += !(!r_few && r_many);
    free(same);
    free(iso);
    return fails;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_monitor REF.txt\n");
        return 1;
    }
    ref = fopen(argv[1], "r");
    if (!ref) {
        fprintf(stderr, "%s: cannot open\n", argv[1]);
        return 1;
    }
    char kind[16], name[64];
    int fails = 0, n_cases = 0;
    while (fscanf(ref, " %15s %63s", kind, name) == 2) {
        n_cases++;
        if (!strcmp(kind, "std")) {
            int n, d;
            if (fscanf(ref, "%d %d", &n, &d) != 2) return 1;
            float *x = readf((long long)n * d);
            tw_monitor_std s;
            tw_monitor_std_compute(&s, x, n, d, NULL);
            fails += near(name, "std mean", s.mean, readd(), 1e-6);
            fails += near(name, "std min", s.min, readd(), 1e-6);
            fails += near(name, "std frac_low", s.frac_low, readd(), 1e-12);
            free(x);
        } else if (!strcmp(kind, "xcorr")) {
            int d;
            if (fscanf(ref, "%d", &d) != 1) return 1;
            float *c = readf((long long)d * d);
            double diag, off;
            tw_monitor_xcorr_terms(&diag, &off, c, d);
            fails += near(name, "C mean diag", diag, readd(), 1e-9);
            fails += near(name, "C mean |off|", off, readd(), 1e-9);
            free(c);
        } else if (!strcmp(kind, "erank")) {
            int n, d;
            if (fscanf(ref, "%d %d", &n, &d) != 2) return 1;
            float *x = readf((long long)n * d);
            double want = readd();
            fails += near(name, "effective rank", tw_monitor_erank(x, n, d), want, 1e-4 * want);
            free(x);
        } else if (!strcmp(kind, "knn")) {
            int n_mem, n_q, d, k, kk;
            double t;
            if (fscanf(ref, "%d %d %d %d %d %lf", &n_mem, &n_q, &d, &k, &kk, &t) != 6) return 1;
            float *mem = readf((long long)n_mem * d), *ym = readf((long long)n_mem * k);
            float *q = readf((long long)n_q * d), *yq = readf((long long)n_q * k);
            float *want = readf((long long)n_q * k), *got = malloc((size_t)n_q * k * sizeof *got);
            tw_knn_scores(got, mem, ym, n_mem, q, n_q, d, k, kk, t);
            double worst = 0;
            for (long long i = 0; i < (long long)n_q * k; i++)
                worst = fmax(worst, fabs((double)got[i] - want[i]));
            fails += near(name, "max |score|", worst, 0, 1e-5);
            tw_metrics m;
            tw_knn_evaluate(&m, mem, ym, n_mem, q, yq, n_q, d, k, kk, t);
            fails += near(name, "mAP macro", m.map_macro, readd(), 1e-5);
            fails += near(name, "mAP micro", m.map_micro, readd(), 1e-5);
            tw_metrics_free(&m);
            free(mem), free(ym), free(q), free(yq), free(want), free(got);
        } else if (!strcmp(kind, "linear")) {
            int n_tr, n_te, d, k;
            double l2;
            if (fscanf(ref, "%d %d %d %d %lf", &n_tr, &n_te, &d, &k, &l2) != 5) return 1;
            float *xtr = readf((long long)n_tr * d), *ytr = readf((long long)n_tr * k);
            float *xte = readf((long long)n_te * d), *yte = readf((long long)n_te * k);
            float *want = readf((long long)n_te * k), *got = malloc((size_t)n_te * k * sizeof *got);
            tw_linprobe p;
            tw_linprobe_fit(&p, xtr, ytr, n_tr, d, k, l2, TW_PROBE_TOL, TW_PROBE_MAX_ITER);
            tw_linprobe_scores(&p, got, xte, n_te);
            double worst = 0;
            for (long long i = 0; i < (long long)n_te * k; i++)
                worst = fmax(worst, fabs((double)got[i] - want[i]));
            printf("     %-12s logits max |diff| %.3g; %d iterations at most, %d unconverged\n", name, worst,
                   p.max_iter_used, p.n_unconverged);
            fails += p.n_unconverged != 0;
            tw_metrics m;
            tw_metrics_compute(&m, got, yte, n_te, k);
            fails += near(name, "mAP macro", m.map_macro, readd(), 0.005);
            fails += near(name, "mAP micro", m.map_micro, readd(), 0.005);
            tw_metrics_free(&m);
            tw_linprobe_free(&p);
            free(xtr), free(ytr), free(xte), free(yte), free(want), free(got);
        } else {
            fprintf(stderr, "reference: unknown case kind '%s'\n", kind);
            return 1;
        }
    }
    fclose(ref);
    if (n_cases < 15) {
        printf("FAIL: only %d cases read\n", n_cases);
        return 1;
    }
    fails += alarm_cases();
    printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
    return fails ? 1 : 0;
}
