/* bench/loader, start-up at scale: the loader's init (list, peek every shard, the per-shard index)
 * and its first batch over a directory of many small shards; prints the seconds and the peak
 * resident memory, then the rate of the next BATCHES shuffled batches (random access over every
 * shard: the open-file cache at work). bench_index.py makes the shards and runs the h5py + PyTorch
 * peer.
 * usage: [MAX_OPEN=n] bench_index DIR BATCHES
 * prints: seconds=<init + first batch> samples_per_s=<x> rss_kib=<VmHWM> samples=<n> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/loader.h"

static long peak_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) sscanf(line + 6, "%ld", &v);
    if (f) fclose(f);
    return v;
}

int main(int argc, char **argv) {
    char *end = NULL;
    long n_batches = argc == 3 ? strtol(argv[2], &end, 10) : -1;
    if (argc != 3 || *end || n_batches < 0) {
        fprintf(stderr, "usage: bench_index DIR BATCHES\n");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tw_loader_opts o;
    tw_loader_opts_default(&o);
    o.dir = argv[1];
    o.split = "train";
    o.global_batch = 64;
    o.prefetch = 1;
    const char *mo = getenv("MAX_OPEN");   /* the loader's open-shard bound (default 64) */
    if (mo) o.max_open = (int)strtol(mo, NULL, 10);
    tw_err err = {0};
    tw_loader *ld;
    const tw_batch *b;
    if (tw_loader_init(&ld, &o, &err) || tw_loader_next(ld, &b, &err)) {
        fprintf(stderr, "bench_index: %s\n", err.msg);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double init_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    for (long k = 0; k < n_batches; k++)
        if (tw_loader_next(ld, &b, &err)) {
            fprintf(stderr, "bench_index: %s\n", err.msg);
            return 1;
        }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double read_s = (double)(t0.tv_sec - t1.tv_sec) + 1e-9 * (double)(t0.tv_nsec - t1.tv_nsec);
    printf("seconds=%.4f samples_per_s=%.1f rss_kib=%ld samples=%lld\n", init_s,
           n_batches ? (double)n_batches * (double)o.global_batch / read_s : 0.0, peak_rss_kib(),
           (long long)tw_loader_n_samples(ld));
    tw_loader_free(ld);
    return 0;
}
