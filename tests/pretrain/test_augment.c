/* The EO augmentations (src/data/augment.c): each view a pure function of (seed, epoch, sample,
 * view); exact flips and quarter turns; the noise, speckle, jitter and band-dropout statistics
 * they promise; a blur that keeps a constant image constant; crops inside the image. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"

enum { C = 4, H = 40, S = 40 };
static int failures;

static void check(int cond, const char *what) {
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
    if (!cond) failures++;
}

/* Every transform off: the tests switch on the one they look at. */
static tw_aug_params none(void) {
    tw_aug_params p;
    memset(&p, 0, sizeof p);
    p.crop_min_scale = 0.2f;
    p.jitter_brightness = 0.4f;
    p.jitter_contrast = 0.4f;
    p.blur_sigma_min = 0.5f;
    p.blur_sigma_max = 2.0f;
    p.noise_std = 0.1f;
    p.speckle_looks = 4;
    p.band_dropout_frac = 0.5f;
    return p;
}

static void view(float *out, const float *in, const tw_aug_params *p, uint32_t epoch, uint32_t sample,
                 uint32_t v, int s) {
    float *scratch = malloc(tw_augment_scratch_floats(s) * sizeof(float));
    tw_augment_view(out, scratch, in, C, H, H, s, p, 42, epoch, sample, v);
    free(scratch);
}

