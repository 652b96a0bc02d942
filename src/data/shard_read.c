/* The validating shard reader (versions 1 and 2): checks every dataset and attribute when a
 * shard is opened, then reads one sample (one acquisition) per call, straight from its chunk
 * (the chunk cache is off: access is random). */
#include "data/shard.h"
#include "data/shard_h5.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct tw_shard {
    char path[4096];
    hid_t file, dset[N_DSETS], fspace[N_DSETS], mspace[N_DSETS], str_type;
    int64_t n, n_skipped;
    int64_t file_bytes;        /* the size at open (sec2 driver), -1 when unknown */
    int version, has_labels43, has_norm;
    tw_shard_layout lay;
    tw_shard_moments mom;
    tw_shard_norm norm;
    int n_crs;                 /* the CRS table (version 2, has_georef) */
    char **crs_wkt;
    double *crs_epsg;
};

/* What each dataset must be: name, type class, element size, signedness, rank (without a time
 * axis; images gain one with it), the bands of an image (0: not an image), for messages. */
typedef struct {
    const char *name;
    H5T_class_t cls;
    size_t size;
    int is_signed;       /* -1: not an integer */
    int rank;
    int bands;
    const char *what;
} dset_spec;

static const dset_spec specs[N_DSETS] = {
    {"s2", H5T_INTEGER, 2, 0, 4, TW_S2_BANDS, "uint16 [N,12,H,W] or [N,T,12,H,W]"},
    {"s2c", H5T_INTEGER, 2, 0, 4, TW_S2C_BANDS, "uint16 [N,13,H,W] or [N,T,13,H,W]"},
    {"s1", H5T_FLOAT, 4, -1, 4, TW_S1_BANDS, "float32 [N,2,H,W] or [N,T,2,H,W]"},
    {"labels", H5T_INTEGER, 1, 0, 2, 0, "uint8 [N,19]"},
    {"labels43", H5T_INTEGER, 1, 0, 2, 0, "uint8 [N,43]"},
    {"name", H5T_STRING, TW_SHARD_NAME_BYTES, -1, 1, 0, "fixed-length string [N]"},
    {"s1_name", H5T_STRING, TW_SHARD_NAME_BYTES, -1, 1, 0, "fixed-length string [N]"},
    {"flags", H5T_INTEGER, 1, 0, 1, 0, "uint8 [N]"},
    {"n_times", H5T_INTEGER, 1, 0, 1, 0, "uint8 [N]"},
    {"s2_date", H5T_INTEGER, 4, 1, 2, 0, "int32 [N,T]"},
    {"s1_date", H5T_INTEGER, 4, 1, 2, 0, "int32 [N,T]"},
    {"s2c_date", H5T_INTEGER, 4, 1, 2, 0, "int32 [N,T]"},
    {"transform", H5T_FLOAT, 8, -1, 2, 0, "float64 [N,6]"},
    {"crs", H5T_INTEGER, 2, 1, 1, 0, "int16 [N]"},
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
    free(sh->crs_wkt);   /* one allocation: the pointers, then the strings */
    free(sh->crs_epsg);
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

/* Opens dataset i and checks type, rank, shape and per-sample chunking (one chunk per
 * acquisition on a time axis); the memory space reads one sample (one acquisition). */
static tw_status open_dset(tw_shard *sh, int i, hsize_t *dims, tw_err *err) {
    const dset_spec *sp = &specs[i];
    const char *p = sh->path;
    int timed = sp->bands && sh->lay.n_times > 0, rank = sp->rank + timed;
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
    if (s < 0 || H5Sget_simple_extent_ndims(s) != rank || H5Sget_simple_extent_dims(s, dims, NULL) < 0)
        return tw_err_set(err, TW_E_SHAPE, "%s: dataset '%s' has the wrong rank (%s), want %s", p, sp->name,
                          timed ? "time axis: n_times > 0" : "no time axis", sp->what);
    hid_t dcpl = H5Dget_create_plist(d);
    hsize_t chunk[5] = {0};
    int chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, rank, chunk) == rank;
    /* A compressed shard needs its filter here too (LZ4, zstd: a plugin): say which is missing. */
    int n_filters = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
    H5Z_filter_t missing = -1;
    for (int k = 0; k < n_filters && missing < 0; k++) {
        unsigned flags, cd[8];
        size_t n_cd = 8;
        char fname[64] = "";
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)k, &flags, &n_cd, cd, sizeof fname, fname, NULL);
        if (id < 0 || H5Zfilter_avail(id) <= 0) missing = id < 0 ? 0 : id;
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (missing >= 0)
        return tw_err_set(err, TW_E_UNSUPPORTED, "%s: dataset '%s' is compressed with HDF5 filter %d, which this HDF5 "
                          "cannot load (a plugin: HDF5_PLUGIN_PATH)", p, sp->name, (int)missing);
    if (chunked) {
        chunked = chunk[0] == 1 && (!timed || chunk[1] == 1);
        for (int k = 1 + timed; k < rank; k++) chunked = chunked && chunk[k] == dims[k];
    }
    if (!chunked)
        return tw_err_set(err, TW_E_FORMAT, "%s: dataset '%s' is not chunked one %s per chunk", p, sp->name,
                          timed ? "acquisition" : "sample");
    hsize_t count[5] = {1, 1, 1, 1, 1};
    for (int k = 1; k < rank; k++) count[k] = dims[k];
    if (timed) count[1] = 1;
    sh->mspace[i] = H5Screate_simple(rank, count, NULL);
    if (sh->mspace[i] < 0) return tw_err_set(err, TW_E_IO, "%s: dataset '%s': cannot make a dataspace", p, sp->name);
    return TW_OK;
}

