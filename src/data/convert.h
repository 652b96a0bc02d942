/* The BigEarthNet converter behind `twinfuse convert` (docs/shards.md): lists the patches of a
 * v1.0 or v2.0 (reBEN) archive, assigns them to splits and shards, reads every raster through
 * GDAL on a pool of threads, writes the shards (resumable: complete shards are kept), then the
 * training normalisation; the summary counts patches per split and skips per reason. */
#ifndef TW_CONVERT_H
#define TW_CONVERT_H

#include <stdint.h>

#include "core/reducer.h"
#include "core/status.h"
#include "data/scene.h"
#include "data/shard.h"

#define TW_CONVERT_SIZE 120      /* BigEarthNet patches: 120 x 120 at 10 m */
#define TW_SSL4EO_SIZE 264       /* SSL4EO-S12 patches: 264 x 264 at 10 m */

enum { TW_LAYOUT_V1 = 1, TW_LAYOUT_V2 = 2, TW_LAYOUT_SSL4EO = 3, TW_LAYOUT_SCENES = 4 };
#define TW_CONVERT_MAX_SPLITS 8

/* Why a patch was left out. */
#define TW_SKIP_LIST(X)                                                     \
    X(TW_SKIP_SNOW, "seasonal snow (excluded by default)")                  \
    X(TW_SKIP_NOT_LISTED, "in no split list")                               \
    X(TW_SKIP_NO_S2, "S1 patch without its S2 partner")                     \
    X(TW_SKIP_NO_S1, "S2 patch without an S1 partner")                      \
    X(TW_SKIP_LABEL, "unknown or missing labels")                           \
    X(TW_SKIP_RASTER, "missing or malformed band file")                     \
    X(TW_SKIP_NONFINITE, "non-finite pixels")                               \
    X(TW_SKIP_ROW, "malformed manifest row or scene")                       \
    X(TW_SKIP_NODATA, "nodata above --max-nodata")                          \
    X(TW_SKIP_CLOUD, "clouds above --max-cloud")

typedef enum {
#define TW_SKIP_ENUM(name, msg) name,
    TW_SKIP_LIST(TW_SKIP_ENUM)
#undef TW_SKIP_ENUM
    TW_SKIP_N
} tw_skip;

const char *tw_skip_str(tw_skip s);

typedef struct tw_convert_opts {
    int layout;                 /* TW_LAYOUT_*: BigEarthNet v1.0, v2.0 (reBEN), SSL4EO-S12 */
    const char *s2_root;        /* v1: BigEarthNet-v1.0 (one folder per S2 patch) */
    const char *s1_root;        /* v1: BigEarthNet-S1-v1.0 */
    const char *root;           /* v2: the folder with BigEarthNet-S2/ and BigEarthNet-S1/;
                                 * ssl4eo: the folder with s1/, s2c/, s2a/ */
    int products;               /* ssl4eo: TW_PROD_* to convert (S2 = s2a, S2C = s2c, S1 = s1) */
    int size;                   /* ssl4eo: patch size, the centre of the 264 px grid (0: 264);
                                 * scenes: the patch size (0: 120) */
    const char *manifest;       /* scenes: CSV or JSON lines (manifest.h) */
    int stride;                 /* scenes: between patch origins (0: the size) */
    double max_nodata;          /* scenes: the largest nodata fraction a patch keeps */
    double max_cloud;           /* scenes: the largest cloud fraction (mask or SCL) a patch keeps */
    const char *labels_raster;  /* scenes: a class raster on the S2 grid's CRS, or NULL */
    const char *label_classes;  /* scenes: "value,class name" lines (BigEarthNet-19 or 43 names) */
    double label_min_fraction;  /* scenes: a class is present above this fraction of the patch */
    const char *metadata;       /* v2: JSON lines written by tools/reben_metadata.py */
    const char *splits_dir;     /* v1: train.csv, val.csv, test.csv (first column: S2 name) */
    const char *split;          /* every patch to this split (a user's own subset), or NULL */
    const char *cloud_list;     /* v1: patches_with_cloud_and_shadow.csv, or NULL */
    const char *snow_list;      /* v1: patches_with_seasonal_snow.csv, or NULL */
    int keep_snow;              /* keep snow patches (flagged) in their split */
    const char *out;            /* shard directory, created if missing */
    int64_t shard_size;
    int threads;
    int stop_on_error;          /* 1: the first bad patch stops the run; 0: skip and count */
    int progress;               /* progress line on a terminal */
    tw_compress compress;       /* the image datasets' HDF5 filter (--compress) */
    /* Over MPI ranks (mpirun -np N twinfuse convert): rank r writes the shards j with
     * j % N == r; the per-shard moments and the summary are summed through `ranks` (NULL: one
     * process). Every rank lists the archive the same way, so all agree on the shards. */
    int rank;
    const tw_reducer *ranks;
} tw_convert_opts;

