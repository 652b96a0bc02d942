/* A directory of shards as a whole: listing every split's shards and writing the dataset-wide
 * normalisation (moments of the statistics split, merged) into each shard, the last step of
 * `twinfuse convert` and `twinfuse synth`. */
#ifndef TW_SHARD_DIR_H
#define TW_SHARD_DIR_H

#include "core/status.h"
#include "data/shard.h"

/* Merges the per-shard moments of stats_split (of every shard when that split has none; then
 * *used_all is set) and writes the normalisation into every shard of the directory. */
tw_status tw_shard_dir_finalize(const char *dir, const char *stats_split, tw_shard_norm *norm, int *used_all, tw_err *err);

/* Whether `path` is a complete, valid shard (used to resume: complete shards are kept). */
int tw_shard_is_complete(const char *path);

#endif
