/* Internal to src/data: the process-wide HDF5 lock and attribute helpers shared by the shard
 * writer and reader. The Debian HDF5 is built without thread safety, so every HDF5 call in the
 * process runs under tw_h5_lock (the loader's prefetch thread and the converter's workers). */
#ifndef TW_SHARD_H5_H
#define TW_SHARD_H5_H

#include <hdf5.h>

#include "core/status.h"
#include "data/shard.h"

void tw_h5_lock(void);      /* also turns off HDF5's own error printing, once */
void tw_h5_unlock(void);

/* A shard's datasets, in the writer's and reader's order. */
enum { D_S2, D_S2C, D_S1, D_LABELS, D_LABELS43, D_NAME, D_S1NAME, D_FLAGS, D_NTIMES, D_S2DATE, D_S1DATE, D_S2CDATE,
       D_TRANSFORM, D_CRS, N_DSETS };
/* Whether a layout has dataset d (D_*): the writer's rule, which the reader checks against. */
int tw_shard_has_dset(const tw_shard_layout *l, int d);

/* The HDF5 filter id of a compression (0: none). */
int tw_compress_filter(tw_compress c);

/* Attribute writers; return a negative value on failure like the HDF5 calls they wrap. */
herr_t tw_h5_attr_str(hid_t obj, const char *name, const char *value);
herr_t tw_h5_attr_strs(hid_t obj, const char *name, const char *const *values, int n);
herr_t tw_h5_attr_f64(hid_t obj, const char *name, const double *values, int n);
herr_t tw_h5_attr_i64(hid_t obj, const char *name, int64_t value);

/* Attribute readers that check the type and the element count; messages name path and attr. */
tw_status tw_h5_read_f64(hid_t obj, const char *name, double *values, int n, const char *path, tw_err *err);
tw_status tw_h5_read_i64(hid_t obj, const char *name, int64_t *value, const char *path, tw_err *err);
/* Reads a variable-length string-array attribute into *out (one allocation: the pointers, then
 * the strings; free() it) and its length into *n. */
tw_status tw_h5_read_strs(hid_t obj, const char *name, char ***out, int *n, const char *path, tw_err *err);
/* Checks that a string-array attribute holds exactly `want`. */
tw_status tw_h5_check_strs(hid_t obj, const char *name, const char *const *want, int n,
                           const char *path, tw_err *err);

#endif
