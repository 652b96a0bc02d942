/* The augmentations of augment.h. Each transform draws from its own Philox stream
 * (seed; epoch, sample, view | transform << 8), and draws its decision and its parameters whether
 * or not it is applied, so changing one probability never shifts another transform's draws.
 * Geometry (crop, flips, rot90) is one inverse mapping per output pixel with bilinear sampling
 * (align_corners=False, as torchvision's resize); the radiometric transforms follow in place. */
#include "data/augment.h"

#include <math.h>
#include <stddef.h>

#include "core/log.h"
#include "core/rng.h"

enum { AUG_CROP, AUG_FLIP, AUG_ROT, AUG_JITTER, AUG_BLUR, AUG_NOISE, AUG_SPECKLE, AUG_DROP };

static void stream(tw_rng *r, uint64_t seed, uint32_t epoch, uint32_t sample, uint32_t view,
                   uint32_t transform) {
    tw_rng_init(r, seed, epoch, sample, view | transform << 8);
}

size_t tw_augment_scratch_floats(int s) { return (size_t)3 * s * s; }

/* torchvision RandomResizedCrop.get_params: ten tries at a box of area fraction U(min, 1) and
 * log-uniform aspect ratio in [3/4, 4/3]; otherwise the whole image. */
static void crop_box(int *top, int *left, int *ch, int *cw, tw_rng *r, int h, int w, float min_scale) {
    for (int attempt = 0; attempt < 10; attempt++) {
        float area = (float)h * w * (min_scale + (1.0f - min_scale) * tw_rng_uniform(r));
        float lr = logf(3.0f / 4.0f) + (logf(4.0f / 3.0f) - logf(3.0f / 4.0f)) * tw_rng_uniform(r);
        float ratio = expf(lr);
        int bw = (int)lrintf(sqrtf(area * ratio)), bh = (int)lrintf(sqrtf(area / ratio));
        if (bw > 0 && bw <= w && bh > 0 && bh <= h) {
            *top = (int)tw_rng_below(r, (uint32_t)(h - bh + 1));
            *left = (int)tw_rng_below(r, (uint32_t)(w - bw + 1));
            *ch = bh;
            *cw = bw;
            return;
        }
    }
    *top = 0; *left = 0; *ch = h; *cw = w;
}

/* out [c, s, s] from in through crop box, flips and rotation by k quarter turns. */
static void geometry(float *out, const float *in, int c, int h, int w, int s, int top, int left,
                     int ch, int cw, int hflip, int vflip, int k) {
    for (int y = 0; y < s; y++) {
        for (int x = 0; x < s; x++) {
            /* Undo the rotation, then the flips, to find the pixel (u, v) of the cropped grid. */
            int u, v;
            switch (k) {
            case 1: u = x; v = s - 1 - y; break;
            case 2: u = s - 1 - y; v = s - 1 - x; break;
            case 3: u = s - 1 - x; v = y; break;
            default: u = y; v = x; break;
            }
            if (vflip) u = s - 1 - u;
            if (hflip) v = s - 1 - v;
            float sy = top + (u + 0.5f) * ch / s - 0.5f, sx = left + (v + 0.5f) * cw / s - 0.5f;
            sy = sy < 0 ? 0 : sy > h - 1 ? (float)(h - 1) : sy;
            sx = sx < 0 ? 0 : sx > w - 1 ? (float)(w - 1) : sx;
            int y0 = (int)sy, x0 = (int)sx;
            int y1 = y0 + 1 < h ? y0 + 1 : y0, x1 = x0 + 1 < w ? x0 + 1 : x0;
            float fy = sy - y0, fx = sx - x0;
            for (int b = 0; b < c; b++) {
                const float *p = in + (size_t)b * h * w;
                float top_ = p[y0 * w + x0] + fx * (p[y0 * w + x1] - p[y0 * w + x0]);
                float bot = p[y1 * w + x0] + fx * (p[y1 * w + x1] - p[y1 * w + x0]);
                out[((size_t)b * s + y) * s + x] = top_ + fy * (bot - top_);
            }
        }
    }
}

