/* The shard writer: extendible datasets chunked one sample per chunk, written to `<path>.tmp`,
 * per-band moments accumulated as samples arrive, attributes and rename at close. */
#include "data/shard.h"
#include "data/shard_h5.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D_S2, D_S1, D_LABELS, D_LABELS43, D_NAME, D_S1NAME, D_FLAGS, N_DSETS };
static const char *const dset_names[N_DSETS] = {"s2", "s1", "labels", "labels43", "name", "s1_name", "flags"};

struct tw_shard_writer {
    char path[4096], tmp[4112];
    char split[64], source[64];
    int h, w;
    int64_t n;
    int any_labels43;           /* 1 once a sample brought 43-class labels */
    hid_t file, dset[N_DSETS], str_type;
    tw_shard_moments mom;
};

/* Creates an extendible dataset [0, dims...] chunked as [1, dims...]. */
static hid_t create_dset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *sample_dims) {
    hsize_t dims[4] = {0}, maxdims[4] = {H5S_UNLIMITED}, chunk[4] = {1};
    for (int i = 1; i < rank; i++) dims[i] = maxdims[i] = chunk[i] = sample_dims[i - 1];
    hid_t space = H5Screate_simple(rank, dims, maxdims), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0)
        d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    return d;
}

static void close_handles(tw_shard_writer *wr) {
    for (int i = 0; i < N_DSETS; i++)
        if (wr->dset[i] >= 0) H5Dclose(wr->dset[i]);
    if (wr->str_type >= 0) H5Tclose(wr->str_type);
    if (wr->file >= 0) H5Fclose(wr->file);
    for (int i = 0; i < N_DSETS; i++) wr->dset[i] = -1;
    wr->str_type = wr->file = -1;
}

tw_status tw_shard_writer_open(tw_shard_writer **out, const char *path, const char *split,
                               const char *source, int h, int w, tw_err *err) {
    *out = NULL;
    if (h <= 0 || w <= 0 || h > 4096 || w > 4096)
        return tw_err_set(err, TW_E_RANGE, "%s: patch size %dx%d out of range", path, h, w);
    tw_shard_writer *wr = calloc(1, sizeof *wr);
    if (!wr) return tw_err_set(err, TW_E_NOMEM, "%s: shard writer", path);
    if (snprintf(wr->path, sizeof wr->path, "%s", path) >= (int)sizeof wr->path ||
        snprintf(wr->split, sizeof wr->split, "%s", split) >= (int)sizeof wr->split) {
        free(wr);
        return tw_err_set(err, TW_E_RANGE, "%s: path or split name too long", path);
    }
    snprintf(wr->tmp, sizeof wr->tmp, "%s.tmp", path);
    snprintf(wr->source, sizeof wr->source, "%s", source);
    wr->h = h;
    wr->w = w;
    for (int i = 0; i < N_DSETS; i++) wr->dset[i] = -1;
    tw_status st = TW_OK;
    tw_h5_lock();
    wr->file = H5Fcreate(wr->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    wr->str_type = H5Tcopy(H5T_C_S1);
    if (wr->file < 0 || wr->str_type < 0 || H5Tset_size(wr->str_type, TW_SHARD_NAME_BYTES) < 0 ||
        H5Tset_strpad(wr->str_type, H5T_STR_NULLPAD) < 0) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot create the shard file", wr->tmp);
        goto done;
    }
    hsize_t s2_dims[3] = {TW_S2_BANDS, (hsize_t)h, (hsize_t)w}, s1_dims[3] = {TW_S1_BANDS, (hsize_t)h, (hsize_t)w};
    hsize_t l19[1] = {TW_N_CLASSES}, l43[1] = {TW_N_CLASSES43};
    wr->dset[D_S2] = create_dset(wr->file, "s2", H5T_STD_U16LE, 4, s2_dims);
    wr->dset[D_S1] = create_dset(wr->file, "s1", H5T_IEEE_F32LE, 4, s1_dims);
    wr->dset[D_LABELS] = create_dset(wr->file, "labels", H5T_STD_U8LE, 2, l19);
    wr->dset[D_LABELS43] = create_dset(wr->file, "labels43", H5T_STD_U8LE, 2, l43);
    wr->dset[D_NAME] = create_dset(wr->file, "name", wr->str_type, 1, NULL);
    wr->dset[D_S1NAME] = create_dset(wr->file, "s1_name", wr->str_type, 1, NULL);
    wr->dset[D_FLAGS] = create_dset(wr->file, "flags", H5T_STD_U8LE, 1, NULL);
    for (int i = 0; i < N_DSETS; i++)
        if (wr->dset[i] < 0) {
            st = tw_err_set(err, TW_E_IO, "%s: cannot create dataset '%s'", wr->tmp, dset_names[i]);
            goto done;
        }
done:
    if (st) {
        close_handles(wr);
        remove(wr->tmp);
        free(wr);
    } else {
        *out = wr;
    }
    tw_h5_unlock();
    return st;
}

