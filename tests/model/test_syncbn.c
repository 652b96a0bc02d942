/* The synchronised 1-D BN layer (model/syncbn.h) on one rank, through a reducer that counts its
 * calls: the statistics against a double-precision reference for a feature whose mean is 1000
 * times its spread, with the shift (the running mean) at 0 and at the batch's: one all-reduce per
 * forward and one per backward either way (the f64 sums keep the variance); statistics that are
 * not finite raise the owner's flag, finite ones leave it clear; the running statistics take
 * torch's momentum rule at each forward, in order, and stay bit for bit as they were when the
 * flag is already raised (a rejected step: its rollback, train/step.h, restores the counter).
 * usage: test_syncbn */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "model/syncbn.h"

enum { N = 64, D = 8 };

static int g_fail = 0;
#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        int ok_ = (cond);                                                         \
        printf("%s ", ok_ ? "  ok  " : "  FAIL");                                 \
        printf(__VA_ARGS__);                                                      \
        printf("\n");                                                             \
        if (!ok_) g_fail = 1;                                                     \
    } while (0)

static void count_sum(void *ctx, double *buf, size_t n_elems) {
    (void)buf;
    (void)n_elems;
    (*(int *)ctx)++;   /* one rank: the sum is the buffer */
}

/* x [N, D]: feature j has mean 1000 (j + 1) and standard deviation j + 1. */
static void make_x(float *x, uint32_t stream) {
    tw_rng r;
    tw_rng_init(&r, 9, stream, 0, 0);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) x[i * D + j] = (float)((j + 1) * (1000.0 + tw_rng_normal(&r)));
}

/* The largest |y - ref| over the normalised output, ref from double statistics of x. */
static double y_error(const float *y, const float *x, double *mean, double *var) {
    double worst = 0;
    for (int j = 0; j < D; j++) {
        double m = 0, v = 0;
        for (int i = 0; i < N; i++) m += x[i * D + j];
        m /= N;
        for (int i = 0; i < N; i++) v += (x[i * D + j] - m) * (x[i * D + j] - m);
        v /= N;
        mean[j] = m;
        var[j] = v;
        for (int i = 0; i < N; i++) {
            double ref = (x[i * D + j] - m) / sqrt(v + 1e-5);
            if (fabs(y[i * D + j] - ref) > worst) worst = fabs(y[i * D + j] - ref);
        }
    }
    return worst;
}

