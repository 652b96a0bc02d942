/* One synthetic sample (synth.h, docs/synth.md): a warped Voronoi land-cover map, per-class S2
 * spectra and S1 backscatter with a shared texture field, sensor noise and L-look speckle,
 * optional clouds and shadows on S2. Writing whole splits to shards is in synth_write.c. */
#include "data/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/labels.h"
#include "data/shard.h"

const char *const tw_synth_split_names[TW_SYNTH_N_SPLITS] = {"train", "val", "test", "clouds"};

/* Base S2 spectra, reflectance x 10000, bands B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12;
 * shapes after typical L2A signatures (water dark and falling, vegetation with the red edge,
 * soil rising into SWIR, built-up flat). */
enum { SP_WATER, SP_BROAD, SP_CONIF, SP_GRASS, SP_ARABLE, SP_URBAN, SP_SAND, SP_WETLAND, SP_MOORS, N_SPECTRA };
static const float spectra[N_SPECTRA][TW_S2_BANDS] = {
    {1200, 900, 700, 500, 400, 300, 250, 200, 180, 100, 80, 50},
    {300, 400, 700, 400, 1000, 2800, 3300, 3500, 3600, 3600, 1800, 800},
    {250, 300, 500, 300, 700, 1800, 2100, 2300, 2400, 2400, 1200, 500},
    {400, 500, 900, 700, 1300, 2500, 2900, 3100, 3200, 3100, 2300, 1300},
    {700, 900, 1200, 1400, 1700, 2100, 2300, 2500, 2600, 2500, 2800, 2100},
    {1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900, 1950, 1900, 2200, 2000},
    {2000, 2300, 2700, 3100, 3300, 3400, 3500, 3600, 3700, 3600, 4200, 3800},
    {500, 600, 800, 700, 1000, 1700, 2000, 2100, 2100, 2000, 1300, 700},
    {500, 600, 800, 800, 1100, 1800, 2000, 2200, 2300, 2200, 2000, 1200},
};

/* Per class: S2 spectrum and gain, S1 VV and VH in dB, texture amplitude, prior weight.
 * S2 twins (same spectrum and gain, told apart by S1 only): 0/1, 8/10, 15/16, 17/18.
 * S1 twins (same backscatter, told apart by S2 only): 2/4, 9/13, 11/14. */
typedef struct { int spectrum; float gain, vv, vh, texture, prior; } class_model;
static const class_model classes[TW_N_CLASSES] = {
    {SP_URBAN, 1.00f, -4.0f, -11.0f, 0.15f, 4},    /* 0 Urban fabric */
    {SP_URBAN, 1.00f, 1.0f, -7.0f, 0.15f, 2},      /* 1 Industrial or commercial units */
    {SP_ARABLE, 1.00f, -11.0f, -18.0f, 0.10f, 8},  /* 2 Arable land */
    {SP_ARABLE, 0.75f, -8.5f, -15.0f, 0.12f, 3},   /* 3 Permanent crops */
    {SP_GRASS, 1.00f, -11.0f, -18.0f, 0.06f, 8},   /* 4 Pastures */
    {SP_ARABLE, 1.30f, -9.5f, -16.5f, 0.20f, 5},   /* 5 Complex cultivation patterns */
    {SP_GRASS, 0.75f, -9.0f, -16.0f, 0.15f, 5},    /* 6 Agriculture with natural vegetation */
    {SP_GRASS, 1.30f, -7.5f, -14.0f, 0.12f, 2},    /* 7 Agro-forestry areas */
    {SP_BROAD, 1.00f, -8.0f, -13.5f, 0.08f, 7},    /* 8 Broad-leaved forest */
    {SP_CONIF, 1.00f, -7.0f, -12.5f, 0.08f, 8},    /* 9 Coniferous forest */
    {SP_BROAD, 1.00f, -5.5f, -10.5f, 0.08f, 8},    /* 10 Mixed forest */
    {SP_MOORS, 1.00f, -13.0f, -21.0f, 0.10f, 3},   /* 11 Natural grassland, sparsely vegetated */
    {SP_MOORS, 0.75f, -10.0f, -17.5f, 0.10f, 3},   /* 12 Moors, heathland, sclerophyllous */
    {SP_BROAD, 0.75f, -7.0f, -12.5f, 0.12f, 5},    /* 13 Transitional woodland, shrub */
    {SP_SAND, 1.00f, -13.0f, -21.0f, 0.05f, 1},    /* 14 Beaches, dunes, sands */
    {SP_WETLAND, 1.00f, -12.0f, -20.0f, 0.10f, 2}, /* 15 Inland wetlands */
    {SP_WETLAND, 1.00f, -7.0f, -17.0f, 0.10f, 1},  /* 16 Coastal wetlands */
    {SP_WATER, 1.00f, -20.0f, -27.0f, 0.03f, 5},   /* 17 Inland waters */
    {SP_WATER, 1.00f, -14.0f, -23.0f, 0.03f, 4},   /* 18 Marine waters */
};

