/* The validating shard reader: checks every dataset and attribute when a shard is opened, then
 * reads one sample per call, straight from its chunk (the chunk cache is off: access is random). */
#include "data/shard.h"
#include "data/shard_h5.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { D_S2, D_S1, D_LABELS, D_LABELS43, D_NAME, D_S1NAME, D_FLAGS, N_DSETS };

struct tw_shard {
    char path[4096];
    hid_t file, dset[N_DSETS], fspace[N_DSETS], mspace[N_DSETS], str_type;
    int64_t n, n_skipped;
    int64_t file_bytes;        /* the size at open (sec2 driver), -1 when unknown */
    int h, w, has_labels43, has_norm;
    tw_shard_moments mom;
    tw_shard_norm norm;
};

/* What each dataset must be: name, type class, element size, signedness, rank, trailing dims. */
typedef struct {
    const char *name;
    H5T_class_t cls;
    size_t size;
    int is_signed;       /* -1: not an integer */
    int rank;
    const char *what;    /* for messages */
} dset_spec;

static const dset_spec specs[N_DSETS] = {
    {"s2", H5T_INTEGER, 2, 0, 4, "uint16 [N,12,H,W]"},
    {"s1", H5T_FLOAT, 4, -1, 4, "float32 [N,2,H,W]"},
    {"labels", H5T_INTEGER, 1, 0, 2, "uint8 [N,19]"},
    {"labels43", H5T_INTEGER, 1, 0, 2, "uint8 [N,43]"},
    {"name", H5T_STRING, TW_SHARD_NAME_BYTES, -1, 1, "fixed-length string [N]"},
    {"s1_name", H5T_STRING, TW_SHARD_NAME_BYTES, -1, 1, "fixed-length string [N]"},
    {"flags", H5T_INTEGER, 1, 0, 1, "uint8 [N]"},
};

void tw_shard_close(tw_shard *sh) {
    if (!sh) return;
    tw_h5_lock();
    for (int i = 0; i < N_DSETS; i++) {
        if (sh->mspace[i] >= 0) H5Sclose(sh->mspace[i]);
        if (sh->fspace[i] >= 0) H5Sclose(sh->fspace[i]);
        if (sh->dset[i] >= 0) H5Dclose(sh->dset[i]);
    }
    if (sh->str_type >= 0) H5Tclose(sh->str_type);
    if (sh->file >= 0) H5Fclose(sh->file);
    tw_h5_unlock();
    free(sh);
}

/* The file's size now, through HDF5's own descriptor (the default sec2 driver hands out an int
 * fd), or -1 when the driver gives none. Under tw_h5_lock. */
static int64_t file_bytes_now(const tw_shard *sh) {
    void *handle = NULL;
    struct stat sb;
    if (H5Fget_vfd_handle(sh->file, H5P_DEFAULT, &handle) < 0 || !handle || fstat(*(int *)handle, &sb) != 0) return -1;
    return (int64_t)sb.st_size;
}