/* Version 2's layout attributes: products, the time axis, labels, georeference. */
static tw_status read_layout(tw_shard *sh, tw_err *err) {
    const char *p = sh->path;
    tw_shard_layout *l = &sh->lay;
    int64_t nt, hl, hg;
    tw_status st;
    if ((st = tw_h5_read_i64(sh->file, "n_times", &nt, p, err)) ||
        (st = tw_h5_read_i64(sh->file, "has_labels", &hl, p, err)) ||
        (st = tw_h5_read_i64(sh->file, "has_georef", &hg, p, err)))
        return st;
    if (nt < 0 || nt > TW_SHARD_MAX_TIMES)
        return tw_err_set(err, TW_E_RANGE, "%s: attribute 'n_times' is %lld, want 0..%d", p, (long long)nt,
                          TW_SHARD_MAX_TIMES);
    l->n_times = (int)nt;
    l->has_labels = hl != 0;
    l->has_georef = hg != 0;
    static const char *const prod_names[3] = {"s2", "s1", "s2c"};
    static const int prod_bits[3] = {TW_PROD_S2, TW_PROD_S1, TW_PROD_S2C};
    int n_prods = 0;
    char **names = NULL;
    if ((st = tw_h5_read_strs(sh->file, "products", &names, &n_prods, p, err))) return st;
    l->products = 0;
    for (int i = 0; i < n_prods && !st; i++) {
        int bit = 0;
        for (int k = 0; k < 3; k++)
            if (!strcmp(names[i], prod_names[k])) bit = prod_bits[k];
        if (!bit || (l->products & bit))
            st = tw_err_set(err, TW_E_FORMAT, "%s: attribute 'products'[%d] is '%s', want s2, s1 or s2c once each", p, i,
                            names[i]);
        l->products |= bit;
    }
    free(names);
    if (!st && !l->products) st = tw_err_set(err, TW_E_FORMAT, "%s: attribute 'products' names no image product", p);
    if (!st && (l->products & TW_PROD_S2C))
        st = tw_h5_check_strs(sh->file, "s2c_bands", tw_shard_s2c_bands, TW_S2C_BANDS, p, err);
    if (!st && l->has_georef) {
        int n_epsg = 0;
        if ((st = tw_h5_read_strs(sh->file, "crs_wkt", &sh->crs_wkt, &sh->n_crs, p, err))) return st;
        if (sh->n_crs < 1 || sh->n_crs > TW_SHARD_MAX_CRS)
            return tw_err_set(err, TW_E_FORMAT, "%s: attribute 'crs_wkt' holds %d CRSs, want 1..%d", p, sh->n_crs,
                              TW_SHARD_MAX_CRS);
        n_epsg = sh->n_crs;
        if (!(sh->crs_epsg = malloc(sizeof(double) * (size_t)n_epsg))) return tw_err_set(err, TW_E_NOMEM, "%s: crs", p);
        st = tw_h5_read_f64(sh->file, "crs_epsg", sh->crs_epsg, n_epsg, p, err);
    }
    return st;
}

