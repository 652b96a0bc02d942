/* The shard writer: extendible datasets chunked one sample (one acquisition on a time axis) per
 * chunk, written to `<path>.tmp`, per-band moments accumulated as samples arrive, the CRS table,
 * attributes and rename at close. */
#include "data/shard.h"
#include "data/shard_h5.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const dset_names[N_DSETS] = {"s2", "s2c", "s1", "labels", "labels43", "name", "s1_name", "flags",
                                                "n_times", "s2_date", "s1_date", "s2c_date", "transform", "crs"};

struct tw_shard_writer {
    char path[4096], tmp[4112];
    char split[64], source[64];
    tw_shard_layout lay;
    int64_t n;
    int any_labels43;           /* 1 once a sample brought 43-class labels */
    hid_t file, dset[N_DSETS], str_type;
    tw_shard_moments mom;
    int n_crs;                  /* the CRS table: distinct WKTs, their EPSG codes */
    char *crs_wkt[TW_SHARD_MAX_CRS];
    int64_t crs_epsg[TW_SHARD_MAX_CRS];
};

/* Creates an extendible dataset [0, dims...] chunked as [1, dims...], and [1, 1, dims...] on a
 * time axis (one chunk per acquisition, so one read is one acquisition). */
static hid_t create_dset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *sample_dims, int timed,
                         tw_compress compress) {
    hsize_t dims[5] = {0}, maxdims[5] = {H5S_UNLIMITED}, chunk[5] = {1};
    for (int i = 1; i < rank; i++) dims[i] = maxdims[i] = chunk[i] = sample_dims[i - 1];
    if (timed) chunk[1] = 1;
    hid_t space = H5Screate_simple(rank, dims, maxdims), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    int ok = space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0;
    /* Shuffle first: the high and low bytes of uint16 reflectances (and of float32 dB) compress
     * apart far better than interleaved. Deflate at level 4: near level 9's size, much faster. */
    if (ok && compress != TW_COMPRESS_NONE) ok = H5Pset_shuffle(dcpl) >= 0;
    if (ok && compress == TW_COMPRESS_DEFLATE) ok = H5Pset_deflate(dcpl, 4) >= 0;
    else if (ok && compress != TW_COMPRESS_NONE)
        ok = H5Pset_filter(dcpl, (H5Z_filter_t)tw_compress_filter(compress), H5Z_FLAG_MANDATORY, 0, NULL) >= 0;
    if (ok) d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
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

static void writer_free(tw_shard_writer *wr) {
    for (int i = 0; i < wr->n_crs; i++) free(wr->crs_wkt[i]);
    free(wr);
}

tw_status tw_shard_writer_create(tw_shard_writer **out, const char *path, const char *split,
                                 const char *source, const tw_shard_layout *lay, tw_err *err) {
    *out = NULL;
    int h = lay->h, w = lay->w;
    if (h <= 0 || w <= 0 || h > 4096 || w > 4096)
        return tw_err_set(err, TW_E_RANGE, "%s: patch size %dx%d out of range", path, h, w);
    if (lay->n_times < 0 || lay->n_times > TW_SHARD_MAX_TIMES)
        return tw_err_set(err, TW_E_RANGE, "%s: %d acquisitions per location, want 0..%d", path, lay->n_times,
                          TW_SHARD_MAX_TIMES);
    const int all_products = TW_PROD_S2 | TW_PROD_S1 | TW_PROD_S2C;
    if (!(lay->products & all_products) || (lay->products & ~all_products))
        return tw_err_set(err, TW_E_RANGE, "%s: products 0x%x, want some of s2, s1, s2c", path, (unsigned)lay->products);
    tw_status cst = tw_compress_check(lay->compress, err);
    if (cst) return cst;
    tw_shard_writer *wr = calloc(1, sizeof *wr);
    if (!wr) return tw_err_set(err, TW_E_NOMEM, "%s: shard writer", path);
    if (snprintf(wr->path, sizeof wr->path, "%s", path) >= (int)sizeof wr->path ||
        snprintf(wr->split, sizeof wr->split, "%s", split) >= (int)sizeof wr->split) {
        free(wr);
        return tw_err_set(err, TW_E_RANGE, "%s: path or split name too long", path);
    }
    snprintf(wr->tmp, sizeof wr->tmp, "%s.tmp", path);
    snprintf(wr->source, sizeof wr->source, "%s", source);
    wr->lay = *lay;
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
    int T = lay->n_times, timed = T > 0, ir = timed ? 5 : 4;
    hsize_t tt = (hsize_t)T, hh = (hsize_t)h, ww = (hsize_t)w;
    hsize_t s2_dims[4] = {tt, TW_S2_BANDS, hh, ww}, s1_dims[4] = {tt, TW_S1_BANDS, hh, ww};
    hsize_t s2c_dims[4] = {tt, TW_S2C_BANDS, hh, ww};
    hsize_t l19[1] = {TW_N_CLASSES}, l43[1] = {TW_N_CLASSES43}, six[1] = {6}, t1[1] = {tt};
    const tw_compress plain = TW_COMPRESS_NONE, packed = lay->compress;   /* small datasets, images */
    for (int d = 0; d < N_DSETS; d++) {
        if (!tw_shard_has_dset(lay, d)) continue;
        hid_t id = -1;
        switch (d) {
        case D_S2: id = create_dset(wr->file, "s2", H5T_STD_U16LE, ir, s2_dims + !timed, timed, packed); break;
        case D_S2C: id = create_dset(wr->file, "s2c", H5T_STD_U16LE, ir, s2c_dims + !timed, timed, packed); break;
        case D_S1: id = create_dset(wr->file, "s1", H5T_IEEE_F32LE, ir, s1_dims + !timed, timed, packed); break;
        case D_LABELS: id = create_dset(wr->file, "labels", H5T_STD_U8LE, 2, l19, 0, plain); break;
        case D_LABELS43: id = create_dset(wr->file, "labels43", H5T_STD_U8LE, 2, l43, 0, plain); break;
        case D_NAME: case D_S1NAME: id = create_dset(wr->file, dset_names[d], wr->str_type, 1, NULL, 0, plain); break;
        case D_FLAGS: case D_NTIMES: id = create_dset(wr->file, dset_names[d], H5T_STD_U8LE, 1, NULL, 0, plain); break;
        case D_S2DATE: case D_S1DATE: case D_S2CDATE:
            id = create_dset(wr->file, dset_names[d], H5T_STD_I32LE, 2, t1, 0, plain);
            break;
        case D_TRANSFORM: id = create_dset(wr->file, "transform", H5T_IEEE_F64LE, 2, six, 0, plain); break;
        case D_CRS: id = create_dset(wr->file, "crs", H5T_STD_I16LE, 1, NULL, 0, plain); break;
        }
        if ((wr->dset[d] = id) < 0) {
            st = tw_err_set(err, TW_E_IO, "%s: cannot create dataset '%s'", wr->tmp, dset_names[d]);
            goto done;
        }
    }
done:
    if (st) {
        close_handles(wr);
        remove(wr->tmp);
        writer_free(wr);
    } else {
        *out = wr;
    }
    tw_h5_unlock();
    return st;
}

tw_status tw_shard_writer_open(tw_shard_writer **out, const char *path, const char *split,
                               const char *source, int h, int w, tw_err *err) {
    tw_shard_layout lay = {.h = h, .w = w, .products = TW_PROD_S2 | TW_PROD_S1, .has_labels = 1};
    return tw_shard_writer_create(out, path, split, source, &lay, err);
}

/* Writes one sample's row at index n of a dataset grown to n + 1; on a time axis only the first
 * n_times acquisitions (the rest stay HDF5's fill value, 0). */
static herr_t append_row(hid_t d, hid_t mem_type, int64_t n, int n_times, const void *buf) {
    hid_t fs = -1, ms = -1;
    herr_t r = -1;
    int rank;
    hsize_t dims[5], start[5] = {0}, count[5];
    fs = H5Dget_space(d);
    if (fs < 0 || (rank = H5Sget_simple_extent_dims(fs, dims, NULL)) < 1) goto done;
    H5Sclose(fs);
    fs = -1;
    dims[0] = (hsize_t)n + 1;
    if (H5Dset_extent(d, dims) < 0 || (fs = H5Dget_space(d)) < 0) goto done;
    start[0] = (hsize_t)n;
    count[0] = 1;
    for (int i = 1; i < rank; i++) count[i] = dims[i];
    if (n_times > 0) count[1] = (hsize_t)n_times;
    if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0) goto done;
    if ((ms = H5Screate_simple(rank, count, NULL)) < 0) goto done;
    r = H5Dwrite(d, mem_type, ms, fs, H5P_DEFAULT, buf);
done:
    if (fs >= 0) H5Sclose(fs);
    if (ms >= 0) H5Sclose(ms);
    return r;
}

