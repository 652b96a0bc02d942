/* All-reduce (or, with OP=allgather in the environment, all-gather) bus bandwidth against message
 * size, with nccl-tests' definitions (NVIDIA/nccl-tests doc/PERFORMANCE.md): algbw = bytes / time,
 * busbw = algbw * 2 (n - 1) / n for an all-reduce over n ranks and algbw * (n - 1) / n for an
 * all-gather (bytes: the gathered total), the figure to compare with a link's bandwidth. In place,
 * f32 sum, sizes from 8 B doubling to MAX_MIB; each size WARMUP untimed then ITERS timed calls
 * after a barrier, the time the slowest rank's mean. Run under mpirun (MPI on host buffers) or,
 * with "cuda", NCCL on device buffers (one GPU per rank). Each rank checks the sums (the gathered
 * blocks), so a broken collective cannot pass for a fast one; exit code 1 then.
 * usage: [OP=allreduce|allgather] [mpirun -np N] bench_comm [cpu|cuda] [MAX_MIB] [ITERS] [WARMUP] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "core/log.h"
#include "dist/comm.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static long arg(int argc, char **argv, int i, long def, long lo, long hi) {
    if (argc <= i) return def;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "bench_comm: argument %d '%s' not in [%ld, %ld]\n", i, argv[i], lo, hi);
        exit(2);
    }
    return v;
}

/* The all-gather table: bytes = the gathered total (n blocks), each rank's block its rank number
 * in every byte (checked after the timed calls). Frees comm and be; returns the exit code. */
static int run_allgather(tw_comm *comm, tw_backend *be, size_t max_bytes, long iters, long warmup) {
    int rank = tw_comm_rank(comm), n = tw_comm_size(comm), bad = 0;
    unsigned char *buf = tw_mem_alloc(be, max_bytes), *host = malloc(max_bytes);
    TW_ASSERT(buf && host);
    if (rank == 0) {
        printf("# bench/comm all-gather  ranks=%d comm=%s  in place  iters=%ld warmup=%ld\n", n,
               tw_comm_kind_name(tw_comm_kind_of(comm)), iters, warmup);
        printf("# algbw = bytes / time; busbw = algbw * (n-1)/n (nccl-tests); bytes: gathered total\n");
        printf("# %12s %12s %12s %11s %11s\n", "bytes", "per_rank", "time_us", "algbw_GB/s", "busbw_GB/s");
    }
    for (size_t bytes = 8 * (size_t)n; bytes <= max_bytes; bytes *= 2) {
        size_t block = bytes / (size_t)n;
        memset(host, 0, bytes);
        memset(host + (size_t)rank * block, rank + 1, block);
        tw_mem_from_host(be, buf, host, bytes);
        for (long i = 0; i < warmup; i++) tw_comm_allgather(comm, buf, block);
        tw_backend_sync(be);
        tw_comm_barrier(comm);
        double t0 = now_s();
        for (long i = 0; i < iters; i++) tw_comm_allgather(comm, buf, block);
        tw_backend_sync(be);
        float t = (float)((now_s() - t0) / iters);
        tw_comm_allreduce(comm, &t, 1, TW_F32, TW_REDUCE_MAX);
        tw_mem_to_host(be, host, buf, bytes);
        for (size_t i = 0; i < block * (size_t)n; i++)
            if (host[i] != (unsigned char)(i / block + 1)) {
                fprintf(stderr, "bench_comm: rank %d: %zu bytes: byte %zu is %d, want %d\n", rank, bytes, i,
                        host[i], (int)(i / block + 1));
                bad = 1;
                break;
            }
        double algbw = bytes / (double)t / 1e9, busbw = algbw * (n - 1) / n;
        if (rank == 0) printf("  %12zu %12zu %12.2f %11.3f %11.3f\n", bytes, block, 1e6 * t, algbw, busbw);
    }
    tw_mem_free(be, buf);
    free(host);
    tw_backend_free(be);
    tw_comm_free(comm);
    return bad;
}

