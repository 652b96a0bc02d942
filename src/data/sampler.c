/* The sampler (sampler.h): Fisher-Yates over Philox draws, rank slices, nested subsets. */
#include "data/sampler.h"

#include <math.h>
#include <stdlib.h>

#include "core/rng.h"

/* Philox stream tags, so the shuffle and the subset never share draws with each other or with
 * the augmentations (which use (epoch, sample, view)). */
#define STREAM_SHUFFLE 0x53485546u  /* "SHUF" */
#define STREAM_SUBSET 0x53554253u   /* "SUBS" */

tw_status tw_sampler_init(tw_sampler *s, int64_t n, int64_t global_batch, int rank, int world,
                          uint64_t seed, int shuffle, int drop_last, tw_err *err) {
    *s = (tw_sampler){0};
    if (world < 1 || rank < 0 || rank >= world)
        return tw_err_set(err, TW_E_RANGE, "sampler: rank %d of world %d", rank, world);
    if (global_batch < 1 || global_batch % world)
        return tw_err_set(err, TW_E_RANGE, "sampler: global batch %lld is not a positive multiple of %d ranks",
                          (long long)global_batch, world);
    if (n < 1) return tw_err_set(err, TW_E_RANGE, "sampler: no samples");
    if (n >= (int64_t)UINT32_MAX) return tw_err_set(err, TW_E_RANGE, "sampler: %lld samples, limit 2^32", (long long)n);
    s->steps_per_epoch = drop_last ? n / global_batch : (n + global_batch - 1) / global_batch;
    if (s->steps_per_epoch < 1)
        return tw_err_set(err, TW_E_RANGE, "sampler: %lld samples make no full global batch of %lld (drop-last)",
                          (long long)n, (long long)global_batch);
    s->perm = malloc((size_t)n * sizeof *s->perm);
    if (!s->perm) return tw_err_set(err, TW_E_NOMEM, "sampler: permutation of %lld", (long long)n);
    s->n = n;
    s->global_batch = global_batch;
    s->rank = rank;
    s->world = world;
    s->seed = seed;
    s->shuffle = shuffle;
    s->drop_last = drop_last;
    s->perm_epoch = -1;
    return TW_OK;
}

void tw_sampler_free(tw_sampler *s) {
    free(s->perm);
    *s = (tw_sampler){0};
}

static void draw_epoch(tw_sampler *s, int64_t epoch) {
    for (int64_t i = 0; i < s->n; i++) s->perm[i] = i;
    if (s->shuffle) {
        tw_rng r;
        tw_rng_init(&r, s->seed, (uint32_t)epoch, (uint32_t)((uint64_t)epoch >> 32), STREAM_SHUFFLE);
        for (int64_t i = s->n - 1; i > 0; i--) {
            int64_t j = tw_rng_below(&r, (uint32_t)(i + 1));
            int64_t t = s->perm[i];
            s->perm[i] = s->perm[j];
            s->perm[j] = t;
        }
    }
    s->perm_epoch = epoch;
}

int64_t tw_sampler_slice(tw_sampler *s, int64_t *out, int64_t epoch, int64_t step) {
    if (step < 0 || step >= s->steps_per_epoch || epoch < 0) return 0;
    if (s->perm_epoch != epoch) draw_epoch(s, epoch);
    int64_t lo = step * s->global_batch, m = s->n - lo < s->global_batch ? s->n - lo : s->global_batch;
    int64_t a = m * s->rank / s->world, b = m * (s->rank + 1) / s->world;
    for (int64_t i = a; i < b; i++) out[i - a] = s->perm[lo + i];
    return b - a;
}

typedef struct { uint64_t key; int64_t item; } keyed;

static int cmp_key(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* keys[0..n): the items of [0, n) in increasing Philox key order (ties, never seen in practice,
 * by item), the order both subset functions take their prefixes from. */
static keyed *sorted_keys(int64_t n, uint64_t seed) {
    keyed *keys = malloc((size_t)n * sizeof *keys);
    if (!keys) return NULL;
    for (int64_t i = 0; i < n; i++) {
        /* One Philox block per item: its key depends on (seed, item) only. */
        uint32_t ctr[4] = {(uint32_t)i, (uint32_t)((uint64_t)i >> 32), STREAM_SUBSET, 0}, key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, o[4];
        tw_philox4x32(o, ctr, key);
        keys[i].key = ((uint64_t)o[0] << 32) | o[1];
        keys[i].item = i;
    }
    qsort(keys, (size_t)n, sizeof *keys, cmp_key);
    return keys;
}

static tw_status check_fraction(int64_t n, double fraction, int64_t *m, tw_err *err) {
    if (n < 1) return tw_err_set(err, TW_E_RANGE, "label-fraction subset of an empty split");
    if (!(fraction > 0 && fraction <= 1))
        return tw_err_set(err, TW_E_RANGE, "label fraction %g is not in (0, 1]", fraction);
    *m = (int64_t)llround(fraction * (double)n);
    if (*m < 1) *m = 1;
    if (*m > n) *m = n;
    return TW_OK;
}

tw_status tw_sampler_subset(int64_t **out, int64_t *n_out, int64_t n, double fraction, uint64_t seed, tw_err *err) {
    return tw_sampler_subset_labeled(out, n_out, n, NULL, 0, fraction, seed, err);
}

tw_status tw_sampler_subset_labeled(int64_t **out, int64_t *n_out, int64_t n, const uint8_t *labels, int k,
                                    double fraction, uint64_t seed, tw_err *err) {
    *out = NULL;
    *n_out = 0;
    int64_t m;
    tw_status st = check_fraction(n, fraction, &m, err);
    if (st) return st;
    keyed *keys = sorted_keys(n, seed);
    uint8_t *covered = calloc(labels ? (size_t)k : 1, 1);
    int64_t *items = malloc(((size_t)m + (labels ? (size_t)k : 0)) * sizeof *items);
    if (!keys || !covered || !items) {
        free(keys);
        free(covered);
        free(items);
        return tw_err_set(err, TW_E_NOMEM, "label-fraction subset of %lld", (long long)n);
    }
    int64_t n_items = 0;
    for (; n_items < m; n_items++) {
        items[n_items] = keys[n_items].item;
        for (int j = 0; labels && j < k; j++) covered[j] |= labels[items[n_items] * k + j] != 0;
    }
    /* In key order, the first item past the prefix that is positive for a class the prefix
     * lacks is that class's smallest-key positive: adding exactly those keeps the subsets nested
     * (a larger prefix that has the class has that item too). */
    for (int64_t i = m; labels && i < n; i++) {
        const uint8_t *y = labels + keys[i].item * k;
        int adds = 0;
        for (int j = 0; j < k; j++) adds |= y[j] && !covered[j];
        if (!adds) continue;
        for (int j = 0; j < k; j++) covered[j] |= y[j] != 0;
        items[n_items++] = keys[i].item;
    }
    qsort(items, (size_t)n_items, sizeof *items, cmp_i64);
    free(keys);
    free(covered);
    *out = items;
    *n_out = n_items;
    return TW_OK;
}
