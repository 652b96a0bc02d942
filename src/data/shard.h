/* The shard format (docs/shards.md): one HDF5 file `<split>-<NNNNN>.h5` per shard, one chunk per
 * sample. This header declares the writer (tmp file, renamed when complete), the validating
 * reader and the normalisation statistics; the loader and the converter build on them. Every
 * function here takes the process-wide HDF5 lock itself (the Debian HDF5 is not thread-safe). */
#ifndef TW_SHARD_H
#define TW_SHARD_H

#include <stdint.h>

#include "core/status.h"
#include "data/labels.h"

#define TW_SHARD_VERSION 2      /* written; version 1 shards (no time axis, georeference,
                                 * L1C product or unlabelled shards) are read as well */
#define TW_SHARD_NAME_BYTES 96  /* fixed-length, NUL-padded patch names */
#define TW_SHARD_MAX_TIMES 4    /* acquisitions per location on the time axis (SSL4EO-S12: 4) */
#define TW_SHARD_MAX_CRS 64     /* distinct CRSs in one shard (UTM zones: a shard spans few) */
#define TW_S2_BANDS 12          /* `s2`: L2A, BigEarthNet's and SSL4EO-S12 s2a's 12 bands */
#define TW_S1_BANDS 2
#define TW_S2C_BANDS 13         /* `s2c`: L1C, SSL4EO-S12 s2c's 13 bands (B10 included) */
#define TW_N_BANDS (TW_S2_BANDS + TW_S1_BANDS)  /* s2 bands then s1 bands, in stats arrays */
#define TW_N_STATS (TW_N_BANDS + TW_S2C_BANDS)  /* ... then the s2c bands (version 2) */

/* How the image datasets are compressed, chunk by chunk (HDF5 filters): none, deflate (zlib,
 * built into every HDF5), LZ4 (filter 32004) or Zstandard (32015), the last two when their
 * plugin is installed (HDF5_PLUGIN_PATH); deflate, LZ4 and zstd after HDF5's byte shuffle. */
typedef enum { TW_COMPRESS_NONE, TW_COMPRESS_DEFLATE, TW_COMPRESS_LZ4, TW_COMPRESS_ZSTD } tw_compress;
extern const char *const tw_compress_names[];   /* "none", "deflate", "lz4", "zstd" */
/* TW_OK when this process can write and read `c`; else a message naming the missing filter. */
tw_status tw_compress_check(tw_compress c, tw_err *err);

/* The image products a shard may hold (bits of tw_shard_layout.products). */
enum { TW_PROD_S2 = 1, TW_PROD_S1 = 2, TW_PROD_S2C = 4 };

enum { TW_FLAG_CLOUD = 1, TW_FLAG_SNOW = 2 };   /* bits of the `flags` dataset */

extern const char *const tw_shard_s2_bands[TW_S2_BANDS];   /* "B01", ..., "B8A", "B09", ... */
extern const char *const tw_shard_s1_bands[TW_S1_BANDS];   /* "VV", "VH" */
extern const char *const tw_shard_s2c_bands[TW_S2C_BANDS]; /* "B01", ..., "B09", "B10", "B11", ... */

/* What a shard holds (version 2): its patch size, the time axis (0: none, images [N,C,H,W];
 * T: images [N,T,C,H,W], a location's acquisitions with their dates), the image products
 * (TW_PROD_*), whether it carries labels and a georeference per patch. */
typedef struct tw_shard_layout {
    int h, w;
    int n_times;               /* 0, or 1..TW_SHARD_MAX_TIMES */
    int products;              /* TW_PROD_* bits, at least one */
    int has_labels;
    int has_georef;
    tw_compress compress;      /* the image datasets' filter (writing; not read back) */
} tw_shard_layout;

/* One sample as the writer takes it; the reader fills the same shapes. With a time axis, each
 * image holds the sample's n_times acquisitions one after another ([n_times, C, H, W]). */
typedef struct tw_shard_sample {
    const uint16_t *s2;        /* [12, H, W] reflectance x 10000 */
    const float *s1;           /* [2, H, W] backscatter in dB */
    const uint8_t *labels;     /* [19] multi-hot */
    const uint8_t *labels43;   /* [43] multi-hot, or NULL when the source has no 43-class labels */
    const char *name;          /* S2 patch name */
    const char *s1_name;       /* S1 patch name */
    uint8_t flags;             /* TW_FLAG_* */
    /* version 2, each used only where the layout has it */
    const uint16_t *s2c;       /* [13, H, W] L1C reflectance x 10000 */
    int n_times;               /* acquisitions present, 1..layout.n_times */
    const int32_t *s2_date, *s1_date, *s2c_date;   /* [n_times] YYYYMMDD, 0 unknown; NULL: all 0 */
    const char *crs_wkt;       /* the patch's CRS (WKT), NULL or "" for none */
    int epsg;                  /* its EPSG code, 0 when it has none */
    const double *transform;   /* [6] GDAL geotransform of the patch's top-left pixel */
} tw_shard_sample;

/* Per-band streaming moments (count, mean, sum of squared deviations): each shard stores its
 * own; tw_shard_moments_merge combines them (Chan, Golub, LeVeque 1979), so the statistics
 * need one pass and survive an interrupted, resumed conversion. Bands: s2, s1, s2c; a product
 * a shard does not hold has count 0. */