int main(int argc, char **argv) {
    int cuda = argc > 1 && !strcmp(argv[1], "cuda");
    if (argc > 1 && !cuda && strcmp(argv[1], "cpu")) {
        fprintf(stderr, "usage: bench_comm [cpu|cuda] [MAX_MIB] [ITERS] [WARMUP]\n");
        return 2;
    }
    long max_mib = arg(argc, argv, 2, 64, 1, 4096), iters = arg(argc, argv, 3, 20, 1, 100000);
    long warmup = arg(argc, argv, 4, 5, 0, 1000);
    const char *op = getenv("OP") ? getenv("OP") : "allreduce";
    int gather = !strcmp(op, "allgather");
    if (!gather && strcmp(op, "allreduce")) {
        fprintf(stderr, "bench_comm: OP='%s' is not allreduce or allgather\n", op);
        return 2;
    }
    tw_err err = {0};
    tw_comm *comm = NULL;
    tw_backend *be = NULL;
    if (tw_comm_create(&comm, tw_comm_kind_auto(cuda), NULL, NULL, &err) != TW_OK) {
        fprintf(stderr, "bench_comm: %s\n", err.msg);
        return 1;
    }
    if (tw_backend_create(&be, cuda ? TW_DEVICE_CUDA : TW_DEVICE_CPU, TW_PREC_FP32, tw_comm_local_rank(comm), &err) !=
        TW_OK) {
        fprintf(stderr, "bench_comm: %s\n", err.msg);
        return err.code == TW_E_UNSUPPORTED ? 77 : 1;
    }
    tw_comm_set_stream(comm, tw_backend_stream(be));
    int rank = tw_comm_rank(comm), n = tw_comm_size(comm);
    size_t max_bytes = (size_t)max_mib << 20;
    float *buf = tw_mem_alloc(be, max_bytes), *host = malloc(max_bytes);
    TW_ASSERT(buf && host);
    /* 1 on rank 0, 0 elsewhere: after k in-place sums every element is n^(k-1) (checked). */
    for (size_t i = 0; i < max_bytes / sizeof(float); i++) host[i] = rank == 0 ? 1.0f : 0.0f;
    if (gather) return run_allgather(comm, be, max_bytes, iters, warmup);
    if (rank == 0) {
        printf("# bench/comm all-reduce  ranks=%d comm=%s  f32 sum in place  iters=%ld warmup=%ld\n", n,
               tw_comm_kind_name(tw_comm_kind_of(comm)), iters, warmup);
        printf("# algbw = bytes / time; busbw = algbw * 2(n-1)/n (nccl-tests); time: slowest rank's mean\n");
        printf("# %12s %12s %12s %11s %11s\n", "bytes", "count", "time_us", "algbw_GB/s", "busbw_GB/s");
    }
    int bad = 0;
    for (size_t bytes = 8; bytes <= max_bytes; bytes *= 2) {
        size_t count = bytes / sizeof(float);
        tw_mem_from_host(be, buf, host, bytes);
        for (long i = 0; i < warmup; i++) tw_comm_allreduce(comm, buf, count, TW_F32, TW_REDUCE_SUM);
        tw_backend_sync(be);
        tw_comm_barrier(comm);
        double t0 = now_s();
        for (long i = 0; i < iters; i++) tw_comm_allreduce(comm, buf, count, TW_F32, TW_REDUCE_SUM);
        tw_backend_sync(be);
        float t = (float)((now_s() - t0) / iters);
        tw_comm_allreduce(comm, &t, 1, TW_F32, TW_REDUCE_MAX);
        /* Every call leaves the sum on every rank, so the next one sums n copies of it. */
        float last;
        tw_mem_to_host(be, &last, buf + count - 1, sizeof last);
        double want = pow(n, (double)(warmup + iters - 1));
        if (want < 1e30 && fabs(last - want) > 1e-5 * want) {
            fprintf(stderr, "bench_comm: rank %d: %zu bytes: the sum is %g, want %g\n", rank, bytes, last, want);
            bad = 1;
        }
        double algbw = bytes / (double)t / 1e9, busbw = algbw * 2.0 * (n - 1) / n;
        if (rank == 0)
            printf("  %12zu %12zu %12.2f %11.3f %11.3f\n", bytes, count, 1e6 * t, algbw, busbw);
    }
    tw_mem_free(be, buf);
    free(host);
    tw_backend_free(be);
    tw_comm_free(comm);
    return bad;
}