typedef struct tw_convert_summary {
    int n_splits;
    char split_names[TW_CONVERT_MAX_SPLITS][32];
    int64_t written[TW_CONVERT_MAX_SPLITS];    /* patches in shards, this run and resumed */
    int64_t shards[TW_CONVERT_MAX_SPLITS];
    int64_t resumed_shards;
    int64_t skipped[TW_SKIP_N];                /* this run (and the listing) */
    int64_t skipped_resumed;                   /* recorded in shards kept from an earlier run */
    int stats_from_all;                        /* no train patches: statistics over every split */
    double seconds;
} tw_convert_summary;

/* Converts; on every rank the summary is the whole job's. A rank that fails returns its message;
 * the others return TW_E_IO naming the ranks that failed (no rank is left waiting). */
tw_status tw_convert_run(tw_convert_summary *sum, const tw_convert_opts *o, tw_err *err);

/* ---- internal to the converter (convert_list.c <-> convert.c) ---------------------------- */
typedef struct tw_patch {
    char *s2, *s1;              /* patch names */
    int split;                  /* index into the summary's split names */
    uint8_t flags;              /* TW_FLAG_* */
    int has_labels;             /* v2: labels19 from the metadata; v1: read from the S2 json */
    uint8_t labels19[19];
    int row, x0, y0;            /* scenes: the manifest row and the patch's window */
} tw_patch;

typedef struct tw_patch_list {
    tw_patch *p;
    int64_t n, cap;
} tw_patch_list;

/* A patch (ssl4eo: a location) as read, before it is written. */
typedef struct tw_convert_buf {
    uint16_t *s2, *s2c;         /* [T, 12, S, S], [T, 13, S, S] */
    float *s1;                  /* [T, 2, S, S] */
    uint8_t l19[TW_N_CLASSES], l43[TW_N_CLASSES43];
    int n_times;
    int32_t dates[3][TW_SHARD_MAX_TIMES];   /* s2, s1, s2c: YYYYMMDD */
    tw_grid grid;               /* the patch's georeference (ssl4eo, scenes) */
    uint8_t flags;              /* scenes: TW_FLAG_CLOUD when the patch has cloud pixels */
    int has_labels43;           /* scenes: l43 holds labels (the classes name CORINE classes) */
    void *cache;                /* scenes: the open scenes of the worker's current row */
} tw_convert_buf;

/* SSL4EO-S12 (convert_ssl4eo.c): the locations present in every product asked for, sorted by
 * id, all to one split; and one location's acquisitions read onto its 10 m grid. */
tw_status tw_ssl4eo_list(tw_patch_list *list, tw_convert_summary *sum, const tw_convert_opts *o, tw_err *err);
tw_skip tw_ssl4eo_read(tw_convert_buf *b, const tw_convert_opts *o, const tw_patch *p, tw_err *err);

/* Scene manifests (convert_scenes.c): the patch windows of every row, and one patch read. The
 * state (the manifest, the label classes) lives from list to free. */
typedef struct tw_scenes tw_scenes;
tw_status tw_scenes_list(tw_scenes **state, tw_patch_list *list, tw_convert_summary *sum, const tw_convert_opts *o,
                         tw_err *err);
tw_skip tw_scenes_read(tw_convert_buf *b, const tw_convert_opts *o, const tw_scenes *state, const tw_patch *p,
                       tw_err *err);
tw_shard_layout tw_scenes_layout(const tw_scenes *state, const tw_convert_opts *o);
void tw_scenes_cache_free(void *cache);
void tw_scenes_free(tw_scenes *state);

/* A listing-time warning (a skipped patch, location or row): said once, by rank 0. */
void tw_convert_warn(const tw_convert_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The end of a conversion (convert_finish.c). jobs: the shard paths of the whole conversion in
 * order, is_stats[j] whether shard j counts for the normalisation (the train split, or every
 * split when there is none), mine[j] whether this rank wrote it. Gathers every shard's moments
 * (summed through o->ranks, zeros where a rank has none), merges them in shard order (the same on
 * any rank count), and writes the normalisation into this rank's shards. */
tw_status tw_convert_finish(const tw_convert_opts *o, char *const *paths, const uint8_t *is_stats, const uint8_t *mine,
                            int64_t n_jobs, tw_shard_norm *norm, tw_err *err);

/* Lists the patches to convert, sorted by (split, S2 name); counts listing-time skips in sum. */
tw_status tw_convert_list(tw_patch_list *list, tw_convert_summary *sum, const tw_convert_opts *o, tw_err *err);
void tw_patch_list_free(tw_patch_list *list);
tw_status tw_patch_list_add(tw_patch_list *list, const tw_patch *p, tw_err *err);   /* copies the names */
/* The index of a split name in the summary, added if new; -1 when there are too many. */
int tw_convert_split_id(tw_convert_summary *sum, const char *name);

#endif
