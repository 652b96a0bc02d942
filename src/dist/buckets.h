/* The gradient all-reduce in buckets, overlapped with backward: the flat gradient span cut into
 * buckets of a fixed size from its end (the last layers, whose gradients backward produces
 * first), each started (tw_comm_iallreduce) as soon as the model says its range is final
 * (core/grad_ready.h), all waited for before the optimizer step. The result equals one flat
 * tw_comm_allreduce of the span: a sum is element-wise, so cutting it changes no element's sum
 * (bit for bit where MPI's reduction order per element is the same, as with 2 ranks). */
#ifndef TW_BUCKETS_H
#define TW_BUCKETS_H

#include <stddef.h>

#include "core/grad_ready.h"
#include "dist/comm.h"

typedef struct tw_buckets tw_buckets;

/* Buckets over buf [n_elems] f32 (backend memory), which sits at element offset `base` of the
 * gradient arena (the offsets tw_grad_ready speaks in). bucket_elems = 0: one bucket, the whole
 * span. Allocates once; a step allocates nothing. */
tw_status tw_buckets_create(tw_buckets **out, tw_comm *c, float *buf, size_t base, size_t n_elems,
                            size_t bucket_elems, tw_err *err);
void tw_buckets_free(tw_buckets *b);
int tw_buckets_count(const tw_buckets *b);

/* A new step: no bucket started. recording = 1: the step is being recorded (a CUDA graph,
 * backend.h): the hook only starts buckets and never tests them (a test asks the device whether
 * a collective finished, which a recording cannot answer); the waits order the stream. */
void tw_buckets_begin(tw_buckets *b, int recording);
/* The hook to give backward: its ready(lo) starts every bucket inside [lo, end) not yet started,
 * in order, and tests the pending ones (MPI's progress). Valid while b lives. */
tw_grad_ready tw_buckets_hook(tw_buckets *b);
/* Starts the buckets not started yet and waits for every one: buf holds the ranks' sum. Returns
 * the seconds the host spent here (the communication backward did not hide). */
double tw_buckets_wait(tw_buckets *b);

#endif