int main(void) {
    tw_backend *be = NULL;
    tw_err err = {0};
    if (tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) != TW_OK) {
        fprintf(stderr, "test_syncbn: %s\n", err.msg);
        return 1;
    }
    int calls = 0;
    tw_reducer red = {count_sum, &calls, 1};
    tw_syncbn bn;
    tw_syncbn_cache c;
    int *bad = tw_mem_alloc(be, sizeof(int)), flag = 0;
    tw_mem_zero(be, bad, sizeof(int));
    tw_syncbn_init(&bn, be, N, D, 1, 0, 1e-5f, 0.1f, bad);
    tw_syncbn_cache_init(&c, be, D);
    float rm0[D], rv0[D], rm[D], rv[D];
    int64_t n_batches = 5;
    for (int j = 0; j < D; j++) rm0[j] = 0.0f, rv0[j] = 1.0f;
    bn.run_mean = tw_mem_alloc(be, sizeof rm0);
    bn.run_var = tw_mem_alloc(be, sizeof rv0);
    bn.n_batches = &n_batches;
    tw_mem_from_host(be, bn.run_mean, rm0, sizeof rm0);
    tw_mem_from_host(be, bn.run_var, rv0, sizeof rv0);
    float x[2][N * D], y[N * D], dy[N * D], dx[N * D];
    float *bx = tw_mem_alloc(be, sizeof y), *by = tw_mem_alloc(be, sizeof y);
    float *bdy = tw_mem_alloc(be, sizeof y), *bdx = tw_mem_alloc(be, sizeof y);
    double mean[2][D], var[2][D];

    /* Running mean 0, batch mean 1000x the spread: one pass, precise. */
    make_x(x[0], 0);
    make_x(x[1], 1);
    for (int v = 0; v < 2; v++) {
        tw_mem_from_host(be, bx, x[v], sizeof y);
        calls = 0;
        tw_syncbn_forward(&bn, be, &red, by, &c, bx, NULL, NULL);
        tw_mem_to_host(be, &flag, bad, sizeof flag);
        CHECK(!flag, "view %d: finite statistics leave the flag clear", v);
        tw_mem_to_host(be, y, by, sizeof y);
        double e = y_error(y, x[v], mean[v], var[v]);
        CHECK(calls == 1, "view %d: running mean far from the batch's: %d all-reduce (want 1)", v, calls);
        CHECK(e < 2e-4, "view %d: normalised output against double statistics, max error %.2e", v, e);
    }
    /* Each forward applied torch's rule at once, in order. */
    tw_mem_to_host(be, rm, bn.run_mean, sizeof rm);
    tw_mem_to_host(be, rv, bn.run_var, sizeof rv);
    double worst = 0;
    for (int j = 0; j < D; j++) {
        double em = rm0[j], ev = rv0[j];
        for (int v = 0; v < 2; v++) {
            em = 0.9 * em + 0.1 * mean[v][j];
            ev = 0.9 * ev + 0.1 * var[v][j] * N / (N - 1.0);
        }
        worst = fmax(worst, fmax(fabs(rm[j] - em) / fabs(em), fabs(rv[j] - ev) / fabs(ev)));
    }
    CHECK(worst < 1e-5 && n_batches == 7,
          "two forwards: running statistics as torch's momentum rule (max rel. error %.2e), num_batches_tracked 7",
          worst);

    /* The flag already raised (a step that will be rejected): the device skips the running
     * update; the step's rollback (train/step.h) restores num_batches_tracked. */
    float rm1[D], rv1[D];
    memcpy(rm1, rm, sizeof rm);
    memcpy(rv1, rv, sizeof rv);
    int raised = 1;
    tw_mem_from_host(be, bad, &raised, sizeof raised);
    tw_mem_from_host(be, bx, x[0], sizeof y);
    tw_syncbn_forward(&bn, be, &red, by, &c, bx, NULL, NULL);
    tw_mem_to_host(be, rm, bn.run_mean, sizeof rm);
    tw_mem_to_host(be, rv, bn.run_var, sizeof rv);
    CHECK(!memcmp(rm, rm1, sizeof rm) && !memcmp(rv, rv1, sizeof rv),
          "raised flag: running statistics unchanged, bit for bit");
    tw_mem_zero(be, bad, sizeof(int));

    /* Running mean at the batch's: one all-reduce per forward; one per backward. */
    float near[D];
    for (int j = 0; j < D; j++) near[j] = (float)mean[0][j];
    tw_mem_from_host(be, bn.run_mean, near, sizeof near);
    tw_mem_from_host(be, bx, x[0], sizeof y);
    calls = 0;
    tw_syncbn_forward(&bn, be, &red, by, &c, bx, NULL, NULL);
    tw_mem_to_host(be, y, by, sizeof y);
    double e = y_error(y, x[0], mean[0], var[0]);
    CHECK(calls == 1 && e < 2e-4, "running mean near the batch's: %d all-reduce (want 1), max error %.2e", calls, e);
    for (int i = 0; i < N * D; i++) dy[i] = (float)((i % 7) - 3);
    tw_mem_from_host(be, bdy, dy, sizeof dy);
    calls = 0;
    tw_syncbn_backward(&bn, be, &red, bdx, NULL, NULL, bdy, by, bx, &c, NULL);
    tw_mem_to_host(be, dx, bdx, sizeof dx);
    CHECK(calls == 1 && isfinite(dx[0]), "backward: %d all-reduce (want 1)", calls);

    /* A non-finite value: the statistics are not finite, the flag goes up; the step is dropped. */
    x[0][3 * D + 2] = NAN;
    tw_mem_from_host(be, bx, x[0], sizeof y);
    tw_syncbn_forward(&bn, be, &red, by, &c, bx, NULL, NULL);
    tw_mem_to_host(be, &flag, bad, sizeof flag);
    CHECK(flag == 1, "a NaN in the batch raises the flag");
    tw_mem_free(be, bad);

    tw_mem_free(be, bx);
    tw_mem_free(be, by);
    tw_mem_free(be, bdy);
    tw_mem_free(be, bdx);
    tw_mem_free(be, bn.run_mean);
    tw_mem_free(be, bn.run_var);
    tw_syncbn_cache_free(&c, be);
    tw_syncbn_free(&bn, be);
    tw_backend_free(be);
    return g_fail;
}
