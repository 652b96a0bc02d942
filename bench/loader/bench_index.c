/* bench/loader, start-up at scale: the loader's init (list, peek every shard, the per-shard index)
 * and its first batch over a directory of many small shards; prints the seconds and the peak
 * resident memory. bench_index.py makes the shards and runs the h5py + PyTorch peer.
 * usage: bench_index DIR    prints: seconds=<init + first batch> rss_kib=<VmHWM> samples=<n> */
#include <stdio.h>
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
    if (argc != 2) {
        fprintf(stderr, "usage: bench_index DIR\n");
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
    tw_err err = {0};
    tw_loader *ld;
    const tw_batch *b;
    if (tw_loader_init(&ld, &o, &err) || tw_loader_next(ld, &b, &err)) {
        fprintf(stderr, "bench_index: %s\n", err.msg);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("seconds=%.4f rss_kib=%ld samples=%lld\n", (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
           peak_rss_kib(), (long long)tw_loader_n_samples(ld));
    tw_loader_free(ld);
    return 0;
}