/* A cloud: bright, nearly flat, dimmer in SWIR (L2A cloud signature). */
static const float cloud_spectrum[TW_S2_BANDS] = {6500, 6800, 7000, 7200, 7200, 7100, 7000, 6900, 6800, 4000, 4500, 3500};
#define SPECKLE_LOOKS 4      /* GRD equivalent number of looks, about 4.4 for Sentinel-1 IW */
#define S2_NOISE_REL 0.02f   /* sensor noise: relative and absolute, reflectance x 10000 */
#define S2_NOISE_ABS 20.0f
#define SHADOW_DIM 0.35f
#define MAX_REGIONS 6
#define NOISE_GRID 8         /* value-noise lattice cells per side, +1 points */

/* Philox streams of one sample, so that each part draws independently. */
enum { ST_LAYOUT = 1, ST_FIELDS, ST_S2NOISE, ST_SPECKLE, ST_CLOUD };

/* Smooth value noise in [-1, 1]: a (G+1)^2 lattice of uniforms, bilinearly interpolated. */
typedef struct { float v[NOISE_GRID + 1][NOISE_GRID + 1]; int g; } field;

static void field_init(field *f, tw_rng *r, int g) {
    f->g = g;
    for (int i = 0; i <= g; i++)
        for (int j = 0; j <= g; j++) f->v[i][j] = 2.0f * tw_rng_uniform(r) - 1.0f;
}

static float field_at(const field *f, float y, float x) {   /* y, x in [0, 1] */
    float fy = y * f->g, fx = x * f->g;
    int i = (int)fy, j = (int)fx;
    if (i >= f->g) i = f->g - 1;
    if (j >= f->g) j = f->g - 1;
    float ty = fy - i, tx = fx - j;
    return (1 - ty) * ((1 - tx) * f->v[i][j] + tx * f->v[i][j + 1]) + ty * ((1 - tx) * f->v[i + 1][j] + tx * f->v[i + 1][j + 1]);
}

static int draw_class(tw_rng *r) {
    float total = 0;
    for (int c = 0; c < TW_N_CLASSES; c++) total += classes[c].prior;
    float u = tw_rng_uniform(r) * total;
    for (int c = 0; c < TW_N_CLASSES; c++) {
        if (u < classes[c].prior) return c;
        u -= classes[c].prior;
    }
    return TW_N_CLASSES - 1;
}

/* Gamma(L, 1/L) with integer L: the mean of L unit exponentials (multiplicative speckle). */
static float speckle(tw_rng *r) {
    float prod = 1.0f;
    for (int k = 0; k < SPECKLE_LOOKS; k++) prod *= 1.0f - tw_rng_uniform(r);   /* in (0, 1] */
    return -logf(prod) / SPECKLE_LOOKS;
}

static uint16_t to_u16(float x) { return x <= 0 ? 0 : x >= 65535.0f ? 65535 : (uint16_t)lrintf(x); }

