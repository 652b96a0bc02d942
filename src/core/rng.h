/* Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11). A draw is a pure function of
 * (key, counter), so the augmentation of sample s in view v at epoch e is the same on any rank
 * count and after a resume: key = seed, counter = (epoch, sample, view, stream position). */
#ifndef TW_RNG_H
#define TW_RNG_H

#include <stdint.h>

typedef struct tw_rng {
    uint32_t key[2];
    uint32_t ctr[4];      /* ctr[3] advances as draws are taken */
    uint32_t buf[4];
    int n_buffered;       /* unread words left in buf */
} tw_rng;

/* One Philox block: out = philox(ctr, key). */
void tw_philox4x32(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);

/* A stream for (seed, a, b, c): e.g. (seed, epoch, sample, view). */
void tw_rng_init(tw_rng *r, uint64_t seed, uint32_t a, uint32_t b, uint32_t c);
uint32_t tw_rng_u32(tw_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float tw_rng_uniform(tw_rng *r);
/* Uniform integer in [0, n), unbiased (rejection). */
uint32_t tw_rng_below(tw_rng *r, uint32_t n);
/* Standard normal (Box-Muller). */
float tw_rng_normal(tw_rng *r);

#endif
