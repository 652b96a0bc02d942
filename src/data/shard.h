/* The shard format (docs/shards.md): one HDF5 file `<split>-<NNNNN>.h5` per shard, one chunk per
 * sample. This header declares the writer (tmp file, renamed when complete), the validating
 * reader and the normalisation statistics; the loader and the converter build on them. Every
 * function here takes the process-wide HDF5 lock itself (the Debian HDF5 is not thread-safe). */
#ifndef TW_SHARD_H
#define TW_SHARD_H

#include <stdint.h>

#include "core/status.h"
#include "data/labels.h"

#define TW_SHARD_VERSION 1
#define TW_SHARD_NAME_BYTES 96  /* fixed-length, NUL-padded patch names */
#define TW_S2_BANDS 12
#define TW_S1_BANDS 2
#define TW_N_BANDS (TW_S2_BANDS + TW_S1_BANDS)  /* s2 bands then s1 bands, in stats arrays */

enum { TW_FLAG_CLOUD = 1, TW_FLAG_SNOW = 2 };   /* bits of the `flags` dataset */

extern const char *const tw_shard_s2_bands[TW_S2_BANDS];   /* "B01", ..., "B8A", "B09", ... */
extern const char *const tw_shard_s1_bands[TW_S1_BANDS];   /* "VV", "VH" */

/* One sample as the writer takes it; the reader fills the same shapes. */
typedef struct tw_shard_sample {
    const uint16_t *s2;        /* [12, H, W] reflectance x 10000 */
    const float *s1;           /* [2, H, W] backscatter in dB */
    const uint8_t *labels;     /* [19] multi-hot */
    const uint8_t *labels43;   /* [43] multi-hot, or NULL when the source has no 43-class labels */
    const char *name;          /* S2 patch name */
    const char *s1_name;       /* S1 patch name */
    uint8_t flags;             /* TW_FLAG_* */
} tw_shard_sample;

/* Per-band streaming moments (count, mean, sum of squared deviations): each shard stores its
 * own; tw_shard_moments_merge combines them (Chan, Golub, LeVeque 1979), so the statistics
 * need one pass and survive an interrupted, resumed conversion. */
typedef struct tw_shard_moments {
    double count;              /* pixels per band */
    double mean[TW_N_BANDS];
    double m2[TW_N_BANDS];
} tw_shard_moments;

void tw_shard_moments_merge(tw_shard_moments *acc, const tw_shard_moments *part);

/* Per-band normalisation: x' = (x - mean) / std. */
typedef struct tw_shard_norm {
    double mean[TW_N_BANDS];
    double std[TW_N_BANDS];
} tw_shard_norm;

tw_status tw_shard_norm_from_moments(tw_shard_norm *norm, const tw_shard_moments *m, tw_err *err);

/* ---- writing ---------------------------------------------------------------------------- */
typedef struct tw_shard_writer tw_shard_writer;

/* Creates `<path>.tmp`. source: "synth", "ben-v1", "ben-v2" (an attribute, for people). */
tw_status tw_shard_writer_open(tw_shard_writer **out, const char *path, const char *split,
                               const char *source, int h, int w, tw_err *err);
tw_status tw_shard_writer_add(tw_shard_writer *wr, const tw_shard_sample *s, tw_err *err);
/* Writes the attributes, closes and renames `<path>.tmp` to `<path>`; frees wr either way.
 * n_skipped: the patches meant for this shard that the converter left out. */
tw_status tw_shard_writer_close(tw_shard_writer *wr, int64_t n_skipped, tw_err *err);
/* Closes and deletes the temporary file. */
void tw_shard_writer_abort(tw_shard_writer *wr);
int64_t tw_shard_writer_count(const tw_shard_writer *wr);

/* Stores the dataset-wide normalisation in a complete shard (attributes s2_mean, s2_std,
 * s1_mean, s1_std). */
tw_status tw_shard_write_norm(const char *path, const tw_shard_norm *norm, tw_err *err);

/* ---- reading ---------------------------------------------------------------------------- */
typedef struct tw_shard tw_shard;

/* Opens and validates: version, every dataset's presence, rank, shape, dtype and per-sample
 * chunking, the band and class names. The message names the file and the dataset. */
tw_status tw_shard_open(tw_shard **out, const char *path, tw_err *err);
void tw_shard_close(tw_shard *sh);

int64_t tw_shard_n(const tw_shard *sh);
int tw_shard_h(const tw_shard *sh);
int tw_shard_w(const tw_shard *sh);
const char *tw_shard_path(const tw_shard *sh);
int tw_shard_has_labels43(const tw_shard *sh);
int64_t tw_shard_n_skipped(const tw_shard *sh);
const tw_shard_moments *tw_shard_moments_of(const tw_shard *sh);
/* The normalisation attributes; TW_E_MISSING when the conversion never finished. */
tw_status tw_shard_norm_get(const tw_shard *sh, tw_shard_norm *norm, tw_err *err);

/* Reads sample i. Any output may be NULL. s2: [12,H,W], s1: [2,H,W], labels: [19],
 * labels43: [43], name and s1_name: TW_SHARD_NAME_BYTES each, flags: 1. */
tw_status tw_shard_read(tw_shard *sh, int64_t i, uint16_t *s2, float *s1, uint8_t *labels,
                        uint8_t *labels43, char *name, char *s1_name, uint8_t *flags, tw_err *err);

/* Every sample's labels at once: labels [n, n_classes], n_classes 19 (`labels`) or 43
 * (`labels43`). */
tw_status tw_shard_read_labels(tw_shard *sh, uint8_t *labels, int n_classes, tw_err *err);

/* The shards of one split in a directory, sorted: `<split>-<NNNNN>.h5`. *paths is one
 * allocation (free it with free()); *n may be 0. */
tw_status tw_shard_list(char ***paths, int *n, const char *dir, const char *split, tw_err *err);

#endif
