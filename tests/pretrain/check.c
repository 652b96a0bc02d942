/* The pretrain tests' helpers (check.h). */
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

float *check_read(tw_st_file *f, const char *name, size_t *n_elems) {
    const tw_st_tensor *t = tw_st_find(f, name);
    tw_err err = {0};
    if (!t || t->dtype != TW_F32) {
        fprintf(stderr, "FAIL: %s: no F32 tensor '%s'\n", f->path, name);
        exit(1);
    }
    float *x = malloc(t->n_elems * sizeof(float) + 1);
    if (!x || tw_st_read(f, x, t, &err) != TW_OK) {
        fprintf(stderr, "FAIL: %s: %s\n", f->path, err.msg);
        exit(1);
    }
    if (n_elems) *n_elems = t->n_elems;
    return x;
}

int check_close(const char *what, const float *got, const float *want, size_t n, double tol) {
    double max_err = 0, max_ref = 0;
    size_t worst = 0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) finite = 0;
        double e = fabs((double)got[i] - want[i]);
        if (e > max_err) { max_err = e; worst = i; }
        if (fabs(want[i]) > max_ref) max_ref = fabs(want[i]);
    }
    double rel = max_ref > 0 ? max_err / max_ref : max_err;
    int ok = finite && rel <= tol;
    printf("%s %-28s n=%zu max_abs_err=%.3e max_ref=%.3e rel=%.3e (tol %.0e)\n", ok ? "ok  " : "FAIL",
           what, n, max_err, max_ref, rel, tol);
    if (!ok) {
        int shown = 0;
        for (size_t i = 0; i < n && shown < 5; i++) {
            double e = fabs((double)got[i] - want[i]);
            if (!isfinite(got[i]) || (max_ref > 0 ? e / max_ref : e) > tol) {
                printf("      [%zu] got %.8g want %.8g\n", i, got[i], want[i]);
                shown++;
            }
        }
        printf("      worst [%zu] got %.8g want %.8g\n", worst, got[worst], want[worst]);
    }
    return ok;
}

int check_close_l2(const char *what, const float *got, const float *want, size_t n, double tol) {
    double num = 0, den = 0, max_err = 0;
    size_t worst = 0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) finite = 0;
        double e = (double)got[i] - want[i];
        num += e * e;
        den += (double)want[i] * want[i];
        if (fabs(e) > max_err) { max_err = fabs(e); worst = i; }
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    int ok = finite && rel <= tol;
    printf("%s %-40s n=%zu l2_rel=%.3e max_abs_err=%.3e at [%zu] (tol %.0e)\n", ok ? "ok  " : "FAIL",
           what, n, rel, max_err, worst, tol);
    return ok;
}

tw_comm *check_comm(const char *kind, int *argc, char ***argv) {
    tw_comm_kind k = TW_COMM_SINGLE;
    if (!strcmp(kind, "mpi")) {
#ifdef TW_HAVE_MPI
        k = TW_COMM_MPI;
#else
        printf("SKIP: this build has no MPI\n");
        exit(77);
#endif
    } else if (strcmp(kind, "single")) {
        fprintf(stderr, "FAIL: communicator must be single or mpi, not '%s'\n", kind);
        exit(1);
    }
    tw_comm *c = NULL;
    tw_err err = {0};
    if (tw_comm_create(&c, k, argc, argv, &err) != TW_OK) {
        fprintf(stderr, "FAIL: communicator: %s\n", err.msg);
        exit(1);
    }
    return c;
}
