/* The BigEarthNet converter behind `twinfuse convert` (docs/shards.md): lists the patches of a
 * v1.0 or v2.0 (reBEN) archive, assigns them to splits and shards, reads every raster through
 * GDAL on a pool of threads, writes the shards (resumable: complete shards are kept), then the
 * training normalisation; the summary counts patches per split and skips per reason. */
#ifndef TW_CONVERT_H
#define TW_CONVERT_H

#include <stdint.h>

#include "core/status.h"

#define TW_CONVERT_SIZE 120      /* BigEarthNet patches: 120 x 120 at 10 m */
#define TW_CONVERT_MAX_SPLITS 8

/* Why a patch was left out. */
#define TW_SKIP_LIST(X)                                                     \
    X(TW_SKIP_SNOW, "seasonal snow (excluded by default)")                  \
    X(TW_SKIP_NOT_LISTED, "in no split list")                               \
    X(TW_SKIP_NO_S2, "S1 patch without its S2 partner")                     \
    X(TW_SKIP_NO_S1, "S2 patch without an S1 partner")                      \
    X(TW_SKIP_LABEL, "unknown or missing labels")                           \
    X(TW_SKIP_RASTER, "missing or malformed band file")                     \
    X(TW_SKIP_NONFINITE, "non-finite pixels")

typedef enum {
#define TW_SKIP_ENUM(name, msg) name,
    TW_SKIP_LIST(TW_SKIP_ENUM)
#undef TW_SKIP_ENUM
    TW_SKIP_N
} tw_skip;

const char *tw_skip_str(tw_skip s);

typedef struct tw_convert_opts {
    int layout;                 /* 1: BigEarthNet v1.0, 2: v2.0 (reBEN) */
    const char *s2_root;        /* v1: BigEarthNet-v1.0 (one folder per S2 patch) */
    const char *s1_root;        /* v1: BigEarthNet-S1-v1.0 */
    const char *root;           /* v2: the folder with BigEarthNet-S2/ and BigEarthNet-S1/ */
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

tw_status tw_convert_run(tw_convert_summary *sum, const tw_convert_opts *o, tw_err *err);

/* ---- internal to the converter (convert_list.c <-> convert.c) ---------------------------- */
typedef struct tw_patch {
    char *s2, *s1;              /* patch names */
    int split;                  /* index into the summary's split names */
    uint8_t flags;              /* TW_FLAG_* */
    int has_labels;             /* v2: labels19 from the metadata; v1: read from the S2 json */
    uint8_t labels19[19];
} tw_patch;

typedef struct tw_patch_list {
    tw_patch *p;
    int64_t n, cap;
} tw_patch_list;

/* Lists the patches to convert, sorted by (split, S2 name); counts listing-time skips in sum. */
tw_status tw_convert_list(tw_patch_list *list, tw_convert_summary *sum, const tw_convert_opts *o, tw_err *err);
void tw_patch_list_free(tw_patch_list *list);
/* The index of a split name in the summary, added if new; -1 when there are too many. */
int tw_convert_split_id(tw_convert_summary *sum, const char *name);

#endif