/* Writes one sample's row at index n of a dataset grown to n + 1. */
static herr_t append_row(hid_t d, hid_t mem_type, int64_t n, const void *buf) {
    hid_t fs = -1, ms = -1;
    herr_t r = -1;
    int rank;
    hsize_t dims[4], start[4] = {0}, count[4];
    fs = H5Dget_space(d);
    if (fs < 0 || (rank = H5Sget_simple_extent_dims(fs, dims, NULL)) < 1) goto done;
    H5Sclose(fs);
    fs = -1;
    dims[0] = (hsize_t)n + 1;
    if (H5Dset_extent(d, dims) < 0 || (fs = H5Dget_space(d)) < 0) goto done;
    start[0] = (hsize_t)n;
    count[0] = 1;
    for (int i = 1; i < rank; i++) count[i] = dims[i];
    if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0) goto done;
    if ((ms = H5Screate_simple(rank, count, NULL)) < 0) goto done;
    r = H5Dwrite(d, mem_type, ms, fs, H5P_DEFAULT, buf);
done:
    if (fs >= 0) H5Sclose(fs);
    if (ms >= 0) H5Sclose(ms);
    return r;
}

/* Welford's update over one band's plane, merged as a part so that the sum stays accurate. */
static void plane_moments(tw_shard_moments *acc, int band, const uint16_t *u16, const float *f32, size_t n_px) {
    double sum = 0, mean, m2 = 0;
    for (size_t i = 0; i < n_px; i++) sum += u16 ? u16[i] : f32[i];
    mean = sum / (double)n_px;
    for (size_t i = 0; i < n_px; i++) {
        double d = (u16 ? u16[i] : f32[i]) - mean;
        m2 += d * d;
    }
    double n = acc->count + (double)n_px, delta = mean - acc->mean[band];
    acc->mean[band] += delta * (double)n_px / n;
    acc->m2[band] += m2 + delta * delta * acc->count * (double)n_px / n;
}

tw_status tw_shard_writer_add(tw_shard_writer *wr, const tw_shard_sample *s, tw_err *err) {
    size_t n_px = (size_t)wr->h * (size_t)wr->w;
    char name[TW_SHARD_NAME_BYTES] = {0}, s1_name[TW_SHARD_NAME_BYTES] = {0};
    uint8_t zeros43[TW_N_CLASSES43] = {0};
    if (strlen(s->name) >= TW_SHARD_NAME_BYTES || strlen(s->s1_name) >= TW_SHARD_NAME_BYTES)
        return tw_err_set(err, TW_E_RANGE, "%s: patch name '%s' longer than %d bytes", wr->tmp, s->name,
                          TW_SHARD_NAME_BYTES - 1);
    for (size_t i = 0; i < TW_S1_BANDS * n_px; i++)
        if (!isfinite(s->s1[i]))
            return tw_err_set(err, TW_E_NONFINITE, "%s: patch %s: non-finite s1 value at band %s pixel %zu",
                              wr->tmp, s->name, tw_shard_s1_bands[i / n_px], i % n_px);
    strcpy(name, s->name);
    strcpy(s1_name, s->s1_name);
    if (s->labels43) wr->any_labels43 = 1;
    tw_status st = TW_OK;
    tw_h5_lock();
    if (append_row(wr->dset[D_S2], H5T_NATIVE_UINT16, wr->n, s->s2) < 0 ||
        append_row(wr->dset[D_S1], H5T_NATIVE_FLOAT, wr->n, s->s1) < 0 ||
        append_row(wr->dset[D_LABELS], H5T_NATIVE_UINT8, wr->n, s->labels) < 0 ||
        append_row(wr->dset[D_LABELS43], H5T_NATIVE_UINT8, wr->n, s->labels43 ? s->labels43 : zeros43) < 0 ||
        append_row(wr->dset[D_NAME], wr->str_type, wr->n, name) < 0 ||
        append_row(wr->dset[D_S1NAME], wr->str_type, wr->n, s1_name) < 0 ||
        append_row(wr->dset[D_FLAGS], H5T_NATIVE_UINT8, wr->n, &s->flags) < 0)
        st = tw_err_set(err, TW_E_IO, "%s: cannot write sample %lld (%s)", wr->tmp, (long long)wr->n, s->name);
    tw_h5_unlock();
    if (st) return st;
    /* Moments of this sample, then merged: bands one by one, each over its plane. */
    tw_shard_moments one = {0};
    for (int b = 0; b < TW_S2_BANDS; b++) {
        one.count = 0;
        plane_moments(&one, b, s->s2 + (size_t)b * n_px, NULL, n_px);
    }
    for (int b = 0; b < TW_S1_BANDS; b++) {
        one.count = 0;
        plane_moments(&one, TW_S2_BANDS + b, NULL, s->s1 + (size_t)b * n_px, n_px);
    }
    one.count = (double)n_px;
    tw_shard_moments_merge(&wr->mom, &one);
    wr->n++;
    return TW_OK;
}