/* One band's plane merged into acc as a part (its own mean first, so that the sum stays
 * accurate; Chan, Golub, LeVeque's pairwise update). */
static void plane_moments(tw_shard_moments *acc, int band, const uint16_t *u16, const float *f32, size_t n_px) {
    double sum = 0, mean, m2 = 0;
    for (size_t i = 0; i < n_px; i++) sum += u16 ? u16[i] : f32[i];
    mean = sum / (double)n_px;
    for (size_t i = 0; i < n_px; i++) {
        double d = (u16 ? u16[i] : f32[i]) - mean;
        m2 += d * d;
    }
    double c = acc->count[band], n = c + (double)n_px, delta = mean - acc->mean[band];
    acc->mean[band] += delta * (double)n_px / n;
    acc->m2[band] += m2 + delta * delta * c * (double)n_px / n;
    acc->count[band] = n;
}

/* The index of wkt in the CRS table, added if new; -1 for none, -2 when the table is full. */
static int crs_index(tw_shard_writer *wr, const char *wkt, int epsg) {
    if (!wkt || !*wkt) return -1;
    for (int i = 0; i < wr->n_crs; i++)
        if (!strcmp(wr->crs_wkt[i], wkt)) return i;
    if (wr->n_crs == TW_SHARD_MAX_CRS || !(wr->crs_wkt[wr->n_crs] = strdup(wkt))) return -2;
    wr->crs_epsg[wr->n_crs] = epsg;
    return wr->n_crs++;
}

