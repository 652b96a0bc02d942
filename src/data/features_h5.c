/* The features file writer (features_h5.h): fixed-size datasets created at open, hyperslab
 * writes of row blocks, attributes, then close, fsync and rename. Every HDF5 call runs under the
 * process-wide lock (shard_h5.h). */
#include "data/features_h5.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "data/labels.h"
#include "data/shard.h"
#include "data/shard_h5.h"

enum { F_FEATS, F_LABELS, F_NAME, F_NDSETS };

struct tw_features_h5 {
    char path[4096], tmp[4112];
    int64_t n, n_written;
    int d, k;
    hid_t file, dset[F_NDSETS], str_type;
};

static hid_t create_dset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims) {
    hid_t space = H5Screate_simple(rank, dims, NULL), d = -1;
    if (space >= 0) d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (space >= 0) H5Sclose(space);
    return d;
}

static void close_handles(tw_features_h5 *f) {
    for (int i = 0; i < F_NDSETS; i++)
        if (f->dset[i] >= 0) H5Dclose(f->dset[i]);
    if (f->str_type >= 0) H5Tclose(f->str_type);
    if (f->file >= 0) H5Fclose(f->file);
    for (int i = 0; i < F_NDSETS; i++) f->dset[i] = -1;
    f->str_type = f->file = -1;
}

tw_status tw_features_h5_open(tw_features_h5 **out, const char *path, int64_t n, int d, int k, const char *source,
                              const char *checkpoint, const char *split, tw_err *err) {
    *out = NULL;
    if (n < 1 || d < 1 || k < 1)
        return tw_err_set(err, TW_E_RANGE, "%s: features file of %lld rows, %d features, %d classes", path,
                          (long long)n, d, k);
    tw_status st = tw_atomic_target_check(path, err);
    if (st != TW_OK) return st;
    tw_features_h5 *f = calloc(1, sizeof *f);
    if (!f) return tw_err_set(err, TW_E_NOMEM, "%s: features writer", path);
    if (snprintf(f->path, sizeof f->path, "%s", path) >= (int)sizeof f->path) {
        free(f);
        return tw_err_set(err, TW_E_RANGE, "%s: path too long", path);
    }
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp", path);
    f->n = n;
    f->d = d;
    f->k = k;
    for (int i = 0; i < F_NDSETS; i++) f->dset[i] = -1;
    tw_h5_lock();
    f->file = H5Fcreate(f->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    f->str_type = H5Tcopy(H5T_C_S1);
    if (f->file < 0 || f->str_type < 0 || H5Tset_size(f->str_type, TW_SHARD_NAME_BYTES) < 0 ||
        H5Tset_strpad(f->str_type, H5T_STR_NULLPAD) < 0) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot create the features file", f->tmp);
        goto done;
    }
    hsize_t fd[2] = {(hsize_t)n, (hsize_t)d}, ld[2] = {(hsize_t)n, (hsize_t)k}, nd[1] = {(hsize_t)n};
    f->dset[F_FEATS] = create_dset(f->file, "features", H5T_IEEE_F32LE, 2, fd);
    f->dset[F_LABELS] = create_dset(f->file, "labels", H5T_STD_U8LE, 2, ld);
    f->dset[F_NAME] = create_dset(f->file, "name", f->str_type, 1, nd);
    const char *const *classes = k == TW_N_CLASSES ? tw_labels_names19 : k == TW_N_CLASSES43 ? tw_labels_names43 : NULL;
    if (f->dset[F_FEATS] < 0 || f->dset[F_LABELS] < 0 || f->dset[F_NAME] < 0 ||
        tw_h5_attr_str(f->file, "format", TW_FEATURES_FORMAT) < 0 || tw_h5_attr_str(f->file, "source", source) < 0 ||
        tw_h5_attr_str(f->file, "checkpoint", checkpoint) < 0 || tw_h5_attr_str(f->file, "split", split) < 0 ||
        (classes && tw_h5_attr_strs(f->file, "classes", classes, k) < 0))
        st = tw_err_set(err, TW_E_IO, "%s: cannot create the datasets and attributes", f->tmp);
done:
    if (st) {
        close_handles(f);
        remove(f->tmp);
        free(f);
    } else {
        *out = f;
    }
    tw_h5_unlock();
    return st;
}