typedef struct tw_shard_moments {
    double count[TW_N_STATS];  /* pixels per band */
    double mean[TW_N_STATS];
    double m2[TW_N_STATS];
} tw_shard_moments;

void tw_shard_moments_merge(tw_shard_moments *acc, const tw_shard_moments *part);

/* Per-band normalisation: x' = (x - mean) / std; bands without pixels: mean 0, std 1. */
typedef struct tw_shard_norm {
    double mean[TW_N_STATS];
    double std[TW_N_STATS];
} tw_shard_norm;

tw_status tw_shard_norm_from_moments(tw_shard_norm *norm, const tw_shard_moments *m, tw_err *err);

/* ---- writing ---------------------------------------------------------------------------- */
typedef struct tw_shard_writer tw_shard_writer;

/* Creates `<path>.tmp`. source: "synth", "ben-v1", "ben-v2", "ssl4eo-s12", "scenes" (an
 * attribute, for people). tw_shard_writer_open: S2 and S1, labels, no time axis. */
tw_status tw_shard_writer_create(tw_shard_writer **out, const char *path, const char *split,
                                 const char *source, const tw_shard_layout *layout, tw_err *err);
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
 * s1_mean, s1_std, and s2c_mean, s2c_std where it holds s2c). */
tw_status tw_shard_write_norm(const char *path, const tw_shard_norm *norm, tw_err *err);

/* ---- reading ---------------------------------------------------------------------------- */
typedef struct tw_shard tw_shard;

/* Opens and validates (version 1 or 2): every dataset's presence, rank, shape, dtype and
 * per-sample chunking, the band and class names, the time axis (acquisition counts in range,
 * dates), the georeference (CRS table, indices). The message names the file and the dataset. */
tw_status tw_shard_open(tw_shard **out, const char *path, tw_err *err);
/* The same for a shard that passed tw_shard_open earlier in this process (a loader re-opening one
 * it closed): types, shapes and chunking checked again, names and per-sample values not. */
tw_status tw_shard_reopen(tw_shard **out, const char *path, tw_err *err);
void tw_shard_close(tw_shard *sh);

/* What a loader needs of every shard before it reads any: the attributes and the patch size,
 * without opening each dataset (tw_shard_open validates the rest when the shard is first read).
 * Cheap enough to run over thousands of shards at start-up; keeps no handle open. */
typedef struct tw_shard_info {
    int version;
    int64_t n;                 /* attribute n_samples */
    tw_shard_layout layout;    /* with h, w from the first image dataset */
    int has_labels43;
    int has_norm;
    tw_shard_norm norm;
} tw_shard_info;
tw_status tw_shard_peek(tw_shard_info *info, const char *path, tw_err *err);

int64_t tw_shard_n(const tw_shard *sh);
int tw_shard_h(const tw_shard *sh);
int tw_shard_w(const tw_shard *sh);
const char *tw_shard_path(const tw_shard *sh);
int tw_shard_has_labels43(const tw_shard *sh);
int tw_shard_version(const tw_shard *sh);
const tw_shard_layout *tw_shard_layout_of(const tw_shard *sh);   /* version 1: n_times 0, S2+S1, labels */
int64_t tw_shard_n_skipped(const tw_shard *sh);
const tw_shard_moments *tw_shard_moments_of(const tw_shard *sh);
/* The normalisation attributes; TW_E_MISSING when the conversion never finished. */
tw_status tw_shard_norm_get(const tw_shard *sh, tw_shard_norm *norm, tw_err *err);

/* Reads sample i (its first acquisition). Any output may be NULL. s2: [12,H,W], s1: [2,H,W],
 * labels: [19], labels43: [43] (zeros in an unlabelled shard), name and s1_name:
 * TW_SHARD_NAME_BYTES each, flags: 1. Asking for a product the shard lacks is an error. */
tw_status tw_shard_read(tw_shard *sh, int64_t i, uint16_t *s2, float *s1, uint8_t *labels,
                        uint8_t *labels43, char *name, char *s1_name, uint8_t *flags, tw_err *err);

/* Acquisition t of sample i: s2 [12,H,W], s2c [13,H,W], s1 [2,H,W]; any may be NULL. t must be
 * below the sample's acquisition count (tw_shard_read_geo). */
tw_status tw_shard_read_time(tw_shard *sh, int64_t i, int t, uint16_t *s2, uint16_t *s2c, float *s1, tw_err *err);

/* A sample's acquisitions and georeference. */
typedef struct tw_shard_geo {
    int n_times;                                  /* 1 without a time axis */
    int32_t s2_date[TW_SHARD_MAX_TIMES], s1_date[TW_SHARD_MAX_TIMES], s2c_date[TW_SHARD_MAX_TIMES];
    const char *crs_wkt;                          /* "" without a georeference; owned by the shard */
    int epsg;                                     /* 0 when none */
    double transform[6];
} tw_shard_geo;
tw_status tw_shard_read_geo(tw_shard *sh, int64_t i, tw_shard_geo *geo, tw_err *err);

/* Every sample's labels at once: labels [n, n_classes], n_classes 19 (`labels`) or 43
 * (`labels43`). */
tw_status tw_shard_read_labels(tw_shard *sh, uint8_t *labels, int n_classes, tw_err *err);

/* The shards of one split in a directory, sorted: `<split>-<NNNNN>.h5`. *paths is one
 * allocation (free it with free()); *n may be 0. */
tw_status tw_shard_list(char ***paths, int *n, const char *dir, const char *split, tw_err *err);

#endif
