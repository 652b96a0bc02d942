/* data.augment_pair: tw_augment_pair gives the S1 and the S2 patch of a pair the same geometric
 * transform. Pattern images in which S1's bands equal two of S2's bands must come out equal
 * (bit for bit) for many (seed, epoch, sample, view), with any photometric setting on S2; S2's
 * output is tw_augment_view's; S1's radiometric draws differ from S2's; calls are deterministic. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"

#include "check.h"

#define C2 12
#define C1 2
#define HH 20
#define WW 24
#define S 16

static tw_aug_params params(int photometric) {
    tw_aug_params p;
    memset(&p, 0, sizeof p);
    for (int v = 0; v < 2; v++) {
        float q = photometric ? 0.8f : 0.0f;
        p.view[v] = (tw_aug_view_probs){.crop = 0.7f, .flip = 0.5f, .rot90 = 0.6f, .jitter = q, .blur = q,
                                        .noise = q, .speckle = 0.0f, .band_dropout = photometric ? 0.3f : 0.0f};
    }
    p.crop_min_scale = 0.3f;
    p.jitter_brightness = 0.4f;
    p.jitter_contrast = 0.4f;
    p.blur_sigma_min = 0.1f;
    p.blur_sigma_max = 1.5f;
    p.noise_std = 0.2f;
    p.speckle_looks = 4;
    p.band_dropout_frac = 0.2f;
    return p;
}

int main(void) {
    static float in2[C2 * HH * WW], in1[C1 * HH * WW], o2[C2 * S * S], o1[C1 * S * S], ref[C2 * S * S],
        again1[C1 * S * S], again2[C2 * S * S];
    float *scratch = malloc(tw_augment_scratch_floats(S) * sizeof(float));
    if (!scratch) return 1;
    /* Asymmetric patterns, so every flip, turn and crop shows. */
    for (int b = 0; b < C2; b++)
        for (int y = 0; y < HH; y++)
            for (int x = 0; x < WW; x++) in2[(b * HH + y) * WW + x] = (float)(y * 31 + x * x * 0.1 + b * 7 + (x > y));
    memcpy(in1, in2 + 3 * HH * WW, HH * WW * sizeof(float));            /* S1 VV = S2 band 3 */
    memcpy(in1 + HH * WW, in2 + 7 * HH * WW, HH * WW * sizeof(float));  /* S1 VH = S2 band 7 */
    tw_aug_params geo_only = params(0), photo = params(1);
    int n_cases = 0, n_moved = 0, n_indep = 0;
    for (uint64_t seed = 1; seed <= 40; seed++)
        for (uint32_t epoch = 0; epoch < 2; epoch++)
            for (uint32_t sample = 0; sample < 3; sample++)
                for (uint32_t view = 0; view < 2; view++) {
                    /* S2 with photometric transforms, S1 without: S1 is the pure geometry of S2's bands. */
                    tw_augment_pair(o1, o2, scratch, in1, C1, in2, C2, HH, WW, S, &geo_only, &photo, seed, epoch,
                                    sample, view);
                    tw_augment_view(ref, scratch, in2, C2, HH, WW, S, &geo_only, seed, epoch, sample, view);
                    CHECK(!memcmp(o1, ref + 3 * S * S, S * S * sizeof(float)) &&
                              !memcmp(o1 + S * S, ref + 7 * S * S, S * S * sizeof(float)),
                          "seed %llu epoch %u sample %u view %u: S1 is not S2's geometry", (unsigned long long)seed,
                          epoch, sample, view);
                    float centre = in2[(3 * HH + (HH - S) / 2) * WW + (WW - S) / 2];
                    n_moved += o1[0] != centre;
                    /* S2's output is tw_augment_view's. */
                    tw_augment_view(ref, scratch, in2, C2, HH, WW, S, &photo, seed, epoch, sample, view);
                    CHECK(!memcmp(o2, ref, sizeof o2), "seed %llu: S2 differs from tw_augment_view",
                          (unsigned long long)seed);
                    /* Both photometric: same call twice is bit-equal; S1's noise is not S2's. */
                    tw_augment_pair(o1, o2, scratch, in1, C1, in2, C2, HH, WW, S, &photo, &photo, seed, epoch,
                                    sample, view);
                    tw_augment_pair(again1, again2, scratch, in1, C1, in2, C2, HH, WW, S, &photo, &photo, seed,
                                    epoch, sample, view);
                    CHECK(!memcmp(o1, again1, sizeof o1) && !memcmp(o2, again2, sizeof o2), "not deterministic");
                    n_indep += memcmp(o1, o2 + 3 * S * S, S * S * sizeof(float)) != 0;
                    n_cases++;
                }
    /* S1 alone is tw_augment_view of S1. */
    tw_augment_pair(o1, NULL, scratch, in1, C1, NULL, 0, HH, WW, S, &photo, NULL, 9, 1, 2, 1);
    tw_augment_view(ref, scratch, in1, C1, HH, WW, S, &photo, 9, 1, 2, 1);
    CHECK(!memcmp(o1, ref, sizeof o1), "S1 alone differs from tw_augment_view");
    CHECK(n_moved > n_cases / 2, "only %d of %d views moved the patch: the geometry is not exercised", n_moved, n_cases);
    CHECK(n_indep > n_cases / 2, "S1's photometric draws equal S2's in %d of %d views", n_cases - n_indep, n_cases);
    free(scratch);
    if (check_n_fail) {
        fprintf(stderr, "test_augment_pair: %d checks failed\n", check_n_fail);
        return 1;
    }
    printf("test_augment_pair: ok (%d views: S1 = S2's geometry, S2 = tw_augment_view, deterministic, %d moved)\n",
           n_cases, n_moved);
    return 0;
}