/* The per-sample values the open checks: acquisition counts in 1..T, dates valid or 0, CRS
 * indices inside the table. One read each (N bytes to 16 N bytes). */
static tw_status check_values(tw_shard *sh, tw_err *err) {
    const char *p = sh->path;
    int T = sh->lay.n_times;
    size_t n = (size_t)sh->n;
    tw_status st = TW_OK;
    if (T > 0) {
        uint8_t *nt = malloc(n);
        int32_t *dates = malloc(n * (size_t)T * sizeof *dates);
        if (!nt || !dates) st = tw_err_set(err, TW_E_NOMEM, "%s: n_times", p);
        else if (H5Dread(sh->dset[D_NTIMES], H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, nt) < 0)
            st = tw_err_set(err, TW_E_IO, "%s: cannot read dataset 'n_times'", p);
        for (size_t i = 0; !st && i < n; i++)
            if (nt[i] < 1 || nt[i] > T)
                st = tw_err_set(err, TW_E_RANGE, "%s: dataset 'n_times'[%zu] is %d, want 1..%d", p, i, nt[i], T);
        for (int d = D_S2DATE; d <= D_S2CDATE && !st; d++) {
            if (sh->dset[d] < 0) continue;
            if (H5Dread(sh->dset[d], H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, dates) < 0) {
                st = tw_err_set(err, TW_E_IO, "%s: cannot read dataset '%s'", p, specs[d].name);
                break;
            }
            for (size_t k = 0; k < n * (size_t)T && !st; k++) {
                int32_t v = dates[k], mo = v / 100 % 100, dy = v % 100;
                if (v != 0 && (v < 19000101 || v > 29991231 || mo < 1 || mo > 12 || dy < 1 || dy > 31))
                    st = tw_err_set(err, TW_E_RANGE, "%s: dataset '%s'[%zu][%zu] is %d, want YYYYMMDD or 0", p,
                                    specs[d].name, k / (size_t)T, k % (size_t)T, v);
            }
        }
        free(nt);
        free(dates);
    }
    if (!st && sh->lay.has_georef) {
        int16_t *crs = malloc(n * sizeof *crs);
        if (!crs) return tw_err_set(err, TW_E_NOMEM, "%s: crs", p);
        if (H5Dread(sh->dset[D_CRS], H5T_NATIVE_INT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, crs) < 0)
            st = tw_err_set(err, TW_E_IO, "%s: cannot read dataset 'crs'", p);
        for (size_t i = 0; !st && i < n; i++)
            if (crs[i] < -1 || crs[i] >= sh->n_crs || (crs[i] >= 0 && !sh->crs_wkt[crs[i]][0]))
                st = tw_err_set(err, TW_E_RANGE, "%s: dataset 'crs'[%zu] is %d, not an entry of the %d-CRS table "
                                "(attribute 'crs_wkt') or -1", p, i, crs[i], sh->n_crs);
        free(crs);
    }
    return st;
}

/* The normalisation attributes, where the conversion finished (absent while it runs). */
static tw_status read_norm(tw_shard *sh, tw_err *err) {
    const char *p = sh->path;
    tw_status st;
    if (H5Aexists(sh->file, "s2_mean") <= 0) return TW_OK;
    double v[4][TW_S2_BANDS];
    if ((st = tw_h5_read_f64(sh->file, "s2_mean", v[0], TW_S2_BANDS, p, err)) ||
        (st = tw_h5_read_f64(sh->file, "s2_std", v[1], TW_S2_BANDS, p, err)) ||
        (st = tw_h5_read_f64(sh->file, "s1_mean", v[2], TW_S1_BANDS, p, err)) ||
        (st = tw_h5_read_f64(sh->file, "s1_std", v[3], TW_S1_BANDS, p, err)))
        return st;
    for (int b = 0; b < TW_N_STATS; b++) {
        sh->norm.mean[b] = b < TW_S2_BANDS ? v[0][b] : b < TW_N_BANDS ? v[2][b - TW_S2_BANDS] : 0.0;
        sh->norm.std[b] = b < TW_S2_BANDS ? v[1][b] : b < TW_N_BANDS ? v[3][b - TW_S2_BANDS] : 1.0;
    }
    if ((sh->lay.products & TW_PROD_S2C) &&
        ((st = tw_h5_read_f64(sh->file, "s2c_mean", sh->norm.mean + TW_N_BANDS, TW_S2C_BANDS, p, err)) ||
         (st = tw_h5_read_f64(sh->file, "s2c_std", sh->norm.std + TW_N_BANDS, TW_S2C_BANDS, p, err))))
        return st;
    for (int b = 0; b < TW_N_STATS; b++)
        if (!(sh->norm.std[b] > 0) || !isfinite(sh->norm.std[b]) || !isfinite(sh->norm.mean[b]))
            return tw_err_set(err, TW_E_RANGE, "%s: normalisation of band %d: mean %g std %g", p, b, sh->norm.mean[b],
                              sh->norm.std[b]);
    sh->has_norm = 1;
    return TW_OK;
}

