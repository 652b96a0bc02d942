/* The gradient buckets (dist/buckets.h) against one flat all-reduce, under mpirun -np 2 and -np 3
 * (or one process): a span filled from its end in uneven pieces, as backward fills the gradient
 * arena, each piece announced final (tw_grad_ready) before the next is written. Until written the
 * span holds NaN, so a bucket started too early (MPI's first round sends the buffer as it is)
 * poisons the sum. Bucket sizes: one bucket (0), an odd
 * size, one element (more buckets than TW_COMM_MAX_PENDING), a span offset inside the arena. The
 * sums must equal the flat call's bit for bit on 1 or 2 ranks (a + b is b + a) and within 1e-6
 * (relative) on 3, where MPI may add a bucket in another order than the flat buffer. With "sim"
 * the same through the simulated slow network (tw_comm_sim_wrap), which must not change a sum.
 * usage: [mpirun -np N] test_buckets single|mpi [sim] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "dist/buckets.h"

enum { N = 3001, BASE = 37 };   /* span elements; its offset in the "arena" */

/* The value backward writes at element i on rank r in round k. */
static float value(int r, size_t i, int k) {
    tw_rng g;
    tw_rng_init(&g, 11, (uint32_t)r, (uint32_t)i, (uint32_t)k);
    return tw_rng_normal(&g) * (1.0f + (float)(i % 7));
}

/* Fills buf from its end in pieces of 1, 2, 3, ... elements, announcing each final. Returns the largest relative difference against the flat all-reduce of the same values. */
static double run(tw_comm *c, size_t bucket_elems, int k, int *n_buckets) {
    int r = tw_comm_rank(c);
    float *arena = calloc(BASE + N, sizeof(float)), *flat = malloc(N * sizeof(float));
    TW_ASSERT(arena && flat);
    float *buf = arena + BASE;
    for (size_t i = 0; i < N; i++) buf[i] = NAN;
    tw_buckets *b = NULL;
    tw_err err = {0};
    TW_ASSERT(tw_buckets_create(&b, c, buf, BASE, N, bucket_elems, &err) == TW_OK);
    *n_buckets = tw_buckets_count(b);
    tw_grad_ready ready = tw_buckets_hook(b);
    tw_buckets_begin(b, 0);
    tw_grad_ready_at(&ready, BASE + N + 5);   /* above the span: starts nothing */
    size_t hi = N, piece = 1;
    while (hi > 0) {
        size_t lo = hi > piece ? hi - piece : 0;
        for (size_t i = lo; i < hi; i++) buf[i] = value(r, i, k);
        tw_grad_ready_at(&ready, BASE + lo);
        tw_grad_ready_at(&ready, BASE + lo);   /* unchanged: progress only */
        hi = lo;
        piece++;
    }
    for (size_t i = 0; i < N; i++) flat[i] = value(r, i, k);
    tw_buckets_wait(b);
    tw_comm_allreduce(c, flat, N, TW_F32, TW_REDUCE_SUM);
    double worst = 0;
    for (size_t i = 0; i < N; i++) {
        double d = fabs((double)buf[i] - flat[i]) / fmax(1.0, fabs(flat[i]));
        if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
    }
    for (int i = 0; i < BASE; i++)
        if (arena[i] != 0.0f) worst = INFINITY;   /* outside the span: untouched */
    tw_buckets_free(b);
    free(arena);
    free(flat);
    return worst;
}

int main(int argc, char **argv) {
    int sim = argc == 3 && !strcmp(argv[2], "sim");
    if (argc < 2 || argc > 3 || (argc == 3 && !sim) || (strcmp(argv[1], "single") && strcmp(argv[1], "mpi"))) {
        fprintf(stderr, "usage: test_buckets single|mpi [sim]\n");
        return 2;
    }
    tw_comm *c = NULL;
    tw_err err = {0};
    tw_comm_kind kind = strcmp(argv[1], "mpi") ? TW_COMM_SINGLE : TW_COMM_MPI;
    if (tw_comm_create(&c, kind, NULL, NULL, &err) != TW_OK) {
        fprintf(stderr, "test_buckets: %s\n", err.msg);
        return 1;
    }
    if (sim && tw_comm_sim_wrap(&c, 2.0, 1.0, &err) != TW_OK) {
        fprintf(stderr, "test_buckets: %s\n", err.msg);
        return 1;
    }
    int world = tw_comm_size(c), fail = 0;
    double tol = world <= 2 ? 0.0 : 1e-6;
    const size_t sizes[] = {0, 97, 1, 4096};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int nb = 0;
        double worst = run(c, sizes[s], (int)s, &nb);
        int ok = worst <= tol;
        fail |= !ok;
        if (tw_comm_rank(c) == 0)
            printf("%s %d ranks%s, bucket %zu elements (%d buckets): max rel. difference to one flat "
                   "all-reduce %.3g (allowed %.0g)\n", ok ? "  ok  " : "  FAIL", world,
                   sim ? " (simulated network)" : "", sizes[s], nb, worst, tol);
    }
    int64_t bad = fail;
    tw_comm_allreduce(c, &bad, 1, TW_I64, TW_REDUCE_MAX);
    tw_comm_free(c);
    return bad ? 1 : 0;
}