/* Reflect index i into [0, n) (torchvision's gaussian_blur pads with "reflect"). */
static int reflect(int i, int n) {
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

/* Separable Gaussian blur of every band of x [c, s, s], kernel radius ceil(3 sigma). */
static void blur(float *x, float *tmp, float *kern, int c, int s, float sigma) {
    int rad = (int)ceilf(3.0f * sigma);
    if (rad > s - 1) rad = s - 1;
    float sum = 0;
    for (int i = -rad; i <= rad; i++) sum += kern[i + rad] = expf(-0.5f * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * rad; i++) kern[i] /= sum;
    for (int b = 0; b < c; b++) {
        float *p = x + (size_t)b * s * s;
        for (int y = 0; y < s; y++)
            for (int xx = 0; xx < s; xx++) {
                float a = 0;
                for (int i = -rad; i <= rad; i++) a += kern[i + rad] * p[y * s + reflect(xx + i, s)];
                tmp[y * s + xx] = a;
            }
        for (int y = 0; y < s; y++)
            for (int xx = 0; xx < s; xx++) {
                float a = 0;
                for (int i = -rad; i <= rad; i++) a += kern[i + rad] * tmp[reflect(y + i, s) * s + xx];
                p[y * s + xx] = a;
            }
    }
}

/* The geometric draws of one view: crop box, flips, quarter turns (from p's crop_min_scale and
 * q's crop, flip, rot90 alone, never from the channel count). */
typedef struct geo { int top, left, ch, cw, hflip, vflip, k; } geo;

static geo draw_geometry(const tw_aug_params *p, const tw_aug_view_probs *q, int h, int w, int s, uint64_t seed,
                         uint32_t epoch, uint32_t sample, uint32_t view) {
    tw_rng r;
    geo g = {(h - s) / 2, (w - s) / 2, s, s, 0, 0, 0};
    stream(&r, seed, epoch, sample, view, AUG_CROP);
    int do_crop = tw_rng_uniform(&r) < q->crop;
    if (do_crop) crop_box(&g.top, &g.left, &g.ch, &g.cw, &r, h, w, p->crop_min_scale);
    stream(&r, seed, epoch, sample, view, AUG_FLIP);
    g.hflip = tw_rng_uniform(&r) < q->flip;
    g.vflip = tw_rng_uniform(&r) < q->flip;
    stream(&r, seed, epoch, sample, view, AUG_ROT);
    int rot = tw_rng_uniform(&r) < q->rot90;
    int k = 1 + (int)tw_rng_below(&r, 3);   /* a quarter, half or three-quarter turn */
    g.k = rot ? k : 0;
    return g;
}

/* The radiometric transforms of out [c, s, s], in place; tag = view | source << 16 picks the
 * streams (source 0 is what tw_augment_view uses). */
static void photometric(float *out, float *scratch, int c, int s, const tw_aug_params *p, const tw_aug_view_probs *q,
                        uint64_t seed, uint32_t epoch, uint32_t sample, uint32_t tag) {
    uint32_t view = tag;
    size_t plane = (size_t)s * s;
    tw_rng r;

    /* Per-band brightness and contrast: x' = c (x - mean) + mean + b (ColorJitter per band). */
    stream(&r, seed, epoch, sample, view, AUG_JITTER);
    if (tw_rng_uniform(&r) < q->jitter) {
        for (int b = 0; b < c; b++) {
            float bright = p->jitter_brightness * (2.0f * tw_rng_uniform(&r) - 1.0f);
            float contrast = 1.0f + p->jitter_contrast * (2.0f * tw_rng_uniform(&r) - 1.0f);
            float *x = out + b * plane;
            double mean = 0;
            for (size_t i = 0; i < plane; i++) mean += x[i];
            float m = (float)(mean / plane);
            for (size_t i = 0; i < plane; i++) x[i] = contrast * (x[i] - m) + m + bright;
        }
    }

    stream(&r, seed, epoch, sample, view, AUG_BLUR);
    int do_blur = tw_rng_uniform(&r) < q->blur;
    float sigma = p->blur_sigma_min + (p->blur_sigma_max - p->blur_sigma_min) * tw_rng_uniform(&r);
    if (do_blur && sigma > 0) blur(out, scratch, scratch + plane, c, s, sigma);

    stream(&r, seed, epoch, sample, view, AUG_NOISE);
    if (tw_rng_uniform(&r) < q->noise)
        for (size_t i = 0; i < c * plane; i++) out[i] += p->noise_std * tw_rng_normal(&r);

    /* Speckle: intensity times G ~ Gamma(L, 1/L) (the mean of L unit exponentials), i.e. an
     * additive 10 log10(G) dB, divided by the band's dB per normalised unit. */
    stream(&r, seed, epoch, sample, view, AUG_SPECKLE);
    if (tw_rng_uniform(&r) < q->speckle && p->speckle_looks > 0) {
        int looks = p->speckle_looks;
        for (int b = 0; b < c; b++) {
            float scale = 10.0f / (p->db_per_unit ? p->db_per_unit[b] : 1.0f);
            float *x = out + b * plane;
            for (size_t i = 0; i < plane; i++) {
                float g = 0;
                for (int l = 0; l < looks; l++) g -= logf(1.0f - tw_rng_uniform(&r));
                x[i] += scale * log10f(g / looks);
            }
        }
    }

    /* Band dropout: a fraction of the bands (at least one, never all) set to their mean, 0. */
    stream(&r, seed, epoch, sample, view, AUG_DROP);
    if (tw_rng_uniform(&r) < q->band_dropout && c > 1) {
        int n_drop = (int)lrintf(p->band_dropout_frac * c);
        if (n_drop < 1) n_drop = 1;
        if (n_drop > c - 1) n_drop = c - 1;
        /* A partial Fisher-Yates shuffle picks n_drop distinct bands. */
        int order[64];
        TW_ASSERT(c <= 64);
        for (int b = 0; b < c; b++) order[b] = b;
        for (int i = 0; i < n_drop; i++) {
            int j = i + (int)tw_rng_below(&r, (uint32_t)(c - i));
            int t = order[i]; order[i] = order[j]; order[j] = t;
            float *x = out + order[i] * plane;
            for (size_t e = 0; e < plane; e++) x[e] = 0.0f;
        }
    }
}

void tw_augment_view(float *out, float *scratch, const float *in, int c, int h, int w, int s,
                     const tw_aug_params *p, uint64_t seed, uint32_t epoch, uint32_t sample,
                     uint32_t view) {
    TW_ASSERT(view < 4 && s <= h && s <= w && c > 0);
    const tw_aug_view_probs *q = &p->view[view % 2];
    geo g = draw_geometry(p, q, h, w, s, seed, epoch, sample, view);
    geometry(out, in, c, h, w, s, g.top, g.left, g.ch, g.cw, g.hflip, g.vflip, g.k);
    photometric(out, scratch, c, s, p, q, seed, epoch, sample, view);
}

void tw_augment_pair(float *out_s1, float *out_s2, float *scratch, const float *in_s1, int c_s1, const float *in_s2,
                     int c_s2, int h, int w, int s, const tw_aug_params *p_s1, const tw_aug_params *p_s2,
                     uint64_t seed, uint32_t epoch, uint32_t sample, uint32_t view) {
    TW_ASSERT(view < 2 && s <= h && s <= w && (in_s1 || in_s2));
    TW_ASSERT((!in_s1 || (c_s1 > 0 && out_s1)) && (!in_s2 || (c_s2 > 0 && out_s2)));
    const tw_aug_params *pg = in_s2 ? p_s2 : p_s1;
    geo g = draw_geometry(pg, &pg->view[view], h, w, s, seed, epoch, sample, view);
    if (in_s2) {
        geometry(out_s2, in_s2, c_s2, h, w, s, g.top, g.left, g.ch, g.cw, g.hflip, g.vflip, g.k);
        photometric(out_s2, scratch, c_s2, s, p_s2, &p_s2->view[view], seed, epoch, sample, view);
    }
    if (in_s1) {
        geometry(out_s1, in_s1, c_s1, h, w, s, g.top, g.left, g.ch, g.cw, g.hflip, g.vflip, g.k);
        photometric(out_s1, scratch, c_s1, s, p_s1, &p_s1->view[view], seed, epoch, sample,
                    view | (uint32_t)(in_s2 != NULL) << 16);
    }
}