/* Opens dataset i and checks type, rank, shape and per-sample chunking. */
static tw_status open_dset(tw_shard *sh, int i, hsize_t *dims, tw_err *err) {
    const dset_spec *sp = &specs[i];
    const char *p = sh->path;
    if (H5Lexists(sh->file, sp->name, H5P_DEFAULT) <= 0)
        return tw_err_set(err, TW_E_MISSING, "%s: dataset '%s' is missing", p, sp->name);
    hid_t d = sh->dset[i] = H5Dopen2(sh->file, sp->name, H5P_DEFAULT);
    if (d < 0) return tw_err_set(err, TW_E_FORMAT, "%s: dataset '%s' cannot be opened (corrupt file?)", p, sp->name);
    hid_t t = H5Dget_type(d);
    int ok = t >= 0 && H5Tget_class(t) == sp->cls && H5Tget_size(t) == sp->size;
    if (ok && sp->is_signed >= 0) ok = H5Tget_sign(t) == (sp->is_signed ? H5T_SGN_2 : H5T_SGN_NONE);
    if (ok && sp->cls == H5T_STRING) ok = H5Tis_variable_str(t) == 0;
    if (t >= 0) H5Tclose(t);
    if (!ok) return tw_err_set(err, TW_E_DTYPE, "%s: dataset '%s' has the wrong dtype, want %s", p, sp->name, sp->what);
    hid_t s = sh->fspace[i] = H5Dget_space(d);
    if (s < 0 || H5Sget_simple_extent_ndims(s) != sp->rank || H5Sget_simple_extent_dims(s, dims, NULL) < 0)
        return tw_err_set(err, TW_E_SHAPE, "%s: dataset '%s' has the wrong rank, want %s", p, sp->name, sp->what);
    hid_t dcpl = H5Dget_create_plist(d);
    hsize_t chunk[4] = {0};
    int chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, sp->rank, chunk) == sp->rank;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (chunked) {
        chunked = chunk[0] == 1;
        for (int k = 1; k < sp->rank; k++) chunked = chunked && chunk[k] == dims[k];
    }
    if (!chunked) return tw_err_set(err, TW_E_FORMAT, "%s: dataset '%s' is not chunked one sample per chunk", p, sp->name);
    hsize_t count[4] = {1, dims[1], dims[2], dims[3]};
    sh->mspace[i] = H5Screate_simple(sp->rank, count, NULL);
    if (sh->mspace[i] < 0) return tw_err_set(err, TW_E_IO, "%s: dataset '%s': cannot make a dataspace", p, sp->name);
    return TW_OK;
}

static tw_status validate(tw_shard *sh, tw_err *err) {
    const char *p = sh->path;
    int64_t ver, has43;
    tw_status st;
    if ((st = tw_h5_read_i64(sh->file, "format_version", &ver, p, err))) return st;
    if (ver != TW_SHARD_VERSION)
        return tw_err_set(err, TW_E_FORMAT, "%s: shard format version %lld, want %d", p, (long long)ver, TW_SHARD_VERSION);
    if ((st = tw_h5_check_strs(sh->file, "s2_bands", tw_shard_s2_bands, TW_S2_BANDS, p, err)) ||
        (st = tw_h5_check_strs(sh->file, "s1_bands", tw_shard_s1_bands, TW_S1_BANDS, p, err)) ||
        (st = tw_h5_check_strs(sh->file, "classes", tw_labels_names19, TW_N_CLASSES, p, err)) ||
        (st = tw_h5_read_i64(sh->file, "has_labels43", &has43, p, err)) ||
        (st = tw_h5_read_i64(sh->file, "n_skipped", &sh->n_skipped, p, err)) ||
        (st = tw_h5_read_f64(sh->file, "moment_count", &sh->mom.count, 1, p, err)) ||
        (st = tw_h5_read_f64(sh->file, "moment_mean", sh->mom.mean, TW_N_BANDS, p, err)) ||
        (st = tw_h5_read_f64(sh->file, "moment_m2", sh->mom.m2, TW_N_BANDS, p, err)))
        return st;
    sh->has_labels43 = has43 != 0;
    hsize_t dims[N_DSETS][4];
    for (int i = 0; i < N_DSETS; i++)
        if ((st = open_dset(sh, i, dims[i], err))) return st;
    sh->n = (int64_t)dims[D_S2][0];
    sh->h = (int)dims[D_S2][2];
    sh->w = (int)dims[D_S2][3];
    for (int i = 0; i < N_DSETS; i++)
        if ((int64_t)dims[i][0] != sh->n)
            return tw_err_set(err, TW_E_SHAPE, "%s: dataset '%s' has %llu samples, 's2' has %lld", p, specs[i].name,
                              (unsigned long long)dims[i][0], (long long)sh->n);
    if (dims[D_S2][1] != TW_S2_BANDS || dims[D_S1][1] != TW_S1_BANDS || dims[D_S1][2] != dims[D_S2][2] ||
        dims[D_S1][3] != dims[D_S2][3] || dims[D_LABELS][1] != TW_N_CLASSES || dims[D_LABELS43][1] != TW_N_CLASSES43)
        return tw_err_set(err, TW_E_SHAPE,
                          "%s: shapes s2 [%llu,%llu,%llu,%llu], s1 [%llu,%llu,%llu,%llu], labels [.,%llu], labels43 [.,%llu]; "
                          "want [N,12,H,W], [N,2,H,W], [N,19], [N,43]",
                          p, (unsigned long long)dims[D_S2][0], (unsigned long long)dims[D_S2][1],
                          (unsigned long long)dims[D_S2][2], (unsigned long long)dims[D_S2][3],
                          (unsigned long long)dims[D_S1][0], (unsigned long long)dims[D_S1][1],
                          (unsigned long long)dims[D_S1][2], (unsigned long long)dims[D_S1][3],
                          (unsigned long long)dims[D_LABELS][1], (unsigned long long)dims[D_LABELS43][1]);
    if (sh->n == 0) return tw_err_set(err, TW_E_SHAPE, "%s: shard holds no samples", p);
    /* The normalisation is optional here (absent while a conversion runs); tw_shard_norm_get
     * reports its absence to whoever needs it. */
    if (H5Aexists(sh->file, "s2_mean") > 0) {
        double v[4][TW_S2_BANDS];
        if ((st = tw_h5_read_f64(sh->file, "s2_mean", v[0], TW_S2_BANDS, p, err)) ||
            (st = tw_h5_read_f64(sh->file, "s2_std", v[1], TW_S2_BANDS, p, err)) ||
            (st = tw_h5_read_f64(sh->file, "s1_mean", v[2], TW_S1_BANDS, p, err)) ||
            (st = tw_h5_read_f64(sh->file, "s1_std", v[3], TW_S1_BANDS, p, err)))
            return st;
        for (int b = 0; b < TW_N_BANDS; b++) {
            sh->norm.mean[b] = b < TW_S2_BANDS ? v[0][b] : v[2][b - TW_S2_BANDS];
            sh->norm.std[b] = b < TW_S2_BANDS ? v[1][b] : v[3][b - TW_S2_BANDS];
            if (!(sh->norm.std[b] > 0) || !isfinite(sh->norm.std[b]) || !isfinite(sh->norm.mean[b]))
                return tw_err_set(err, TW_E_RANGE, "%s: normalisation of band %d: mean %g std %g", p, b,
                                  sh->norm.mean[b], sh->norm.std[b]);
        }
        sh->has_norm = 1;
    }
    return TW_OK;
}

