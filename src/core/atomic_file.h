/* Writing a file so that readers see either the old file or the whole new one, never a torn one:
 * a temporary file next to it, fsync, rename, fsync of the directory. Every output twinfuse writes
 * (checkpoints, reports, predictions, configs) goes through here. */
#ifndef TW_ATOMIC_FILE_H
#define TW_ATOMIC_FILE_H

#include <stddef.h>

#include "core/status.h"

/* Writes the n chunks (data[i], n_bytes[i]) one after another as path. On failure the previous
 * file (if any) is untouched, the temporary is removed, and err names path and the cause. */
tw_status tw_atomic_write(const char *path, const void *const *data, const size_t *n_bytes, int n,
                          tw_err *err);
/* The same for one NUL-terminated text. A path that exists and is not a regular file (/dev/stdout,
 * a FIFO, /dev/full) is written in place, every write and the close checked: renaming over it
 * would replace the device with a file. */
tw_status tw_atomic_write_text(const char *path, const char *text, tw_err *err);

/* For writers that need a seekable file they rename into place themselves (HDF5, GeoTIFF): OK when
 * path does not exist or is a regular file; otherwise an error naming path (a rename over a device
 * would replace it). */
tw_status tw_atomic_target_check(const char *path, tw_err *err);

#endif
