/* The scene manifest of `twinfuse convert --layout scenes` (docs/shards.md): CSV with a header
 * row, or JSON lines, one row per scene or per co-registered S1/S2 scene pair. Parsing and
 * checking only: each row's band files resolved (relative to the manifest's folder), its date,
 * S1 scale and cloud mask; a bad row is named by file and line. */
#ifndef TW_MANIFEST_H
#define TW_MANIFEST_H

#include <stdint.h>

#include "core/status.h"
#include "data/shard.h"

typedef struct tw_manifest_row {
    int line;                       /* 1-based line of the manifest (CSV: the header is line 1) */
    char name[64];                  /* `name`, or "row<line>" */
    char split[32];                 /* `split`, or "" (the converter's --split) */
    char *s2[TW_S2_BANDS];          /* the 12 band files, or s2[0] a 12-band file and the rest NULL */
    char *s1[TW_S1_BANDS];          /* VV, VH files, or s1[0] a 2-band file and s1[1] NULL */
    int has_s2, has_s1;
    int s2_multi, s1_multi;         /* s2[0] / s1[0] is one file of all the bands */
    int s1_linear;                  /* `s1_scale`: 1 linear power (converted to dB), 0 dB */
    int32_t date;                   /* `date` YYYY-MM-DD or YYYYMMDD, 0 when absent */
    char *mask;                     /* `mask`: a cloud mask (non-zero: cloud), or NULL */
    char *scl;                      /* `scl`: an S2 scene classification (3, 8, 9, 10: cloud), or NULL */
} tw_manifest_row;

typedef struct tw_manifest {
    char path[4096];
    tw_manifest_row *rows;
    int n_rows;
    int n_bad;                      /* rows skipped as malformed (stop_on_error 0) */
    int has_date;                   /* some row has a date */
} tw_manifest;

/* Reads `path` (JSON lines when it ends in .jsonl or .json, CSV otherwise). Columns / keys:
 * name, split, s2 (a 12-band file, or a path with {band} for B01..B12), B01 ... B12 (one file
 * per band, instead of s2), s1 (a 2-band file, or a path with {band} for VV, VH), VV, VH,
 * s1_scale (db | linear), date, mask, scl. A malformed row is an error naming path:line; with
 * skip_bad it is reported (tw_warn, unless quiet: the ranks other than 0), counted in n_bad and
 * left out. */
tw_status tw_manifest_read(tw_manifest *m, const char *path, int skip_bad, int quiet, tw_err *err);
void tw_manifest_free(tw_manifest *m);

#endif
