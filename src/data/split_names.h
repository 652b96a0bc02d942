/* The patch names of a whole split, in the split's sample order (the global index the loader's
 * batches carry), for prediction files and feature files. */
#ifndef TW_SPLIT_NAMES_H
#define TW_SPLIT_NAMES_H

#include <stdint.h>

#include "core/status.h"
#include "data/shard.h"

/* *names: n rows of TW_SHARD_NAME_BYTES (NUL-padded), one allocation (free() it). A split with no
 * shards is an error naming the directory and the split. */
tw_status tw_split_names_read(char **names, int64_t *n, const char *dir, const char *split, tw_err *err);

#endif
