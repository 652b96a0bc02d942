/* The distributed sampler and label-fraction subsets (nested, keeping every class). An epoch's
 * order is a permutation drawn from (seed, epoch) alone; global batch b is positions
 * [b*B, (b+1)*B) of it and rank r takes the r-th contiguous slice, so every rank count sees the
 * same global batches. */
#ifndef TW_SAMPLER_H
#define TW_SAMPLER_H

#include <stdint.h>

#include "core/status.h"

typedef struct tw_sampler {
    int64_t n;                /* items in the epoch */
    int64_t global_batch;
    int rank, world;
    int shuffle, drop_last;
    uint64_t seed;
    int64_t steps_per_epoch;
    int64_t *perm;            /* [n] the order of perm_epoch */
    int64_t perm_epoch;       /* -1: none drawn yet */
} tw_sampler;

/* global_batch must be a multiple of world. drop_last = 0 keeps a last, smaller batch. */
tw_status tw_sampler_init(tw_sampler *s, int64_t n, int64_t global_batch, int rank, int world,
                          uint64_t seed, int shuffle, int drop_last, tw_err *err);
void tw_sampler_free(tw_sampler *s);

/* Writes this rank's items (positions in [0, n)) of global batch `step` of `epoch` to out
 * (room for global_batch / world) and returns how many. */
int64_t tw_sampler_slice(tw_sampler *s, int64_t *out, int64_t epoch, int64_t step);

/* The label-fraction subset of [0, n): each item gets a Philox key from (seed, item); the
 * round(fraction * n) smallest keys are kept, so a smaller fraction is a subset of a larger one.
 * *out (malloc'd, free it) lists the kept items in increasing order. */
tw_status tw_sampler_subset(int64_t **out, int64_t *n_out, int64_t n, double fraction, uint64_t seed, tw_err *err);

/* The same subset, then, for every class with a positive in the split but none in it, that
 * class's positive with the smallest key (labels: [n, k] multi-hot, row i = item i). Still
 * nested and a function of (labels, fraction, seed) alone, so the same for any rank count; it
 * holds at most round(fraction * n) + k items (docs/finetune.md, "Label fractions").
 * labels NULL: tw_sampler_subset. */
tw_status tw_sampler_subset_labeled(int64_t **out, int64_t *n_out, int64_t n, const uint8_t *labels, int k,
                                    double fraction, uint64_t seed, tw_err *err);

#endif
