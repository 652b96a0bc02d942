/* Communication figures of the step benchmarks (overlap.h). */
#include "overlap.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/log.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double tw_bench_comm_alone_s(tw_comm *c, tw_buckets *bk, int reps) {
    double *t = malloc((size_t)reps * sizeof *t);
    TW_ASSERT(t && reps > 0);
    for (int r = 0; r < reps; r++) {
        tw_comm_barrier(c);
        tw_buckets_begin(bk, 0);
        float dt = (float)tw_buckets_wait(bk);
        tw_comm_allreduce(c, &dt, 1, TW_F32, TW_REDUCE_MAX);
        t[r] = dt;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    double med = t[reps / 2];
    free(t);
    return med;
}

void tw_bench_overlap_print(tw_comm *c, const char *name, const tw_buckets *bk, int bucket_kib, double step_s,
                            double wait_s, double comm_s) {
    float w = (float)wait_s;
    tw_comm_allreduce(c, &w, 1, TW_F32, TW_REDUCE_MAX);   /* the slowest rank's wait */
    if (tw_comm_rank(c) != 0) return;
    double overlap = comm_s > 0 ? 1.0 - w / comm_s : 0.0;
    if (overlap < 0) overlap = 0;
    printf("# comm %s ranks=%d buckets=%d bucket_kib=%d step_ms=%.2f wait_ms=%.2f wait_share=%.3f comm_ms=%.2f "
           "overlap=%.3f\n", name, tw_comm_size(c), tw_buckets_count(bk), bucket_kib, 1e3 * step_s, 1e3 * w,
           step_s > 0 ? w / step_s : 0.0, 1e3 * comm_s, overlap);
}