/* trusted: the shard passed this validation earlier in the process (the loader re-opening it), so
 * the string attributes and the per-sample values are not checked again; types, shapes and the
 * chunking still are (they are what the reads rely on). */
static tw_status validate(tw_shard *sh, int trusted, tw_err *err) {
    const char *p = sh->path;
    int64_t ver, has43;
    tw_status st;
    if ((st = tw_h5_read_i64(sh->file, "format_version", &ver, p, err))) return st;
    if (ver != 1 && ver != TW_SHARD_VERSION)
        return tw_err_set(err, TW_E_FORMAT, "%s: shard format version %lld, want 1 or %d", p, (long long)ver, TW_SHARD_VERSION);
    sh->version = (int)ver;
    sh->lay = (tw_shard_layout){.products = TW_PROD_S2 | TW_PROD_S1, .has_labels = 1};
    if (ver >= 2 && (st = read_layout(sh, err))) return st;
    /* Version 1 keeps one moment count for all 14 bands; version 2 one per band, 27 bands. */
    int n_mom = ver >= 2 ? TW_N_STATS : TW_N_BANDS;
    if ((!trusted && (st = tw_h5_check_strs(sh->file, "s2_bands", tw_shard_s2_bands, TW_S2_BANDS, p, err))) ||
        (!trusted && (st = tw_h5_check_strs(sh->file, "s1_bands", tw_shard_s1_bands, TW_S1_BANDS, p, err))) ||
        (!trusted && (st = tw_h5_check_strs(sh->file, "classes", tw_labels_names19, TW_N_CLASSES, p, err))) ||
        (st = tw_h5_read_i64(sh->file, "has_labels43", &has43, p, err)) ||
        (st = tw_h5_read_i64(sh->file, "n_skipped", &sh->n_skipped, p, err)) ||
        (st = tw_h5_read_f64(sh->file, "moment_count", sh->mom.count, ver >= 2 ? TW_N_STATS : 1, p, err)) ||
        (st = tw_h5_read_f64(sh->file, "moment_mean", sh->mom.mean, n_mom, p, err)) ||
        (st = tw_h5_read_f64(sh->file, "moment_m2", sh->mom.m2, n_mom, p, err)))
        return st;
    if (ver == 1)
        for (int b = 1; b < TW_N_BANDS; b++) sh->mom.count[b] = sh->mom.count[0];
    sh->has_labels43 = has43 != 0 && sh->lay.has_labels;
    hsize_t dims[N_DSETS][5];
    int first = -1;   /* the first image dataset: the sample count and the patch size */
    for (int i = 0; i < N_DSETS; i++) {
        if (!tw_shard_has_dset(&sh->lay, i)) continue;
        if ((st = open_dset(sh, i, dims[i], err))) return st;
        if (first < 0) first = i;
    }
    int timed = sh->lay.n_times > 0, T = sh->lay.n_times;
    sh->n = (int64_t)dims[first][0];
    sh->lay.h = (int)dims[first][2 + timed];
    sh->lay.w = (int)dims[first][3 + timed];
    for (int i = 0; i < N_DSETS; i++)
        if (tw_shard_has_dset(&sh->lay, i) && (int64_t)dims[i][0] != sh->n)
            return tw_err_set(err, TW_E_SHAPE, "%s: dataset '%s' has %llu samples, '%s' has %lld", p, specs[i].name,
                              (unsigned long long)dims[i][0], specs[first].name, (long long)sh->n);
    for (int i = 0; i < N_DSETS; i++) {
        if (!tw_shard_has_dset(&sh->lay, i)) continue;
        const hsize_t *d = dims[i];
        int bad = 0;
        if (specs[i].bands)
            bad = (timed && d[1] != (hsize_t)T) || d[1 + timed] != (hsize_t)specs[i].bands ||
                  d[2 + timed] != (hsize_t)sh->lay.h || d[3 + timed] != (hsize_t)sh->lay.w;
        else if (i == D_LABELS || i == D_LABELS43)
            bad = d[1] != (hsize_t)(i == D_LABELS ? TW_N_CLASSES : TW_N_CLASSES43);
        else if (i >= D_S2DATE && i <= D_S2CDATE)
            bad = d[1] != (hsize_t)T;
        else if (i == D_TRANSFORM)
            bad = d[1] != 6;
        if (bad) {
            char got[160];
            int len = snprintf(got, sizeof got, "[%llu", (unsigned long long)d[0]);
            for (int k = 1; k < specs[i].rank + (specs[i].bands && timed); k++)
                len += snprintf(got + len, sizeof got - (size_t)len, ",%llu", (unsigned long long)d[k]);
            snprintf(got + len, sizeof got - (size_t)len, "]");
            return tw_err_set(err, TW_E_SHAPE, "%s: %s %s, want %s (patches %dx%d, %d acquisitions)", p, specs[i].name,
                              got, specs[i].what, sh->lay.h, sh->lay.w, T);
        }
    }
    if (sh->n == 0) return tw_err_set(err, TW_E_SHAPE, "%s: shard holds no samples", p);
    if (!trusted && (st = check_values(sh, err))) return st;
    return read_norm(sh, err);
}