/* Rows [row, row + n) of a 2-d (cols > 0) or 1-d (cols = 0) dataset from buf. */
static herr_t write_block(hid_t d, hid_t mem_type, int64_t row, int64_t n, int cols, const void *buf) {
    int rank = cols ? 2 : 1;
    hsize_t start[2] = {(hsize_t)row, 0}, count[2] = {(hsize_t)n, (hsize_t)cols};
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, count, NULL);
    herr_t r = -1;
    if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0)
        r = H5Dwrite(d, mem_type, ms, fs, H5P_DEFAULT, buf);
    if (fs >= 0) H5Sclose(fs);
    if (ms >= 0) H5Sclose(ms);
    return r;
}

tw_status tw_features_h5_write_rows(tw_features_h5 *f, int64_t offset, int64_t n_rows, const float *feats,
                                    const float *labels, const char *names, tw_err *err) {
    if (offset != f->n_written || n_rows < 0 || offset + n_rows > f->n)
        return tw_err_set(err, TW_E_RANGE, "%s: rows [%lld, %lld) after %lld of %lld written (rows come in order)",
                          f->tmp, (long long)offset, (long long)(offset + n_rows), (long long)f->n_written,
                          (long long)f->n);
    if (!n_rows) return TW_OK;
    uint8_t *y = malloc((size_t)n_rows * (size_t)f->k);
    if (!y) return tw_err_set(err, TW_E_NOMEM, "%s: labels of %lld rows", f->tmp, (long long)n_rows);
    for (size_t i = 0; i < (size_t)n_rows * (size_t)f->k; i++) y[i] = labels[i] > 0.5f;
    tw_h5_lock();
    int bad = write_block(f->dset[F_FEATS], H5T_NATIVE_FLOAT, offset, n_rows, f->d, feats) < 0 ||
              write_block(f->dset[F_LABELS], H5T_NATIVE_UINT8, offset, n_rows, f->k, y) < 0 ||
              write_block(f->dset[F_NAME], f->str_type, offset, n_rows, 0, names) < 0;
    tw_h5_unlock();
    free(y);
    if (bad) return tw_err_set(err, TW_E_IO, "%s: cannot write rows [%lld, %lld)", f->tmp, (long long)offset,
                               (long long)(offset + n_rows));
    f->n_written += n_rows;
    return TW_OK;
}

/* fsync of a file or a directory; 0 on success. */
static int sync_path(const char *path, int flags) {
    int fd = open(path, flags);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

tw_status tw_features_h5_close(tw_features_h5 *f, tw_err *err) {
    tw_status st = TW_OK;
    if (f->n_written != f->n)
        st = tw_err_set(err, TW_E_RANGE, "%s: closed after %lld of %lld rows; %s not written", f->tmp,
                        (long long)f->n_written, (long long)f->n, f->path);
    tw_h5_lock();
    herr_t flushed = st ? 0 : H5Fflush(f->file, H5F_SCOPE_GLOBAL);
    for (int i = 0; i < F_NDSETS; i++)
        if (f->dset[i] >= 0 && H5Dclose(f->dset[i]) < 0) flushed = -1;
    if (H5Tclose(f->str_type) < 0 || H5Fclose(f->file) < 0) flushed = -1;
    tw_h5_unlock();
    if (!st && flushed < 0) st = tw_err_set(err, TW_E_IO, "%s: cannot close", f->tmp);
    if (!st && sync_path(f->tmp, O_RDONLY) != 0) st = tw_err_set(err, TW_E_IO, "%s: fsync: %s", f->tmp, strerror(errno));
    if (!st && rename(f->tmp, f->path) != 0)
        st = tw_err_set(err, TW_E_IO, "%s: cannot rename to %s: %s", f->tmp, f->path, strerror(errno));
    if (st) {
        remove(f->tmp);
    } else {
        char *dir = strdup(f->path);   /* the rename is durable once the directory is on disk */
        if (!dir || sync_path(dirname(dir), O_RDONLY | O_DIRECTORY) != 0)
            st = tw_err_set(err, TW_E_IO, "%s: fsync of its directory failed", f->path);
        free(dir);
    }
    free(f);
    return st;
}

void tw_features_h5_abort(tw_features_h5 *f) {
    if (!f) return;
    tw_h5_lock();
    close_handles(f);
    tw_h5_unlock();
    remove(f->tmp);
    free(f);
}

tw_status tw_features_h5_write(const char *path, const float *feats, const float *labels, const char *names,
                               int64_t n, int d, int k, const char *source, const char *checkpoint, const char *split,
                               tw_err *err) {
    tw_features_h5 *f;
    tw_status st = tw_features_h5_open(&f, path, n, d, k, source, checkpoint, split, err);
    if (st) return st;
    if ((st = tw_features_h5_write_rows(f, 0, n, feats, labels, names, err))) {
        tw_features_h5_abort(f);
        return st;
    }
    return tw_features_h5_close(f, err);
}
