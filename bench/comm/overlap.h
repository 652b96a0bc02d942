/* What bench/bt_step and bench/finetune print about communication on more than one rank: the
 * share of a step the host spent waiting for the gradient buckets, and the overlap achieved (the
 * part of the buckets' all-reduce time that backward hid). */
#ifndef TW_BENCH_OVERLAP_H
#define TW_BENCH_OVERLAP_H

#include "dist/buckets.h"

/* The buckets' all-reduce alone: started at once and waited for, after a barrier; the median of
 * reps tries, in seconds, the same on every rank (the slowest rank's). Clobbers the buffer. */
double tw_bench_comm_alone_s(tw_comm *c, tw_buckets *bk, int reps);
/* Rank 0 prints: # comm <name> ranks= buckets= bucket_kib= step_ms= wait_ms= wait_share= comm_ms=
 * overlap=, where wait_share = wait / step and overlap = 1 - wait / comm (0 when comm is 0). */
void tw_bench_overlap_print(tw_comm *c, const char *name, const tw_buckets *bk, int bucket_kib, double step_s,
                            double wait_s, double comm_s);

#endif