static tw_status shard_open(tw_shard **out, const char *path, int trusted, tw_err *err) {
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
        st = validate(sh, trusted, err);
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

tw_status tw_shard_peek(tw_shard_info *info, const char *path, tw_err *err) {
    memset(info, 0, sizeof *info);
    tw_shard *sh = calloc(1, sizeof *sh);
    if (!sh) return tw_err_set(err, TW_E_NOMEM, "%s: shard", path);
    snprintf(sh->path, sizeof sh->path, "%s", path);
    sh->file = sh->str_type = -1;
    for (int i = 0; i < N_DSETS; i++) sh->dset[i] = sh->fspace[i] = sh->mspace[i] = -1;
    tw_status st = TW_OK;
    int64_t ver = 0, has43 = 0;
    tw_h5_lock();
    if (H5Fis_hdf5(path) <= 0 || (sh->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: not a readable HDF5 file (missing, truncated or corrupt)", path);
    } else if (!(st = tw_h5_read_i64(sh->file, "format_version", &ver, path, err))) {
        if (ver != 1 && ver != TW_SHARD_VERSION)
            st = tw_err_set(err, TW_E_FORMAT, "%s: shard format version %lld, want 1 or %d", path, (long long)ver,
                            TW_SHARD_VERSION);
        sh->version = (int)ver;
        sh->lay = (tw_shard_layout){.products = TW_PROD_S2 | TW_PROD_S1, .has_labels = 1};
        if (!st && ver >= 2) st = read_layout(sh, err);
        if (!st) st = tw_h5_read_i64(sh->file, "n_samples", &sh->n, path, err);
        if (!st) st = tw_h5_read_i64(sh->file, "has_labels43", &has43, path, err);
        if (!st) st = read_norm(sh, err);
        /* The patch size: the first image dataset's last two dimensions. */
        int first = sh->lay.products & TW_PROD_S2 ? D_S2 : sh->lay.products & TW_PROD_S1 ? D_S1 : D_S2C;
        hsize_t dims[5];
        hid_t d = st ? -1 : H5Dopen2(sh->file, specs[first].name, H5P_DEFAULT), sp = d < 0 ? -1 : H5Dget_space(d);
        int rank = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
        if (!st && (rank < 4 || rank > 5 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0))
            st = tw_err_set(err, TW_E_FORMAT, "%s: dataset '%s' is missing or has the wrong rank", path, specs[first].name);
        else if (!st) {
            sh->lay.h = (int)dims[rank - 2];
            sh->lay.w = (int)dims[rank - 1];
        }
        if (sp >= 0) H5Sclose(sp);
        if (d >= 0) H5Dclose(d);
    }
    if (!st) {
        info->version = sh->version;
        info->n = sh->n;
        info->layout = sh->lay;
        info->has_labels43 = has43 != 0 && sh->lay.has_labels;
        info->has_norm = sh->has_norm;
        info->norm = sh->norm;
    }
    tw_h5_unlock();
    tw_shard_close(sh);
    return st;
}

tw_status tw_shard_open(tw_shard **out, const char *path, tw_err *err) { return shard_open(out, path, 0, err); }
tw_status tw_shard_reopen(tw_shard **out, const char *path, tw_err *err) { return shard_open(out, path, 1, err); }

int64_t tw_shard_n(const tw_shard *sh) { return sh->n; }
int tw_shard_h(const tw_shard *sh) { return sh->lay.h; }
int tw_shard_w(const tw_shard *sh) { return sh->lay.w; }
const char *tw_shard_path(const tw_shard *sh) { return sh->path; }
int tw_shard_has_labels43(const tw_shard *sh) { return sh->has_labels43; }
int tw_shard_version(const tw_shard *sh) { return sh->version; }
const tw_shard_layout *tw_shard_layout_of(const tw_shard *sh) { return &sh->lay; }
int64_t tw_shard_n_skipped(const tw_shard *sh) { return sh->n_skipped; }
const tw_shard_moments *tw_shard_moments_of(const tw_shard *sh) { return &sh->mom; }

tw_status tw_shard_norm_get(const tw_shard *sh, tw_shard_norm *norm, tw_err *err) {
    if (!sh->has_norm)
        return tw_err_set(err, TW_E_MISSING,
                          "%s: no normalisation attributes (s2_mean, ...): the conversion did not finish", sh->path);
    *norm = sh->norm;
    return TW_OK;
}

/* Reads row `row` (acquisition t on a time axis) of dataset i into buf. Under tw_h5_lock. */
static herr_t read_row(tw_shard *sh, int i, hid_t mem_type, int64_t row, int t, void *buf) {
    hsize_t start[5] = {(hsize_t)row, 0, 0, 0, 0}, count[5] = {1, 1, 1, 1, 1};
    if (specs[i].bands && sh->lay.n_times > 0) start[1] = (hsize_t)t;
    if (H5Sget_simple_extent_dims(sh->mspace[i], count, NULL) < 0) return -1;
    if (H5Sselect_hyperslab(sh->fspace[i], H5S_SELECT_SET, start, NULL, count, NULL) < 0) return -1;
    return H5Dread(sh->dset[i], mem_type, sh->mspace[i], sh->fspace[i], H5P_DEFAULT, buf);
}

typedef struct { int d; hid_t t; void *buf; } want;

/* Reads the wanted rows of sample i, acquisition t, then checks that the file did not shrink.
 * A wanted dataset the shard lacks is an error naming it; labels of an unlabelled shard read as
 * zeros. */
static tw_status read_rows(tw_shard *sh, int64_t i, int t, want *w, int n_want, tw_err *err) {
    if (i < 0 || i >= sh->n)
        return tw_err_set(err, TW_E_RANGE, "%s: sample %lld out of range [0, %lld)", sh->path, (long long)i, (long long)sh->n);
    tw_status st = TW_OK;
    for (int k = 0; k < n_want && !st; k++) {
        int d = w[k].d;
        if (!w[k].buf || sh->dset[d] >= 0) continue;
        if (d == D_LABELS || d == D_LABELS43) {
            memset(w[k].buf, 0, d == D_LABELS ? TW_N_CLASSES : TW_N_CLASSES43);
            w[k].buf = NULL;
        } else {
            st = tw_err_set(err, TW_E_MISSING, "%s: the shard has no dataset '%s' (products and labels are in its "
                            "attributes 'products', 'has_labels')", sh->path, specs[d].name);
        }
    }
    if (st) return st;
    tw_h5_lock();
    for (int k = 0; k < n_want && !st; k++)
        if (w[k].buf && read_row(sh, w[k].d, w[k].t, i, t, w[k].buf) < 0)
            st = tw_err_set(err, TW_E_IO, "%s: cannot read sample %lld of dataset '%s' (truncated or corrupt?)", sh->path,
                            (long long)i, specs[w[k].d].name);
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

tw_status tw_shard_read(tw_shard *sh, int64_t i, uint16_t *s2, float *s1, uint8_t *labels,
                        uint8_t *labels43, char *name, char *s1_name, uint8_t *flags, tw_err *err) {
    want w[] = {
        {D_S2, H5T_NATIVE_UINT16, s2},       {D_S1, H5T_NATIVE_FLOAT, s1},   {D_LABELS, H5T_NATIVE_UINT8, labels},
        {D_LABELS43, H5T_NATIVE_UINT8, labels43}, {D_NAME, sh->str_type, name}, {D_S1NAME, sh->str_type, s1_name},
        {D_FLAGS, H5T_NATIVE_UINT8, flags},
    };
    return read_rows(sh, i, 0, w, (int)(sizeof w / sizeof *w), err);
}

/* The acquisition count of sample i (1 without a time axis). */
static tw_status n_times_of(tw_shard *sh, int64_t i, int *n, tw_err *err) {
    uint8_t nt = 1;
    *n = 1;
    if (sh->lay.n_times == 0) return TW_OK;
    want w[] = {{D_NTIMES, H5T_NATIVE_UINT8, &nt}};
    tw_status st = read_rows(sh, i, 0, w, 1, err);
    *n = nt;
    return st;
}

tw_status tw_shard_read_time(tw_shard *sh, int64_t i, int t, uint16_t *s2, uint16_t *s2c, float *s1, tw_err *err) {
    int nt;
    tw_status st = n_times_of(sh, i, &nt, err);
    if (st) return st;
    if (t < 0 || t >= nt)
        return tw_err_set(err, TW_E_RANGE, "%s: sample %lld: acquisition %d of %d", sh->path, (long long)i, t, nt);
    want w[] = {{D_S2, H5T_NATIVE_UINT16, s2}, {D_S2C, H5T_NATIVE_UINT16, s2c}, {D_S1, H5T_NATIVE_FLOAT, s1}};
    return read_rows(sh, i, t, w, 3, err);
}

tw_status tw_shard_read_geo(tw_shard *sh, int64_t i, tw_shard_geo *geo, tw_err *err) {
    memset(geo, 0, sizeof *geo);
    geo->crs_wkt = "";
    int32_t dates[3][TW_SHARD_MAX_TIMES] = {{0}};
    int16_t crs = -1;
    int nt;
    tw_status st = n_times_of(sh, i, &nt, err);
    if (st) return st;
    geo->n_times = nt;
    want w[5];
    int n = 0;
    if (sh->dset[D_S2DATE] >= 0) w[n++] = (want){D_S2DATE, H5T_NATIVE_INT32, dates[0]};
    if (sh->dset[D_S1DATE] >= 0) w[n++] = (want){D_S1DATE, H5T_NATIVE_INT32, dates[1]};
    if (sh->dset[D_S2CDATE] >= 0) w[n++] = (want){D_S2CDATE, H5T_NATIVE_INT32, dates[2]};
    if (sh->lay.has_georef) {
        w[n++] = (want){D_TRANSFORM, H5T_NATIVE_DOUBLE, geo->transform};
        w[n++] = (want){D_CRS, H5T_NATIVE_INT16, &crs};
    }
    if (n && (st = read_rows(sh, i, 0, w, n, err))) return st;
    memcpy(geo->s2_date, dates[0], sizeof dates[0]);
    memcpy(geo->s1_date, dates[1], sizeof dates[1]);
    memcpy(geo->s2c_date, dates[2], sizeof dates[2]);
    if (crs >= 0 && crs < sh->n_crs) {   /* the open checked every index */
        geo->crs_wkt = sh->crs_wkt[crs];
        geo->epsg = (int)sh->crs_epsg[crs];
    }
    return TW_OK;
}

tw_status tw_shard_read_labels(tw_shard *sh, uint8_t *labels, int n_classes, tw_err *err) {
    if (n_classes != TW_N_CLASSES && n_classes != TW_N_CLASSES43)
        return tw_err_set(err, TW_E_RANGE, "%s: %d classes, want %d or %d", sh->path, n_classes, TW_N_CLASSES,
                          TW_N_CLASSES43);
    int d = n_classes == TW_N_CLASSES ? D_LABELS : D_LABELS43;
    if (sh->dset[d] < 0)
        return tw_err_set(err, TW_E_MISSING, "%s: an unlabelled shard (has_labels = 0): no dataset '%s'", sh->path,
                          specs[d].name);
    tw_h5_lock();
    herr_t r = H5Dread(sh->dset[d], H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels);
    tw_h5_unlock();
    if (r < 0)
        return tw_err_set(err, TW_E_IO, "%s: cannot read dataset '%s' (truncated or corrupt?)", sh->path, specs[d].name);
    return TW_OK;
}
