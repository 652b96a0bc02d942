/* The C tests' checks (check.h): the failure count, the comparisons, reference tensors from
 * safetensors files, and the communicator a test asks for. */
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int check_n_fail = 0;

int check_exit_code(void) { return check_n_fail ? TW_TEST_FAIL : TW_TEST_PASS; }

int check_close_tol_d(const char *what, const double *got, const double *want, size_t n,
                      double atol, double rtol) {
    double max_abs = 0, max_want = 0;
    size_t worst = 0, n_bad = 0, n_nan = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(want[i]) > max_want) max_want = fabs(want[i]);
        if (isnan(got[i]) != isnan(want[i])) n_nan++;
    }
    double tol = atol + rtol * max_want;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]);
        if (!(e <= tol) && !(isnan(got[i]) && isnan(want[i]))) n_bad++;
        if (e > max_abs || (isnan(e) && !isnan(max_abs))) {
            max_abs = e;
            worst = i;
        }
    }
    int ok = n_bad == 0 && n_nan == 0;
    printf("%s %-44s n=%zu max_abs=%.3e max|want|=%.3e tol=%.3e", ok ? "PASS" : "FAIL", what, n,
           max_abs, max_want, tol);
    if (!ok) {
        printf(" bad=%zu worst[%zu]: got %.8g want %.8g; first:", n_bad, worst, got[worst],
               want[worst]);
        int shown = 0;
        for (size_t i = 0; i < n && shown < 4; i++)
            if (!(fabs(got[i] - want[i]) <= tol) && !(isnan(got[i]) && isnan(want[i]))) {
                printf(" [%zu] %.8g vs %.8g", i, got[i], want[i]);
                shown++;
            }
    }
    printf("\n");
    return ok;
}

int check_close_tol(const char *what, const float *got, const float *want, size_t n, double atol,
                    double rtol) {
    double *g = malloc((n ? n : 1) * sizeof *g), *w = malloc((n ? n : 1) * sizeof *w);
    if (!g || !w) {
        fprintf(stderr, "FAIL: %s: out of memory\n", what);
        exit(TW_TEST_FAIL);
    }
    for (size_t i = 0; i < n; i++) {
        g[i] = got[i];
        w[i] = want[i];
    }
    int ok = check_close_tol_d(what, g, w, n, atol, rtol);
    free(g);
    free(w);
    return ok;
}

int check_close(const char *what, const float *got, const float *want, size_t n, double tol) {
    double max_want = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(want[i]) > max_want) max_want = fabs(want[i]);
    return check_close_tol(what, got, want, n, max_want > 0 ? 0.0 : tol, tol);
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
        if (fabs(e) > max_err) {
            max_err = fabs(e);
            worst = i;
        }
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    int ok = finite && rel <= tol;
    printf("%s %-44s n=%zu l2_rel=%.3e max_abs=%.3e at [%zu] (tol %.0e)%s\n", ok ? "PASS" : "FAIL",
           what, n, rel, max_err, worst, tol, finite ? "" : " non-finite values");
    return ok;
}

float *check_read_f32(tw_st_file *f, const char *name, size_t *n_elems) {
    const tw_st_tensor *t = tw_st_find(f, name);
    tw_err err = {0};
    if (!t || t->dtype != TW_F32) {
        fprintf(stderr, "FAIL: %s: no F32 tensor '%s'\n", f->path, name);
        exit(TW_TEST_FAIL);
    }
    float *x = malloc(t->n_elems * sizeof(float) + 1);
    if (!x || tw_st_read(f, x, t, &err) != TW_OK) {
        fprintf(stderr, "FAIL: %s: %s: %s\n", f->path, name, x ? err.msg : "out of memory");
        exit(TW_TEST_FAIL);
    }
    if (n_elems) *n_elems = t->n_elems;
    return x;
}

tw_comm *check_comm(const char *kind, int *argc, char ***argv) {
    tw_comm_kind k = TW_COMM_SINGLE;
    if (!strcmp(kind, "mpi")) {
#ifdef TW_HAVE_MPI
        k = TW_COMM_MPI;
#else
        printf("SKIP: this build has no MPI\n");
        exit(TW_TEST_SKIP);
#endif
    } else if (strcmp(kind, "single")) {
        fprintf(stderr, "FAIL: communicator must be single or mpi, not '%s'\n", kind);
        exit(TW_TEST_FAIL);
    }
    tw_comm *c = NULL;
    tw_err err = {0};
    if (tw_comm_create(&c, k, argc, argv, &err) != TW_OK) {
        fprintf(stderr, "FAIL: communicator: %s\n", err.msg);
        exit(TW_TEST_FAIL);
    }
    return c;
}
