/* The loader alone: reads BATCHES global batches of S1 + all 12 S2 bands from a shard split,
 * normalised f32, shuffled, on whatever cores the caller allows (bench_loader.py pins it to
 * one). Prints `samples_per_s=<x>`; the comparison with PyTorch is bench_loader.py's job. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "data/loader.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: bench_loader DIR SPLIT BATCH N_BATCHES\n");
        return 2;
    }
    char *end;
    long batch = strtol(argv[3], &end, 10), n_batches = *end ? -1 : strtol(argv[4], &end, 10);
    if (*end || batch < 1 || n_batches < 1) {
        fprintf(stderr, "bench_loader: BATCH and N_BATCHES must be positive integers\n");
        return 2;
    }
    tw_loader_opts o;
    tw_loader_opts_default(&o);
    o.dir = argv[1];
    o.split = argv[2];
    o.global_batch = batch;
    o.seed = 1;
    tw_err err = {0};
    tw_loader *ld;
    if (tw_loader_init(&ld, &o, &err)) {
        fprintf(stderr, "bench_loader: %s\n", err.msg);
        return 1;
    }
    double t0 = now(), checksum = 0;
    int64_t n = 0;
    for (long s = 0; s < n_batches; s++) {
        const tw_batch *b;
        if (tw_loader_next(ld, &b, &err)) {
            fprintf(stderr, "bench_loader: %s\n", err.msg);
            tw_loader_free(ld);
            return 1;
        }
        checksum += b->s2[0][0] + b->s1[0][0];   /* touch the batch as a consumer would */
        n += b->n;
    }
    double dt = now() - t0;
    tw_loader_free(ld);
    printf("samples_per_s=%.1f samples=%lld seconds=%.3f checksum=%g\n", (double)n / dt, (long long)n, dt, checksum);
    return 0;
}