tw_status tw_shard_writer_add(tw_shard_writer *wr, const tw_shard_sample *s, tw_err *err) {
    const tw_shard_layout *l = &wr->lay;
    size_t n_px = (size_t)l->h * (size_t)l->w;
    int T = l->n_times, nt = T > 0 ? s->n_times : 1;
    char name[TW_SHARD_NAME_BYTES] = {0}, s1_name[TW_SHARD_NAME_BYTES] = {0};
    uint8_t zeros43[TW_N_CLASSES43] = {0};
    if (strlen(s->name) >= TW_SHARD_NAME_BYTES || strlen(s->s1_name) >= TW_SHARD_NAME_BYTES)
        return tw_err_set(err, TW_E_RANGE, "%s: patch name '%s' longer than %d bytes", wr->tmp, s->name,
                          TW_SHARD_NAME_BYTES - 1);
    if (T > 0 && (s->n_times < 1 || s->n_times > T))
        return tw_err_set(err, TW_E_RANGE, "%s: patch %s: %d acquisitions, want 1..%d", wr->tmp, s->name, s->n_times, T);
    const void *img[3] = {s->s2, s->s1, s->s2c};
    static const int prod[3] = {TW_PROD_S2, TW_PROD_S1, TW_PROD_S2C};
    static const char *const pname[3] = {"s2", "s1", "s2c"};
    for (int k = 0; k < 3; k++)
        if ((l->products & prod[k]) && !img[k])
            return tw_err_set(err, TW_E_MISSING, "%s: patch %s: no %s image", wr->tmp, s->name, pname[k]);
    if (l->has_labels && !s->labels)
        return tw_err_set(err, TW_E_MISSING, "%s: patch %s: no labels in a labelled shard", wr->tmp, s->name);
    for (size_t i = 0; s->s1 && (l->products & TW_PROD_S1) && i < (size_t)nt * TW_S1_BANDS * n_px; i++)
        if (!isfinite(s->s1[i]))
            return tw_err_set(err, TW_E_NONFINITE, "%s: patch %s: non-finite s1 value at acquisition %zu band %s pixel %zu",
                              wr->tmp, s->name, i / (TW_S1_BANDS * n_px), tw_shard_s1_bands[i / n_px % TW_S1_BANDS],
                              i % n_px);
    int ci = l->has_georef ? crs_index(wr, s->crs_wkt, s->epsg) : -1;
    if (ci == -2)
        return tw_err_set(err, TW_E_RANGE, "%s: patch %s: more than %d CRSs in one shard", wr->tmp, s->name, TW_SHARD_MAX_CRS);
    int16_t crs16 = (int16_t)ci;
    double no_transform[6] = {0};
    int32_t dates[3][TW_SHARD_MAX_TIMES] = {{0}};
    const int32_t *date_in[3] = {s->s2_date, s->s1_date, s->s2c_date};
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < nt && date_in[k]; t++) dates[k][t] = date_in[k][t];
    uint8_t n_times8 = (uint8_t)nt;
    strcpy(name, s->name);
    strcpy(s1_name, s->s1_name);
    if (s->labels43) wr->any_labels43 = 1;
    struct { int d; hid_t t; const void *buf; int timed; } rows[N_DSETS] = {
        {D_S2, H5T_NATIVE_UINT16, s->s2, 1}, {D_S2C, H5T_NATIVE_UINT16, s->s2c, 1}, {D_S1, H5T_NATIVE_FLOAT, s->s1, 1},
        {D_LABELS, H5T_NATIVE_UINT8, s->labels, 0},
        {D_LABELS43, H5T_NATIVE_UINT8, s->labels43 ? s->labels43 : zeros43, 0},
        {D_NAME, wr->str_type, name, 0}, {D_S1NAME, wr->str_type, s1_name, 0}, {D_FLAGS, H5T_NATIVE_UINT8, &s->flags, 0},
        {D_NTIMES, H5T_NATIVE_UINT8, &n_times8, 0}, {D_S2DATE, H5T_NATIVE_INT32, dates[0], 0},
        {D_S1DATE, H5T_NATIVE_INT32, dates[1], 0}, {D_S2CDATE, H5T_NATIVE_INT32, dates[2], 0},
        {D_TRANSFORM, H5T_NATIVE_DOUBLE, s->transform ? s->transform : no_transform, 0},
        {D_CRS, H5T_NATIVE_INT16, &crs16, 0},
    };
    tw_status st = TW_OK;
    tw_h5_lock();
    for (int k = 0; k < N_DSETS && !st; k++) {
        int d = rows[k].d;
        if (wr->dset[d] < 0) continue;
        if (append_row(wr->dset[d], rows[k].t, wr->n, rows[k].timed && T > 0 ? nt : 0, rows[k].buf) < 0)
            st = tw_err_set(err, TW_E_IO, "%s: cannot write sample %lld (%s) of dataset '%s'", wr->tmp, (long long)wr->n,
                            s->name, dset_names[d]);
    }
    tw_h5_unlock();
    if (st) return st;
    /* Moments of this sample's planes, every acquisition, merged band by band. */
    for (int t = 0; t < nt; t++) {
        for (int b = 0; (l->products & TW_PROD_S2) && b < TW_S2_BANDS; b++)
            plane_moments(&wr->mom, b, s->s2 + ((size_t)t * TW_S2_BANDS + b) * n_px, NULL, n_px);
        for (int b = 0; (l->products & TW_PROD_S1) && b < TW_S1_BANDS; b++)
            plane_moments(&wr->mom, TW_S2_BANDS + b, NULL, s->s1 + ((size_t)t * TW_S1_BANDS + b) * n_px, n_px);
        for (int b = 0; (l->products & TW_PROD_S2C) && b < TW_S2C_BANDS; b++)
            plane_moments(&wr->mom, TW_N_BANDS + b, s->s2c + ((size_t)t * TW_S2C_BANDS + b) * n_px, NULL, n_px);
    }
    wr->n++;
    return TW_OK;
}

