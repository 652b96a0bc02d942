/* The communicators. Modes: "single" (one process); "mpi" (under mpirun -np 2: rank, size, local
 * rank, in-place all-reduce of f32/f64/i64/i32 sum and max, broadcast from each root, in-place
 * all-gather, barrier); and the
 * failure modes that expect_fail.sh runs, which must end the job non-zero and name the rank:
 * "fatal" (rank 1 hits TW_ASSERT), "kill" (rank 1 is killed), "exit" (rank 1 exits without
 * MPI_Finalize), "mpi-error" (mismatched broadcast sizes: an MPI error turned into tw_fatal),
 * while rank 0 waits in an all-reduce; "single-fatal" (tw_fatal ends a single process, code 1). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/log.h"
#include "dist/comm.h"

static void test_single(void) {
    tw_comm *c;
    tw_err err = {0};
    CHECK(tw_comm_kind_auto(0) == TW_COMM_SINGLE, "auto kind outside a launcher");
    CHECK(tw_comm_create(&c, TW_COMM_SINGLE, NULL, NULL, &err) == TW_OK, "%s", err.msg);
    CHECK(tw_comm_rank(c) == 0 && tw_comm_size(c) == 1 && tw_comm_local_rank(c) == 0, "rank/size");
    CHECK(tw_comm_kind_of(c) == TW_COMM_SINGLE && !strcmp(tw_comm_kind_name(TW_COMM_SINGLE), "single"), "kind");
    float x[3] = {1.5f, -2.0f, 3.25f};
    tw_comm_allreduce(c, x, 3, TW_F32, TW_REDUCE_SUM);
    CHECK(x[0] == 1.5f && x[1] == -2.0f && x[2] == 3.25f, "single all-reduce changed the buffer");
    int64_t y[2] = {INT64_C(1) << 50, -7};
    tw_comm_allreduce(c, y, 2, TW_I64, TW_REDUCE_MAX);
    CHECK(y[0] == INT64_C(1) << 50 && y[1] == -7, "single i64 max");
    tw_comm_broadcast(c, x, sizeof x, 0);
    tw_comm_allgather(c, x, sizeof x);   /* one rank: its own block, unchanged */
    CHECK(x[0] == 1.5f && x[1] == -2.0f && x[2] == 3.25f, "single all-gather changed the buffer");
    tw_comm_barrier(c);
    tw_comm_free(c);
}