tw_status tw_shard_open(tw_shard **out, const char *path, tw_err *err) {
    *out = NULL;
    tw_shard *sh = calloc(1, sizeof *sh);
    if (!sh) return tw_err_set(err, TW_E_NOMEM, "%s: shard", path);
    snprintf(sh->path, sizeof sh->path, "%s", path);
    sh->file = sh->str_type = -1;
    for (int i = 0; i < N_DSETS; i++) sh->dset[i] = sh->fspace[i] = sh->mspace[i] = -1;
    tw_status st = TW_OK;
    tw_h5_lock();
    if (H5Fis_hdf5(path) <= 0) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: not a readable HDF5 file (missing, truncated or corrupt)", path);
    } else if ((sh->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: cannot open as HDF5 (truncated or corrupt?)", path);
    } else if ((sh->str_type = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(sh->str_type, TW_SHARD_NAME_BYTES) < 0 ||
               H5Tset_strpad(sh->str_type, H5T_STR_NULLPAD) < 0) {
        st = tw_err_set(err, TW_E_IO, "%s: string type", path);
    } else {
        st = validate(sh, err);
        sh->file_bytes = file_bytes_now(sh);
    }
    tw_h5_unlock();
    if (st) {
        tw_shard_close(sh);
        return st;
    }
    *out = sh;
    return TW_OK;
}

int64_t tw_shard_n(const tw_shard *sh) { return sh->n; }
int tw_shard_h(const tw_shard *sh) { return sh->h; }
int tw_shard_w(const tw_shard *sh) { return sh->w; }
const char *tw_shard_path(const tw_shard *sh) { return sh->path; }
int tw_shard_has_labels43(const tw_shard *sh) { return sh->has_labels43; }
int64_t tw_shard_n_skipped(const tw_shard *sh) { return sh->n_skipped; }
const tw_shard_moments *tw_shard_moments_of(const tw_shard *sh) { return &sh->mom; }

tw_status tw_shard_norm_get(const tw_shard *sh, tw_shard_norm *norm, tw_err *err) {
    if (!sh->has_norm)
        return tw_err_set(err, TW_E_MISSING,
                          "%s: no normalisation attributes (s2_mean, ...): the conversion did not finish", sh->path);
    *norm = sh->norm;
    return TW_OK;
}

static herr_t read_row(tw_shard *sh, int i, hid_t mem_type, int64_t row, void *buf) {
    hsize_t start[4] = {(hsize_t)row, 0, 0, 0}, count[4] = {1, 1, 1, 1};
    if (H5Sget_simple_extent_dims(sh->mspace[i], count, NULL) < 0) return -1;
    if (H5Sselect_hyperslab(sh->fspace[i], H5S_SELECT_SET, start, NULL, count, NULL) < 0) return -1;
    return H5Dread(sh->dset[i], mem_type, sh->mspace[i], sh->fspace[i], H5P_DEFAULT, buf);
}

tw_status tw_shard_read(tw_shard *sh, int64_t i, uint16_t *s2, float *s1, uint8_t *labels,
                        uint8_t *labels43, char *name, char *s1_name, uint8_t *flags, tw_err *err) {
    if (i < 0 || i >= sh->n)
        return tw_err_set(err, TW_E_RANGE, "%s: sample %lld out of range [0, %lld)", sh->path, (long long)i, (long long)sh->n);
    struct { int d; hid_t t; void *buf; } want[N_DSETS] = {
        {D_S2, H5T_NATIVE_UINT16, s2},       {D_S1, H5T_NATIVE_FLOAT, s1},   {D_LABELS, H5T_NATIVE_UINT8, labels},
        {D_LABELS43, H5T_NATIVE_UINT8, labels43}, {D_NAME, sh->str_type, name}, {D_S1NAME, sh->str_type, s1_name},
        {D_FLAGS, H5T_NATIVE_UINT8, flags},
    };
    tw_status st = TW_OK;
    tw_h5_lock();
    for (int k = 0; k < N_DSETS && !st; k++)
        if (want[k].buf && read_row(sh, want[k].d, want[k].t, i, want[k].buf) < 0)
            st = tw_err_set(err, TW_E_IO, "%s: cannot read sample %lld of dataset '%s' (truncated or corrupt?)", sh->path,
                            (long long)i, specs[want[k].d].name);
    /* HDF5 reads the part of a file cut short after it was opened as zeros, without an error:
     * a shard truncated in place (rewritten, a full disk on another node) would train on them. */
    int64_t now = st || sh->file_bytes < 0 ? sh->file_bytes : file_bytes_now(sh);
    if (now < sh->file_bytes)
        st = tw_err_set(err, TW_E_IO, "%s: sample %lld: the file shrank from %lld to %lld bytes since it was opened "
                        "(truncated or being rewritten)", sh->path, (long long)i, (long long)sh->file_bytes,
                        (long long)now);
    tw_h5_unlock();
    return st;
}

tw_status tw_shard_read_labels(tw_shard *sh, uint8_t *labels, int n_classes, tw_err *err) {
    if (n_classes != TW_N_CLASSES && n_classes != TW_N_CLASSES43)
        return tw_err_set(err, TW_E_RANGE, "%s: %d classes, want %d or %d", sh->path, n_classes, TW_N_CLASSES,
                          TW_N_CLASSES43);
    int d = n_classes == TW_N_CLASSES ? D_LABELS : D_LABELS43;
    tw_h5_lock();
    herr_t r = H5Dread(sh->dset[d], H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels);
    tw_h5_unlock();
    if (r < 0)
        return tw_err_set(err, TW_E_IO, "%s: cannot read dataset '%s' (truncated or corrupt?)", sh->path, specs[d].name);
    return TW_OK;
}
