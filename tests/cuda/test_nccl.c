/* The NCCL communicator (src/dist/comm_nccl.c) on 2 ranks with one GPU each (mpirun -np 2):
 * all-reduce (sum and max; f32, i32, i64) and broadcast on device buffers, with the compute stream
 * bound and unbound, host buffers (through MPI), and an all-reduce recorded in a CUDA graph and
 * replayed. Exits 77 ("fewer than 2 CUDA devices: skipped") where the node has fewer GPUs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "backend/backend.h"
#include "core/log.h"
#include "dist/comm.h"

static void expect(int ok, int rank, const char *what) {
    if (!ok) check_n_fail++;
    if (!ok || rank == 0) printf("%s [rank %d] %s\n", ok ? "PASS" : "FAIL", rank, what);
}

/* x[i] = rank + 1 + i: the sum over 2 ranks is 3 + 2 i, the max 2 + i. */
static void check_allreduce_f32(tw_backend *be, tw_comm *c, size_t n, int bound) {
    int rank = tw_comm_rank(c);
    float *h = malloc(n * sizeof *h), *d = tw_mem_alloc(be, n * sizeof *h);
    TW_ASSERT(h);
    tw_comm_set_stream(c, bound ? tw_backend_stream(be) : NULL);
    for (int op = 0; op < 2; op++) {
        for (size_t i = 0; i < n; i++) h[i] = (float)(rank + 1) + (float)(i % 1000);
        tw_mem_from_host(be, d, h, n * sizeof *h);
        tw_comm_allreduce(c, d, n, TW_F32, op ? TW_REDUCE_MAX : TW_REDUCE_SUM);
        tw_mem_to_host(be, h, d, n * sizeof *h);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            float want = op ? 2.f + (float)(i % 1000) : 3.f + 2.f * (float)(i % 1000);
            bad += h[i] != want;
        }
        char what[160];
        snprintf(what, sizeof what, "device all-reduce %s f32 n=%zu stream %s: %zu wrong",
                 op ? "max" : "sum", n, bound ? "bound" : "unbound", bad);
        expect(bad == 0, rank, what);
    }
    free(h);
    tw_mem_free(be, d);
}

static void check_ints_and_broadcast(tw_backend *be, tw_comm *c) {
    int rank = tw_comm_rank(c);
    int64_t h64[3] = {rank, 1LL << 40, -rank}, *d64 = tw_mem_alloc(be, sizeof h64);
    tw_mem_from_host(be, d64, h64, sizeof h64);
    tw_comm_allreduce(c, d64, 3, TW_I64, TW_REDUCE_SUM);
    tw_mem_to_host(be, h64, d64, sizeof h64);
    expect(h64[0] == 1 && h64[1] == 1LL << 41 && h64[2] == -1, rank, "device all-reduce sum i64");
    int32_t h32[2] = {rank * 7, -rank}, *d32 = tw_mem_alloc(be, sizeof h32);
    tw_mem_from_host(be, d32, h32, sizeof h32);
    tw_comm_allreduce(c, d32, 2, TW_I32, TW_REDUCE_MAX);
    tw_mem_to_host(be, h32, d32, sizeof h32);
    expect(h32[0] == 7 && h32[1] == 0, rank, "device all-reduce max i32");
    /* Host buffers go through MPI. */
    int64_t host = rank + 5;
    tw_comm_allreduce(c, &host, 1, TW_I64, TW_REDUCE_SUM);
    expect(host == 11, rank, "host all-reduce sum i64 (MPI path)");
    char msg[32] = {0}, *dmsg = tw_mem_alloc(be, sizeof msg);
    if (rank == 1) snprintf(msg, sizeof msg, "from rank one");
    tw_mem_from_host(be, dmsg, msg, sizeof msg);
    tw_comm_broadcast(c, dmsg, sizeof msg, 1);
    tw_mem_to_host(be, msg, dmsg, sizeof msg);
    expect(strcmp(msg, "from rank one") == 0, rank, "device broadcast from rank 1");
    tw_mem_free(be, d64);
    tw_mem_free(be, d32);
    tw_mem_free(be, dmsg);
}

/* An add + all-reduce recorded once, replayed on new data in the same buffers. */
static void check_graph(tw_backend *be, tw_comm *c) {
    int rank = tw_comm_rank(c);
    int n = 4096;
    tw_err err = {0};
    float *a = tw_mem_alloc(be, n * sizeof(float)), *y = tw_mem_alloc(be, n * sizeof(float));
    float *h = malloc(n * sizeof(float));
    TW_ASSERT(h);
    tw_tensor at = {a, 1, 1, 1, n, TW_F32, TW_LAYOUT_NCHW}, yt = {y, 1, 1, 1, n, TW_F32, TW_LAYOUT_NCHW};
    tw_comm_set_stream(c, tw_backend_stream(be));
    tw_status st = tw_backend_graph_begin(be, &err);
    if (st == TW_OK) {
        tw_add(be, &yt, &at, &at);                        /* y = 2 a */
        tw_comm_allreduce(c, y, (size_t)n, TW_F32, TW_REDUCE_SUM);
        st = tw_backend_graph_end(be, &err);
    }
    expect(st == TW_OK, rank, st == TW_OK ? "graph with an all-reduce recorded" : err.msg);
    if (st != TW_OK) return;
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < n; i++) h[i] = (float)(rank + r + i % 10);
        tw_mem_from_host(be, a, h, n * sizeof(float));
        tw_backend_graph_replay(be, NULL, 0);
        tw_mem_to_host(be, h, y, n * sizeof(float));
        int bad = 0;
        for (int i = 0; i < n; i++) bad += h[i] != 2.f * (float)(1 + 2 * r + 2 * (i % 10));
        char what[80];
        snprintf(what, sizeof what, "graph replay %d: %d wrong", r, bad);
        expect(bad == 0, rank, what);
    }
    free(h);
    tw_mem_free(be, a);
    tw_mem_free(be, y);
}

int main(int argc, char **argv) {
    if (tw_backend_device_count(TW_DEVICE_CUDA) < 2) {
        printf("fewer than 2 CUDA devices: skipped\n");
        return 77;
    }
    tw_err err = {0};
    tw_comm *c = NULL;
    tw_backend *be = NULL;
    if (tw_comm_create(&c, TW_COMM_NCCL, &argc, &argv, &err) != TW_OK) {
        printf("FAIL: nccl communicator: %s\n", err.msg);
        return 1;
    }
    if (tw_comm_size(c) != 2) {
        printf("FAIL: run with mpirun -np 2 (size %d)\n", tw_comm_size(c));
        return 1;
    }
    if (tw_backend_create(&be, TW_DEVICE_CUDA, TW_PREC_FP32, tw_comm_local_rank(c), &err) != TW_OK) {
        printf("FAIL: cuda backend: %s\n", err.msg);
        return 1;
    }
    check_allreduce_f32(be, c, 1000, 1);
    check_allreduce_f32(be, c, (size_t)3 << 20, 1);
    check_allreduce_f32(be, c, 777, 0);
    check_ints_and_broadcast(be, c);
    check_graph(be, c);
    int64_t bad = check_n_fail;
    tw_comm_allreduce(c, &bad, 1, TW_I64, TW_REDUCE_SUM);
    int rank = tw_comm_rank(c);
    tw_backend_free(be);
    tw_comm_free(c);
    if (rank == 0) printf("%s\n", bad ? "FAIL" : "PASS");
    return bad ? 1 : 0;
}
