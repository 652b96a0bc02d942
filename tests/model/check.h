/* Shared by the tests in tests/model: comparing a host f32 array with a reference tensor from a
 * safetensors file, and reading reference tensors. Header-only helpers, static. */
#ifndef TW_TEST_MODEL_CHECK_H
#define TW_TEST_MODEL_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/safetensors.h"

/* Reads tensor `name` (F32) of f into a fresh malloc'ed array; exits 1 when absent. */
static float *check_read_f32(tw_st_file *f, const char *name, size_t *n_elems) {
    const tw_st_tensor *t = tw_st_find(f, name);
    if (!t || t->dtype != TW_F32) {
        fprintf(stderr, "FAIL: %s: no F32 tensor '%s'\n", f->path, name);
        exit(1);
    }
    float *h = malloc(t->n_elems * sizeof(float) + 1);
    tw_err err = {0};
    if (!h || tw_st_read(f, h, t, &err) != TW_OK) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        exit(1);
    }
    if (n_elems) *n_elems = t->n_elems;
    return h;
}

/* got vs want over n elements. The error is measured against the tensor's scale:
 * max|got - want| <= tol * max|want| (an element-wise relative error is meaningless for the
 * entries near 0 that every gradient has). Prints one line per tensor, the worst element on
 * failure, and returns 1 when within tol. Non-finite values always fail. */
static int check_close(const char *what, const float *got, const float *want, size_t n, double tol,
                       int verbose) {
    double max_ref = 0, max_abs = 0, sq_err = 0, sq_ref = 0;
    size_t worst = 0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        double r = want[i], d = fabs((double)got[i] - r);
        if (!isfinite(got[i])) finite = 0;
        if (fabs(r) > max_ref) max_ref = fabs(r);
        if (d > max_abs || !isfinite(d)) {
            max_abs = d;
            worst = i;
        }
        sq_err += d * d;
        sq_ref += r * r;
    }
    double rel = max_ref > 0 ? max_abs / max_ref : max_abs;
    double nrm = sq_ref > 0 ? sqrt(sq_err / sq_ref) : sqrt(sq_err);
    int ok = finite && rel <= tol;
    if (!ok || verbose)
        printf("%s %-44s n=%-8zu max_abs=%.3e max_rel=%.3e norm_rel=%.3e tol=%.1e%s\n",
               ok ? "  ok  " : "  FAIL", what, n, max_abs, rel, nrm, tol, ok ? "" : " <<<");
    if (!ok)
        printf("        worst element %zu: got %.8e want %.8e\n", worst, (double)got[worst],
               (double)want[worst]);
    return ok;
}

#endif
