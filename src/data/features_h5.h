/* The features file of `twinfuse embed`: one HDF5 file with `features` f32 [N, D], `labels` u8
 * [N, k], `name` (the patch names, the shards' fixed-length NUL-padded string type) and the
 * attributes format, source, checkpoint, split (and classes for k = 19 or 43). It is written
 * under `<path>.tmp`, rows in order, and renamed to path only when all N rows are in. */
#ifndef TW_FEATURES_H5_H
#define TW_FEATURES_H5_H

#include <stdint.h>

#include "core/status.h"

#define TW_FEATURES_FORMAT "twinfuse-features/1"

typedef struct tw_features_h5 tw_features_h5;

/* Creates `<path>.tmp` for n >= 1 rows of d >= 1 features and k >= 1 labels. source: "s1",
 * "s2", "s1+s2"; checkpoint: the file the features come from; split: "train", "val", ... */
tw_status tw_features_h5_open(tw_features_h5 **out, const char *path, int64_t n, int d, int k, const char *source,
                              const char *checkpoint, const char *split, tw_err *err);
/* Rows [offset, offset + n_rows): offset must be the number of rows written so far (rows come in
 * order). feats: [n_rows, d] f32; labels: [n_rows, k] f32, > 0.5 is stored as 1; names: n_rows of
 * TW_SHARD_NAME_BYTES (data/shard.h). */
tw_status tw_features_h5_write_rows(tw_features_h5 *f, int64_t offset, int64_t n_rows, const float *feats,
                                    const float *labels, const char *names, tw_err *err);
/* With all n rows written: closes, fsyncs and renames `<path>.tmp` to path. Otherwise (or on any
 * failure) removes the temporary and returns an error; path is never touched then. Frees f. */
tw_status tw_features_h5_close(tw_features_h5 *f, tw_err *err);
/* Closes and removes the temporary; frees f. */
void tw_features_h5_abort(tw_features_h5 *f);

/* open + one write_rows of all n rows + close. */
tw_status tw_features_h5_write(const char *path, const float *feats, const float *labels, const char *names,
                               int64_t n, int d, int k, const char *source, const char *checkpoint, const char *split,
                               tw_err *err);

#endif