int64_t tw_shard_writer_count(const tw_shard_writer *wr) { return wr->n; }

tw_status tw_shard_writer_close(tw_shard_writer *wr, int64_t n_skipped, tw_err *err) {
    tw_status st = TW_OK;
    tw_h5_lock();
    hid_t f = wr->file;
    if (tw_h5_attr_i64(f, "format_version", TW_SHARD_VERSION) < 0 || tw_h5_attr_str(f, "split", wr->split) < 0 ||
        tw_h5_attr_str(f, "source", wr->source) < 0 ||
        tw_h5_attr_strs(f, "s2_bands", tw_shard_s2_bands, TW_S2_BANDS) < 0 ||
        tw_h5_attr_strs(f, "s1_bands", tw_shard_s1_bands, TW_S1_BANDS) < 0 ||
        tw_h5_attr_strs(f, "classes", tw_labels_names19, TW_N_CLASSES) < 0 ||
        tw_h5_attr_strs(f, "classes43", tw_labels_names43, TW_N_CLASSES43) < 0 ||
        tw_h5_attr_i64(f, "has_labels43", wr->any_labels43) < 0 ||
        tw_h5_attr_i64(f, "n_samples", wr->n) < 0 || tw_h5_attr_i64(f, "n_skipped", n_skipped) < 0 ||
        tw_h5_attr_f64(f, "moment_count", &wr->mom.count, 1) < 0 ||
        tw_h5_attr_f64(f, "moment_mean", wr->mom.mean, TW_N_BANDS) < 0 ||
        tw_h5_attr_f64(f, "moment_m2", wr->mom.m2, TW_N_BANDS) < 0) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot write the shard attributes", wr->tmp);
    }
    close_handles(wr);
    tw_h5_unlock();
    if (!st && rename(wr->tmp, wr->path) != 0)
        st = tw_err_set(err, TW_E_IO, "%s: cannot rename to %s: %s", wr->tmp, wr->path, strerror(errno));
    if (st) remove(wr->tmp);
    free(wr);
    return st;
}

void tw_shard_writer_abort(tw_shard_writer *wr) {
    if (!wr) return;
    tw_h5_lock();
    close_handles(wr);
    tw_h5_unlock();
    remove(wr->tmp);
    free(wr);
}

tw_status tw_shard_write_norm(const char *path, const tw_shard_norm *norm, tw_err *err) {
    tw_status st = TW_OK;
    tw_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot open the shard to store its normalisation", path);
    } else if (tw_h5_attr_f64(f, "s2_mean", norm->mean, TW_S2_BANDS) < 0 ||
               tw_h5_attr_f64(f, "s2_std", norm->std, TW_S2_BANDS) < 0 ||
               tw_h5_attr_f64(f, "s1_mean", norm->mean + TW_S2_BANDS, TW_S1_BANDS) < 0 ||
               tw_h5_attr_f64(f, "s1_std", norm->std + TW_S2_BANDS, TW_S1_BANDS) < 0) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot write the normalisation attributes", path);
    }
    if (f >= 0 && H5Fclose(f) < 0 && !st) st = tw_err_set(err, TW_E_IO, "%s: cannot close", path);
    tw_h5_unlock();
    return st;
}