static void test_mpi(void) {
    tw_comm *c;
    tw_err err = {0};
    CHECK(tw_comm_kind_auto(0) == TW_COMM_MPI, "auto kind under mpirun");
    if (tw_comm_create(&c, TW_COMM_MPI, NULL, NULL, &err) != TW_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int r = tw_comm_rank(c), n = tw_comm_size(c);
    CHECK(n == 2, "size %d", n);
    CHECK(r == 0 || r == 1, "rank %d", r);
    CHECK(tw_log_rank() == r, "rank not registered with log.h");
    CHECK(tw_comm_local_rank(c) == r, "one node: local rank %d, rank %d", tw_comm_local_rank(c), r);
    CHECK(tw_comm_kind_of(c) == TW_COMM_MPI, "kind");

    enum { N = 1003 };
    float *f = malloc(N * sizeof *f), *g = malloc(N * sizeof *g);
    for (int i = 0; i < N; i++) {
        f[i] = (float)(r + 1) + 0.5f * (float)i;       /* sum over ranks: 3 + i, exact */
        g[i] = r ? (float)i : -(float)i;               /* max: i */
    }
    tw_comm_allreduce(c, f, N, TW_F32, TW_REDUCE_SUM);
    tw_comm_allreduce(c, g, N, TW_F32, TW_REDUCE_MAX);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += f[i] != 3.0f + (float)i || g[i] != (float)i;
    CHECK(!bad, "%d f32 elements wrong (f[5]=%g g[5]=%g)", bad, f[5], g[5]);

    int64_t big[3] = {(INT64_C(1) << 40) + r, -r, r ? INT64_C(1) << 62 : 5};
    int64_t mx[2] = {r ? -3 : -9, r ? INT64_C(1) << 50 : 0};
    tw_comm_allreduce(c, big, 3, TW_I64, TW_REDUCE_SUM);
    tw_comm_allreduce(c, mx, 2, TW_I64, TW_REDUCE_MAX);
    CHECK(big[0] == (INT64_C(1) << 41) + 1 && big[1] == -1 && big[2] == (INT64_C(1) << 62) + 5, "i64 sum");
    CHECK(mx[0] == -3 && mx[1] == INT64_C(1) << 50, "i64 max");
    int32_t k[2] = {r + 1, 10 * r};
    tw_comm_allreduce(c, k, 2, TW_I32, TW_REDUCE_SUM);
    CHECK(k[0] == 3 && k[1] == 10, "i32 sum");
    tw_comm_allreduce(c, k, 0, TW_I32, TW_REDUCE_SUM);   /* nothing to do, must not hang */
    /* f64 keeps what f32 would round away (the synchronised BN's sums) */
    double dd[2] = {r ? 1.0 : 1e9, 0.25 * (r + 1)};
    tw_comm_allreduce(c, dd, 2, TW_F64, TW_REDUCE_SUM);
    CHECK(dd[0] == 1e9 + 1.0 && dd[1] == 0.75, "f64 sum (%.17g, %g)", dd[0], dd[1]);

    /* In-place all-gather: each rank's block in rank order, an odd size. */
    enum { BLK = 1001 };
    unsigned char *ag = calloc(2 * BLK, 1);
    for (int i = 0; i < BLK; i++) ag[r * BLK + i] = (unsigned char)(i * 7 + 3 * r + 1);
    tw_comm_allgather(c, ag, BLK);
    size_t ag_wrong = 0;
    for (int q = 0; q < 2; q++)
        for (int i = 0; i < BLK; i++) ag_wrong += ag[q * BLK + i] != (unsigned char)(i * 7 + 3 * q + 1);
    CHECK(!ag_wrong, "all-gather: %zu bytes wrong", ag_wrong);
    free(ag);

    size_t nb = (1 << 20) + 7;
    unsigned char *b = malloc(nb);
    for (int root = 0; root < 2; root++) {
        for (size_t i = 0; i < nb; i++) b[i] = r == root ? (unsigned char)(i * 31 + (size_t)root) : 0;
        tw_comm_broadcast(c, b, nb, root);
        size_t wrong = 0;
        for (size_t i = 0; i < nb; i++) wrong += b[i] != (unsigned char)(i * 31 + (size_t)root);
        CHECK(!wrong, "broadcast from %d: %zu bytes wrong", root, wrong);
    }
    tw_comm_barrier(c);

    int32_t fails = check_n_fail > 0;
    tw_comm_allreduce(c, &fails, 1, TW_I32, TW_REDUCE_SUM);
    tw_log("# %d rank(s) failed\n", fails);
    free(f);
    free(g);
    free(b);
    tw_comm_free(c);
}

/* Rank 1 dies in the way mode says while rank 0 waits for it in an all-reduce. */
static int test_dead(const char *mode) {
    tw_comm *c;
    tw_err err = {0};
    if (tw_comm_create(&c, TW_COMM_MPI, NULL, NULL, &err) != TW_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    tw_comm_barrier(c);
    float x[4] = {1, 2, 3, 4};
    if (tw_comm_rank(c) == 1) {
        if (!strcmp(mode, "fatal")) TW_ASSERT(x[0] == 2.0f);
        if (!strcmp(mode, "kill")) raise(SIGKILL);
        if (!strcmp(mode, "exit")) _exit(3);
        if (!strcmp(mode, "mpi-error")) tw_comm_broadcast(c, x, 2 * sizeof(float), 0);
    } else if (!strcmp(mode, "mpi-error")) {
        tw_comm_broadcast(c, x, 4 * sizeof(float), 0);
    }
    tw_comm_allreduce(c, x, 4, TW_F32, TW_REDUCE_SUM);
    tw_comm_barrier(c);
    fprintf(stderr, "rank %d: the job went on after rank 1 died\n", tw_comm_rank(c));
    tw_comm_free(c);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s single|mpi|fatal|kill|exit|mpi-error|single-fatal\n", argv[0]);
        return 1;
    }
    const char *mode = argv[1];
    if (!strcmp(mode, "single")) test_single();
    else if (!strcmp(mode, "mpi")) test_mpi();
    else if (!strcmp(mode, "single-fatal")) {
        tw_comm *c;
        tw_err err = {0};
        if (tw_comm_create(&c, TW_COMM_SINGLE, NULL, NULL, &err) != TW_OK) return 1;
        TW_ASSERT(tw_comm_size(c) == 2);
        return 0;
    } else return test_dead(mode);
    if (tw_log_rank() == 0) printf(check_n_fail ? "FAIL test_comm %s\n" : "PASS test_comm %s\n", mode);
    return check_exit_code();
}
