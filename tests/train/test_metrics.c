/* train.metrics: every number tw_metrics_compute gives (per-class AP and F1, mAP and F1 macro and
 * micro) against scikit-learn's on the cases ref_metrics.py writes (random, heavy ties, classes
 * with no or only positives, one sample, all-equal scores, k = 19 and 43), to 1e-9. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/metrics.h"

static int check(const char *cs, const char *what, int j, double got, double want, double *worst) {
    double e = fabs(got - want);
    if (e > *worst) *worst = e;
    if (e <= 1e-9) return 0;
    printf("  %s: %s[%d] = %.17g, scikit-learn %.17g\n", cs, what, j, got, want);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_metrics REF.txt\n");
        return 1;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", argv[1]);
        return 1;
    }
    char name[64];
    long long n;
    int k, fails = 0, n_cases = 0;
    double worst = 0;
    while (fscanf(f, " case %63s %lld %d", name, &n, &k) == 3) {
        float *s = malloc((size_t)(n * k) * sizeof *s), *y = malloc((size_t)(n * k) * sizeof *y);
        double *want = malloc((size_t)(2 * k + 4) * sizeof *want);
        if (!s || !y || !want) return 1;
        for (long long i = 0; i < n * k; i++)
            if (fscanf(f, "%f", &s[i]) != 1) return printf("%s: short scores\n", name), 1;
        for (long long i = 0; i < n * k; i++)
            if (fscanf(f, "%f", &y[i]) != 1) return printf("%s: short labels\n", name), 1;
        for (int i = 0; i < 2 * k + 4; i++)
            if (fscanf(f, "%lf", &want[i]) != 1) return printf("%s: short expectations\n", name), 1;
        tw_metrics m;
        tw_metrics_compute(&m, s, y, n, k);
        int bad = 0;
        for (int j = 0; j < k; j++) bad += check(name, "ap", j, m.ap[j], want[j], &worst);
        bad += check(name, "map_macro", 0, m.map_macro, want[k], &worst);
        bad += check(name, "map_micro", 0, m.map_micro, want[k + 1], &worst);
        for (int j = 0; j < k; j++) bad += check(name, "f1", j, m.f1[j], want[k + 2 + j], &worst);
        bad += check(name, "f1_macro", 0, m.f1_macro, want[2 * k + 2], &worst);
        bad += check(name, "f1_micro", 0, m.f1_micro, want[2 * k + 3], &worst);
        for (int j = 0; j < k; j++) bad += check(name, "ap (tw_metrics_ap)", j, tw_metrics_ap(s + j, y + j, n, k), want[j], &worst);
        printf("%s %-18s n=%-5lld k=%-2d mAP macro %.6f micro %.6f F1 macro %.6f micro %.6f\n", bad ? "FAIL" : "ok  ",
               name, n, k, m.map_macro, m.map_micro, m.f1_macro, m.f1_micro);
        fails += bad > 0;
        n_cases++;
        tw_metrics_free(&m);
        free(s);
        free(y);
        free(want);
    }
    fclose(f);
    if (n_cases < 10) {
        printf("FAIL: only %d cases read from %s\n", n_cases, argv[1]);
        return 1;
    }
    printf("# %d cases, %d failed, max |error| %.3g (tolerance 1e-9)\n", n_cases, fails, worst);
    return fails ? 1 : 0;
}
