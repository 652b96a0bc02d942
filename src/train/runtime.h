/* What every command that runs a model on ranks needs before and around its work: the run
 * directory, the OpenMP thread count, the backend from the
 * shared backend section, and the shards' loader options from the shared data section. */
#ifndef TW_RUNTIME_H
#define TW_RUNTIME_H

#include "backend/backend.h"
#include "config/sections.h"
#include "data/loader.h"
#include "dist/comm.h"

/* mkdir -p. */
tw_status tw_run_make_dirs(const char *path, tw_err *err);
/* Writes text to path atomically (a temporary file, fsync, rename). */
tw_status tw_run_write_text(const char *path, const char *text, tw_err *err);
/* Sets OpenMP's thread count before the backend starts: threads, or the cores shared by the
 * ranks on this node (0). */
void tw_run_set_threads(tw_comm *comm, int threads);
/* The backend section's device and precision, on this rank's local device; agreed by all ranks. */
tw_status tw_run_backend_create(tw_backend **be, tw_comm *comm, const tw_backend_cfg *c, tw_err *err);
/* What the first shard of a split says about all of them (the loader checks that they agree):
 * the normalisation and the patches' size. A split without shards is a status naming the
 * directory and the split. */
typedef struct tw_shard_meta {
    tw_shard_norm norm;
    int h, w;              /* patch pixels */
    char path[4096];       /* the shard read */
} tw_shard_meta;
tw_status tw_run_shard_meta(tw_shard_meta *m, const char *dir, const char *split, tw_err *err);
/* The data section as loader options for split (one view, no hook, the section's batch, subset
 * and bands, the label nomenclature; shuffle and drop_last as for training). */
tw_status tw_run_loader_opts(tw_loader_opts *lo, tw_comm *comm, const tw_data_cfg *d, const char *split,
                             tw_err *err);

#endif
