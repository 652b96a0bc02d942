/* Philox4x32-10 and the draws built on it (see rng.h). Constants from Random123. */
#include "core/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void tw_philox4x32(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void tw_rng_init(tw_rng *r, uint64_t seed, uint32_t a, uint32_t b, uint32_t c) {
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32);
    r->ctr[0] = a; r->ctr[1] = b; r->ctr[2] = c; r->ctr[3] = 0;
    r->n_buffered = 0;
}

uint32_t tw_rng_u32(tw_rng *r) {
    if (r->n_buffered == 0) {
        tw_philox4x32(r->buf, r->ctr, r->key);
        r->ctr[3]++;
        r->n_buffered = 4;
    }
    return r->buf[--r->n_buffered];
}

float tw_rng_uniform(tw_rng *r) { return (float)(tw_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

uint32_t tw_rng_below(tw_rng *r, uint32_t n) {
    /* Reject the top partial range so every value is equally likely. */
    uint32_t limit = UINT32_MAX - UINT32_MAX % n;
    uint32_t x;
    do x = tw_rng_u32(r); while (x >= limit);
    return x % n;
}

float tw_rng_normal(tw_rng *r) {
    float u1 = ((float)(tw_rng_u32(r) >> 8) + 1.0f) * (1.0f / 16777217.0f); /* (0, 1] */
    float u2 = tw_rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}