tw_status tw_synth_sample(uint16_t *s2, float *s1, uint8_t *labels, float *cover, uint8_t *flags,
                          uint64_t seed, int split, int64_t index, int h, int w, int cloudy, tw_err *err) {
    if (h < 8 || w < 8 || h > 4096 || w > 4096) return tw_err_set(err, TW_E_RANGE, "synth: patch size %dx%d, want 8..4096", h, w);
    size_t n_px = (size_t)h * w;
    uint8_t *map = malloc(n_px);
    if (!map) return tw_err_set(err, TW_E_NOMEM, "synth: class map %dx%d", h, w);
    uint32_t lo = (uint32_t)index, hi = (uint32_t)((uint64_t)index >> 32) ^ ((uint32_t)split << 28);
    tw_rng r;
    /* Layout: 1..MAX_REGIONS Voronoi seeds with classes, boundaries warped by smooth noise. */
    tw_rng_init(&r, seed, lo, hi, ST_LAYOUT);
    int n_regions = 1 + (int)tw_rng_below(&r, MAX_REGIONS);
    float sy[MAX_REGIONS], sx[MAX_REGIONS];
    int cls[MAX_REGIONS];
    for (int k = 0; k < n_regions; k++) {
        sy[k] = tw_rng_uniform(&r);
        sx[k] = tw_rng_uniform(&r);
        cls[k] = draw_class(&r);
    }
    field warp_y, warp_x, tex, cloud;
    tw_rng_init(&r, seed, lo, hi, ST_FIELDS);
    field_init(&warp_y, &r, 4);
    field_init(&warp_x, &r, 4);
    field_init(&tex, &r, NOISE_GRID);
    int count[TW_N_CLASSES] = {0};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float fy = (y + 0.5f) / h, fx = (x + 0.5f) / w;
            float py = fy + 0.12f * field_at(&warp_y, fy, fx), px = fx + 0.12f * field_at(&warp_x, fy, fx);
            int best = 0;
            float best_d = 1e30f;
            for (int k = 0; k < n_regions; k++) {
                float d = (py - sy[k]) * (py - sy[k]) + (px - sx[k]) * (px - sx[k]);
                if (d < best_d) { best_d = d; best = k; }
            }
            map[(size_t)y * w + x] = (uint8_t)cls[best];
            count[cls[best]]++;
        }
    for (int c = 0; c < TW_N_CLASSES; c++) {
        float share = (float)count[c] / (float)n_px;
        labels[c] = share >= TW_SYNTH_MIN_COVER;
        if (cover) cover[c] = share;
    }
    /* S2: class spectrum x gain x (1 + texture), plus noise. S1: class dB + texture in dB,
     * then speckle on the linear intensity. The texture field is shared: co-registered. */
    tw_rng noise, spk;
    tw_rng_init(&noise, seed, lo, hi, ST_S2NOISE);
    tw_rng_init(&spk, seed, lo, hi, ST_SPECKLE);
    for (size_t i = 0; i < n_px; i++) {
        const class_model *m = &classes[map[i]];
        float t = field_at(&tex, ((float)(i / w) + 0.5f) / h, ((float)(i % w) + 0.5f) / w);
        float g = m->gain * (1.0f + m->texture * t);
        for (int b = 0; b < TW_S2_BANDS; b++) {
            float v = spectra[m->spectrum][b] * g;
            v += (S2_NOISE_REL * v + S2_NOISE_ABS) * tw_rng_normal(&noise);
            s2[(size_t)b * n_px + i] = to_u16(v);
        }
        float db_t = 10.0f * m->texture * t;   /* texture in dB: +-1.5 dB at texture 0.15 */
        s1[i] = m->vv + db_t + 10.0f * log10f(speckle(&spk));
        s1[n_px + i] = m->vh + db_t + 10.0f * log10f(speckle(&spk));
    }
    *flags = 0;
    if (cloudy) {
        /* A smooth field thresholded to cover 5-40 % of the patch, at an opacity of 0.4-1 (thin
         * haze to thick cloud): BigEarthNet's cloud-and-shadow list holds mostly partly cloudy
         * patches, on which the seed's S2 model keeps most of its mAP (0.836 -> 0.778). Its
         * shadow is the same mask shifted by an eighth of the patch, dimming S2 where no cloud
         * lies over it. S1 sees through clouds and is left untouched. */
        tw_rng_init(&r, seed, lo, hi, ST_CLOUD);
        field_init(&cloud, &r, 3);
        float cover_target = 0.05f + 0.25f * tw_rng_uniform(&r);
        float opacity = 0.3f + 0.6f * tw_rng_uniform(&r);
        float thresh = 1.0f - 2.0f * cover_target;   /* the field is roughly uniform in [-1, 1] */
        int dy = h / 8, dx = w / 8;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                size_t i = (size_t)y * w + x;
                float c = field_at(&cloud, (y + 0.5f) / h, (x + 0.5f) / w) - thresh;
                float alpha = opacity * (c <= 0 ? 0 : c >= 0.3f ? 1 : c / 0.3f);
                int sy_ = y - dy, sx_ = x - dx;
                float shadow = 0;
                if (alpha == 0 && sy_ >= 0 && sx_ >= 0 &&
                    field_at(&cloud, (sy_ + 0.5f) / h, (sx_ + 0.5f) / w) - thresh > 0.15f)
                    shadow = 1;
                for (int b = 0; b < TW_S2_BANDS; b++) {
                    float v = s2[(size_t)b * n_px + i];
                    if (alpha > 0) v = (1 - alpha) * v + alpha * cloud_spectrum[b];
                    if (shadow > 0) v *= SHADOW_DIM;
                    s2[(size_t)b * n_px + i] = to_u16(v);
                }
            }
        *flags = TW_FLAG_CLOUD;
    }
    free(map);
    return TW_OK;
}