int64_t tw_shard_writer_count(const tw_shard_writer *wr) { return wr->n; }

static herr_t write_layout_attrs(tw_shard_writer *wr) {
    hid_t f = wr->file;
    const tw_shard_layout *l = &wr->lay;
    const char *prods[3];
    int n_prods = 0;
    if (l->products & TW_PROD_S2) prods[n_prods++] = "s2";
    if (l->products & TW_PROD_S1) prods[n_prods++] = "s1";
    if (l->products & TW_PROD_S2C) prods[n_prods++] = "s2c";
    if (tw_h5_attr_strs(f, "products", prods, n_prods) < 0 || tw_h5_attr_i64(f, "n_times", l->n_times) < 0 ||
        tw_h5_attr_i64(f, "has_labels", l->has_labels) < 0 || tw_h5_attr_i64(f, "has_georef", l->has_georef) < 0 ||
        tw_h5_attr_str(f, "compression", tw_compress_names[l->compress]) < 0)
        return -1;
    if ((l->products & TW_PROD_S2C) && tw_h5_attr_strs(f, "s2c_bands", tw_shard_s2c_bands, TW_S2C_BANDS) < 0) return -1;
    if (l->has_georef) {
        double epsg[TW_SHARD_MAX_CRS];
        for (int i = 0; i < wr->n_crs; i++) epsg[i] = (double)wr->crs_epsg[i];
        /* An empty table is a zero-length attribute; HDF5 wants a null dataspace for that, so a
         * shard without any georeferenced patch stores one empty WKT that no index points at. */
        const char *none = "";
        int k = wr->n_crs ? wr->n_crs : 1;
        if (tw_h5_attr_strs(f, "crs_wkt", wr->n_crs ? (const char *const *)wr->crs_wkt : &none, k) < 0 ||
            tw_h5_attr_f64(f, "crs_epsg", wr->n_crs ? epsg : (double[1]){0}, k) < 0)
            return -1;
    }
    return 0;
}

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
        tw_h5_attr_f64(f, "moment_count", wr->mom.count, TW_N_STATS) < 0 ||
        tw_h5_attr_f64(f, "moment_mean", wr->mom.mean, TW_N_STATS) < 0 ||
        tw_h5_attr_f64(f, "moment_m2", wr->mom.m2, TW_N_STATS) < 0 || write_layout_attrs(wr) < 0) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot write the shard attributes", wr->tmp);
    }
    close_handles(wr);
    tw_h5_unlock();
    if (!st && rename(wr->tmp, wr->path) != 0)
        st = tw_err_set(err, TW_E_IO, "%s: cannot rename to %s: %s", wr->tmp, wr->path, strerror(errno));
    if (st) remove(wr->tmp);
    writer_free(wr);
    return st;
}

void tw_shard_writer_abort(tw_shard_writer *wr) {
    if (!wr) return;
    tw_h5_lock();
    close_handles(wr);
    tw_h5_unlock();
    remove(wr->tmp);
    writer_free(wr);
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
               tw_h5_attr_f64(f, "s1_std", norm->std + TW_S2_BANDS, TW_S1_BANDS) < 0 ||
               (H5Aexists(f, "s2c_bands") > 0 &&
                (tw_h5_attr_f64(f, "s2c_mean", norm->mean + TW_N_BANDS, TW_S2C_BANDS) < 0 ||
                 tw_h5_attr_f64(f, "s2c_std", norm->std + TW_N_BANDS, TW_S2C_BANDS) < 0))) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot write the normalisation attributes", path);
    }
    if (f >= 0 && H5Fclose(f) < 0 && !st) st = tw_err_set(err, TW_E_IO, "%s: cannot close", path);
    tw_h5_unlock();
    return st;
}