int main(void) {
    size_t n = (size_t)C * H * H;
    float *in = malloc(n * sizeof(float)), *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    float *zero = calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) in[i] = sinf(0.37f * (float)i) + 0.01f * (float)(i % 97);

    /* Determinism and independence of the keys. */
    tw_aug_params all = none();
    for (int v = 0; v < 2; v++)
        all.view[v] = (tw_aug_view_probs){1, 0.5f, 0.5f, 0.8f, 1, 0.5f, 0.5f, 0.5f};
    view(a, in, &all, 3, 17, 0, 32);
    view(b, in, &all, 3, 17, 0, 32);
    check(!memcmp(a, b, (size_t)C * 32 * 32 * sizeof(float)), "same (seed, epoch, sample, view): the same view");
    view(b, in, &all, 3, 17, 1, 32);
    check(memcmp(a, b, (size_t)C * 32 * 32 * sizeof(float)) != 0, "the other view differs");
    view(b, in, &all, 4, 17, 0, 32);
    check(memcmp(a, b, (size_t)C * 32 * 32 * sizeof(float)) != 0, "the next epoch differs");

    /* Both flips (p = 1) without a crop: out[y][x] = in[S-1-y][S-1-x], exactly. */
    tw_aug_params p = none();
    p.view[0].flip = 1;
    view(a, in, &p, 0, 5, 0, S);
    int exact = 1;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                exact &= a[(c * S + y) * S + x] == in[(c * H + S - 1 - y) * H + S - 1 - x];
    check(exact, "horizontal + vertical flip is exact");

    /* A quarter turn (p = 1): one of the three rotations, exactly, never the identity. */
    p = none();
    p.view[0].rot90 = 1;
    int rotations_seen = 0;
    for (uint32_t sample = 0; sample < 12; sample++) {
        view(a, in, &p, 0, sample, 0, S);
        int match = 0;
        for (int k = 1; k <= 3; k++) {
            int ok = 1;
            for (int y = 0; y < S && ok; y++)
                for (int x = 0; x < S && ok; x++) {
                    int u = k == 1 ? x : k == 2 ? S - 1 - y : S - 1 - x;
                    int w = k == 1 ? S - 1 - y : k == 2 ? S - 1 - x : y;
                    ok = a[y * S + x] == in[u * H + w];
                }
            if (ok) match |= 1 << k;
        }
        rotations_seen |= match;
        if (!match) rotations_seen = -1000;
    }
    check(rotations_seen == (2 | 4 | 8), "rot90 gives exact quarter, half and three-quarter turns, each seen");

    /* Additive noise: mean 0, std noise_std. */
    p = none();
    p.view[1].noise = 1;
    view(a, zero, &p, 0, 1, 1, S);
    double m = 0, m2 = 0;
    for (size_t i = 0; i < n; i++) { m += a[i]; m2 += (double)a[i] * a[i]; }
    m /= n;
    double sd = sqrt(m2 / n - m * m);
    char what[160];
    snprintf(what, sizeof what, "noise: mean %.4f (want 0 +- 0.01), std %.4f (want 0.1 +- 5%%)", m, sd);
    check(fabs(m) < 0.01 && fabs(sd - 0.1) < 0.005, what);

    /* Speckle in dB: E[10 log10 G] for G ~ Gamma(4, 1/4) is 10/ln10 (psi(4) - ln 4) = -0.5655 dB. */
    p = none();
    p.view[0].speckle = 1;
    view(a, zero, &p, 0, 2, 0, S);
    m = 0;
    for (size_t i = 0; i < n; i++) m += a[i];
    m /= n;
    snprintf(what, sizeof what, "speckle (L = 4): mean %.4f dB (want -0.5655 +- 0.05)", m);
    check(fabs(m + 0.5655) < 0.05, what);
    float per_unit[C] = {2, 2, 2, 2};
    p.db_per_unit = per_unit;
    view(b, zero, &p, 0, 2, 0, S);
    int halved = 1;
    for (size_t i = 0; i < n; i++) halved &= fabsf(b[i] - 0.5f * a[i]) <= 1e-6f * (1 + fabsf(a[i]));
    check(halved, "speckle divides by the band's dB per normalised unit");

    /* Band dropout (frac 0.5 of 4): exactly two bands zero, the others untouched. */
    p = none();
    p.view[1].band_dropout = 1;
    view(a, in, &p, 0, 9, 1, S);
    int zeroed = 0, kept = 0;
    for (int c = 0; c < C; c++) {
        int all_zero = 1, same = 1;
        for (int i = 0; i < S * S; i++) {
            all_zero &= a[c * S * S + i] == 0.0f;
            same &= a[c * S * S + i] == in[c * H * H + i];
        }
        zeroed += all_zero;
        kept += same;
    }
    check(zeroed == 2 && kept == 2, "band dropout zeroes 2 of 4 bands and leaves the others");

    /* Jitter: per band x' = c (x - mean) + mean + b with c in [0.6, 1.4], b in [-0.4, 0.4]. */
    p = none();
    p.view[0].jitter = 1;
    view(a, in, &p, 0, 4, 0, S);
    int in_range = 1;
    for (int c = 0; c < C; c++) {
        double mi = 0, mo = 0, vi = 0, vo = 0;
        for (int i = 0; i < S * S; i++) { mi += in[c * H * H + i]; mo += a[c * S * S + i]; }
        mi /= S * S;
        mo /= S * S;
        for (int i = 0; i < S * S; i++) {
            vi += pow(in[c * H * H + i] - mi, 2);
            vo += pow(a[c * S * S + i] - mo, 2);
        }
        double contrast = sqrt(vo / vi), shift = mo - mi;
        in_range &= contrast >= 0.6 - 1e-4 && contrast <= 1.4 + 1e-4 && fabs(shift) <= 0.4 + 1e-4;
    }
    check(in_range, "jitter: per-band contrast in [0.6, 1.4] and shift in [-0.4, 0.4]");

    /* Blur keeps a constant image constant (normalised kernel, reflect padding). */
    p = none();
    p.view[0].blur = 1;
    for (size_t i = 0; i < n; i++) b[i] = 3.25f;
    view(a, b, &p, 0, 6, 0, S);
    int constant = 1;
    for (size_t i = 0; i < n; i++) constant &= fabsf(a[i] - 3.25f) < 1e-5f;
    check(constant, "blur of a constant image is the constant");

    /* Crops stay inside the image: a ramp's values stay in its range, and a crop zooms in. */
    p = none();
    p.view[0].crop = 1;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < H; x++) b[(c * H + y) * H + x] = (float)y;
    int inside = 1, zoomed = 0;
    for (uint32_t sample = 0; sample < 20; sample++) {
        view(a, b, &p, 1, sample, 0, 32);
        float lo = 1e9f, hi = -1e9f;
        for (int i = 0; i < 32 * 32; i++) { lo = fminf(lo, a[i]); hi = fmaxf(hi, a[i]); }
        inside &= lo >= 0 && hi <= H - 1;
        zoomed |= hi - lo < 0.7f * (H - 1);
    }
    check(inside && zoomed, "random resized crops stay inside the image and do zoom in");

    free(in); free(a); free(b); free(zero);
    printf("%s\n", failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
