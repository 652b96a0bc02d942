/* The synthetic BigEarthNet-like generator (docs/synth.md): procedural land-cover maps over the
 * 19 classes, S2 reflectances and S1 backscatter per class with texture, noise and speckle,
 * clouds and shadows on S2 only, multi-hot labels from coverage. A sample is a pure function of
 * (seed, split, index), so shards of any size and count are reproducible. */
#ifndef TW_SYNTH_H
#define TW_SYNTH_H

#include <stdint.h>

#include "core/status.h"

enum { TW_SYNTH_TRAIN, TW_SYNTH_VAL, TW_SYNTH_TEST, TW_SYNTH_CLOUDS, TW_SYNTH_N_SPLITS };
extern const char *const tw_synth_split_names[TW_SYNTH_N_SPLITS];   /* train, val, test, clouds */

/* Fractions of the patch that classify a pixel map: a class is a label when it covers at least
 * this share of the pixels. */
#define TW_SYNTH_MIN_COVER 0.05

/* One sample. s2: [12,h,w] u16, s1: [2,h,w] f32 dB, labels: [19], cover: [19] pixel shares or
 * NULL. Clouds and shadows are drawn when cloudy is 1 (the clouds split); flags gets
 * TW_FLAG_CLOUD then. */
tw_status tw_synth_sample(uint16_t *s2, float *s1, uint8_t *labels, float *cover, uint8_t *flags,
                          uint64_t seed, int split, int64_t index, int h, int w, int cloudy, tw_err *err);

typedef struct tw_synth_opts {
    const char *dir;                       /* output directory (created if missing) */
    uint64_t seed;
    int h, w;
    int64_t n[TW_SYNTH_N_SPLITS];          /* samples per split */
    int64_t shard_size;                    /* samples per shard */
    int threads;                           /* generator threads, >= 1 */
    int progress;                          /* print a progress line on stderr */
} tw_synth_opts;

/* Writes `<split>-<NNNNN>.h5` for every split with n > 0, then the training normalisation into
 * every shard. Existing complete shards are kept (a resumed run). */
tw_status tw_synth_write(const tw_synth_opts *o, tw_err *err);

/* A size x size scene at 10 m in UTM 33N (synth_scene.c): S2 (12 uint16 bands named as the
 * shards' bands, nodata 0) and S1 (VV, VH in dB) GeoTIFFs, each 256-pixel tile one sample of
 * (seed, train, tile index) without clouds. */
tw_status tw_synth_scene_write(const char *s2_path, const char *s1_path, int size, uint64_t seed, tw_err *err);

#endif
