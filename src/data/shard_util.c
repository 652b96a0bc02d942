/* Shard helpers: the HDF5 lock, attribute I/O, band names, moments and normalisation, and the
 * listing of a split's shards. The writer and reader are in shard_write.c and shard_read.c. */
#include "data/shard.h"
#include "data/shard_h5.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

const char *const tw_shard_s2_bands[TW_S2_BANDS] = {"B01", "B02", "B03", "B04", "B05", "B06",
                                                    "B07", "B08", "B8A", "B09", "B11", "B12"};
const char *const tw_shard_s1_bands[TW_S1_BANDS] = {"VV", "VH"};
const char *const tw_shard_s2c_bands[TW_S2C_BANDS] = {"B01", "B02", "B03", "B04", "B05", "B06", "B07",
                                                      "B08", "B8A", "B09", "B10", "B11", "B12"};

const char *const tw_compress_names[] = {"none", "deflate", "lz4", "zstd", NULL};

/* The registered HDF5 filter ids (support.hdfgroup.org's list) of the plugins. */
enum { FILTER_LZ4 = 32004, FILTER_ZSTD = 32015 };

int tw_compress_filter(tw_compress c) {
    return c == TW_COMPRESS_DEFLATE ? H5Z_FILTER_DEFLATE : c == TW_COMPRESS_LZ4 ? FILTER_LZ4
         : c == TW_COMPRESS_ZSTD    ? FILTER_ZSTD        : 0;
}

tw_status tw_compress_check(tw_compress c, tw_err *err) {
    if (c == TW_COMPRESS_NONE) return TW_OK;
    tw_h5_lock();
    htri_t have = H5Zfilter_avail((H5Z_filter_t)tw_compress_filter(c));
    tw_h5_unlock();
    if (have > 0) return TW_OK;
    return tw_err_set(err, TW_E_UNSUPPORTED, "--compress %s: the HDF5 filter %d is not installed (HDF5 looks for "
                      "plugins in HDF5_PLUGIN_PATH; PyPI's hdf5plugin has LZ4 and zstd: set it to hdf5plugin.PLUGIN_PATH)",
                      tw_compress_names[c], tw_compress_filter(c));
}

int tw_shard_has_dset(const tw_shard_layout *l, int d) {
    switch (d) {
    case D_S2: return (l->products & TW_PROD_S2) != 0;
    case D_S2C: return (l->products & TW_PROD_S2C) != 0;
    case D_S1: return (l->products & TW_PROD_S1) != 0;
    case D_LABELS: case D_LABELS43: return l->has_labels;
    case D_NTIMES: return l->n_times > 0;
    case D_S2DATE: return l->n_times > 0 && (l->products & TW_PROD_S2);
    case D_S1DATE: return l->n_times > 0 && (l->products & TW_PROD_S1);
    case D_S2CDATE: return l->n_times > 0 && (l->products & TW_PROD_S2C);
    case D_TRANSFORM: case D_CRS: return l->has_georef;
    default: return 1;
    }
}

static pthread_mutex_t h5_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t h5_once = PTHREAD_ONCE_INIT;

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

void tw_h5_lock(void) {
    pthread_mutex_lock(&h5_mutex);
    pthread_once(&h5_once, h5_quiet);
}

void tw_h5_unlock(void) { pthread_mutex_unlock(&h5_mutex); }

static hid_t vlen_str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static herr_t write_attr(hid_t obj, const char *name, hid_t type, hid_t space, const void *buf) {
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return -1;
    herr_t r = H5Awrite(a, type, buf);
    H5Aclose(a);
    return r;
}

herr_t tw_h5_attr_str(hid_t obj, const char *name, const char *value) {
    hid_t t = vlen_str_type(), s = H5Screate(H5S_SCALAR);
    herr_t r = (t < 0 || s < 0) ? -1 : write_attr(obj, name, t, s, &value);
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    return r;
}

herr_t tw_h5_attr_strs(hid_t obj, const char *name, const char *const *values, int n) {
    hsize_t dim = (hsize_t)n;
    hid_t t = vlen_str_type(), s = H5Screate_simple(1, &dim, NULL);
    herr_t r = (t < 0 || s < 0) ? -1 : write_attr(obj, name, t, s, values);
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    return r;
}

herr_t tw_h5_attr_f64(hid_t obj, const char *name, const double *values, int n) {
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) return -1;
    hsize_t dim = (hsize_t)n;
    hid_t s = H5Screate_simple(1, &dim, NULL);
    herr_t r = s < 0 ? -1 : write_attr(obj, name, H5T_IEEE_F64LE, s, values);
    if (s >= 0) H5Sclose(s);
    return r;
}

herr_t tw_h5_attr_i64(hid_t obj, const char *name, int64_t value) {
    hid_t s = H5Screate(H5S_SCALAR);
    herr_t r = s < 0 ? -1 : write_attr(obj, name, H5T_STD_I64LE, s, &value);
    if (s >= 0) H5Sclose(s);
    return r;
}

/* Opens attribute `name` and checks it holds n elements of the given class. */
static tw_status open_attr(hid_t *out, hid_t obj, const char *name, H5T_class_t cls, int n,
                           const char *path, tw_err *err) {
    *out = -1;
    if (H5Aexists(obj, name) <= 0)
        return tw_err_set(err, TW_E_MISSING, "%s: attribute '%s' is missing", path, name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return tw_err_set(err, TW_E_FORMAT, "%s: attribute '%s' cannot be opened", path, name);
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    hssize_t n_have = s < 0 ? -1 : H5Sget_simple_extent_npoints(s);
    H5T_class_t c = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (c != cls || n_have != n) {
        H5Aclose(a);
        return tw_err_set(err, TW_E_FORMAT, "%s: attribute '%s' has the wrong type or %lld elements, want %d",
                          path, name, (long long)n_have, n);
    }
    *out = a;
    return TW_OK;
}

tw_status tw_h5_read_f64(hid_t obj, const char *name, double *values, int n, const char *path, tw_err *err) {
    hid_t a;
    tw_status st = open_attr(&a, obj, name, H5T_FLOAT, n, path, err);
    if (st) return st;
    herr_t r = H5Aread(a, H5T_NATIVE_DOUBLE, values);
    H5Aclose(a);
    if (r < 0) return tw_err_set(err, TW_E_IO, "%s: attribute '%s' cannot be read", path, name);
    return TW_OK;
}

tw_status tw_h5_read_i64(hid_t obj, const char *name, int64_t *value, const char *path, tw_err *err) {
    hid_t a;
    tw_status st = open_attr(&a, obj, name, H5T_INTEGER, 1, path, err);
    if (st) return st;
    herr_t r = H5Aread(a, H5T_NATIVE_INT64, value);
    H5Aclose(a);
    if (r < 0) return tw_err_set(err, TW_E_IO, "%s: attribute '%s' cannot be read", path, name);
    return TW_OK;
}

tw_status tw_h5_check_strs(hid_t obj, const char *name, const char *const *want, int n,
                           const char *path, tw_err *err) {
    hid_t a;
    tw_status st = open_attr(&a, obj, name, H5T_STRING, n, path, err);
    if (st) return st;
    char **have = calloc((size_t)n, sizeof *have);
    hid_t t = vlen_str_type(), ft = H5Aget_type(a);
    if (!have || t < 0 || ft < 0 || H5Tis_variable_str(ft) <= 0 || H5Aread(a, t, have) < 0) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: attribute '%s' is not an array of variable-length strings", path, name);
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (!have[i] || strcmp(have[i], want[i])) {
            st = tw_err_set(err, TW_E_FORMAT, "%s: attribute '%s'[%d] is '%s', want '%s'", path, name, i,
                            have[i] ? have[i] : "(null)", want[i]);
            break;
        }
    hsize_t dim = (hsize_t)n;
    hid_t s = H5Screate_simple(1, &dim, NULL);
    H5Dvlen_reclaim(t, s, H5P_DEFAULT, have);
    H5Sclose(s);
done:
    free(have);
    if (t >= 0) H5Tclose(t);
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return st;
}

tw_status tw_h5_read_strs(hid_t obj, const char *name, char ***out, int *n, const char *path, tw_err *err) {
    *out = NULL;
    *n = 0;
    if (H5Aexists(obj, name) <= 0) return tw_err_set(err, TW_E_MISSING, "%s: attribute '%s' is missing", path, name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return tw_err_set(err, TW_E_FORMAT, "%s: attribute '%s' cannot be opened", path, name);
    hid_t ft = H5Aget_type(a), s = H5Aget_space(a), t = vlen_str_type();
    hssize_t k = s < 0 ? -1 : H5Sget_simple_extent_npoints(s);
    char **have = NULL;
    tw_status st = TW_OK;
    if (ft < 0 || t < 0 || H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) <= 0 || k < 0 || k > 100000 ||
        !(have = calloc((size_t)k + 1, sizeof *have)) || H5Aread(a, t, have) < 0) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: attribute '%s' is not an array of variable-length strings", path, name);
        goto done;
    }
    size_t bytes = (size_t)k * sizeof(char *);
    for (hssize_t i = 0; i < k; i++) bytes += strlen(have[i] ? have[i] : "") + 1;
    char **res = malloc(bytes ? bytes : 1);
    if (!res) {
        st = tw_err_set(err, TW_E_NOMEM, "%s: attribute '%s'", path, name);
    } else {
        char *p = (char *)(res + k);
        for (hssize_t i = 0; i < k; i++) {
            res[i] = p;
            p += sprintf(p, "%s", have[i] ? have[i] : "") + 1;
        }
        *out = res;
        *n = (int)k;
    }
    H5Dvlen_reclaim(t, s, H5P_DEFAULT, have);
done:
    free(have);
    if (t >= 0) H5Tclose(t);
    if (ft >= 0) H5Tclose(ft);
    if (s >= 0) H5Sclose(s);
    H5Aclose(a);
    return st;
}

void tw_shard_moments_merge(tw_shard_moments *acc, const tw_shard_moments *part) {
    for (int b = 0; b < TW_N_STATS; b++) {
        double c = acc->count[b], n = c + part->count[b];
        if (part->count[b] == 0) continue;
        double delta = part->mean[b] - acc->mean[b];
        acc->mean[b] += delta * part->count[b] / n;
        acc->m2[b] += part->m2[b] + delta * delta * c * part->count[b] / n;
        acc->count[b] = n;
    }
}

tw_status tw_shard_norm_from_moments(tw_shard_norm *norm, const tw_shard_moments *m, tw_err *err) {
    double most = 0;
    for (int b = 0; b < TW_N_STATS; b++) most = m->count[b] > most ? m->count[b] : most;
    if (most < 2) return tw_err_set(err, TW_E_RANGE, "normalisation statistics need at least 2 pixels, have %.0f", most);
    for (int b = 0; b < TW_N_STATS; b++) {
        /* A product the shards do not hold (no pixels) and a constant band would divide by
         * zero: leave them unscaled. */
        norm->mean[b] = m->count[b] >= 2 ? m->mean[b] : 0.0;
        norm->std[b] = m->count[b] >= 2 ? sqrt(m->m2[b] / (m->count[b] - 1)) : 1.0;
        if (!(norm->std[b] > 0)) norm->std[b] = 1.0;
    }
    return TW_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A shard file name is exactly `<split>-` + 5 or more digits + `.h5`. */
static int is_shard_name(const char *name, const char *split) {
    size_t ls = strlen(split), ln = strlen(name);
    if (ln < ls + 1 + 5 + 3 || strncmp(name, split, ls) || name[ls] != '-') return 0;
    if (strcmp(name + ln - 3, ".h5")) return 0;
    for (size_t i = ls + 1; i < ln - 3; i++)
        if (name[i] < '0' || name[i] > '9') return 0;
    return 1;
}

tw_status tw_shard_list(char ***paths, int *n, const char *dir, const char *split, tw_err *err) {
    *paths = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return tw_err_set(err, TW_E_IO, "%s: cannot open shard directory: %s", dir, strerror(errno));
    size_t n_names = 0, cap = 0, n_bytes = 0;
    char **names = NULL;
    tw_status st = TW_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_shard_name(e->d_name, split)) continue;
        if (n_names == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof *grown);
            if (!grown) { st = tw_err_set(err, TW_E_NOMEM, "%s: listing shards", dir); goto done; }
            names = grown;
        }
        if (!(names[n_names] = strdup(e->d_name))) { st = tw_err_set(err, TW_E_NOMEM, "%s: listing shards", dir); goto done; }
        n_bytes += strlen(dir) + 1 + strlen(e->d_name) + 1;
        n_names++;
    }
    if (n_names) qsort(names, n_names, sizeof *names, cmp_str);
    /* One allocation: the pointer table, then the strings. */
    char **out = malloc(n_names * sizeof *out + n_bytes + 1);
    if (!out) { st = tw_err_set(err, TW_E_NOMEM, "%s: listing shards", dir); goto done; }
    char *p = (char *)(out + n_names);
    for (size_t i = 0; i < n_names; i++) {
        out[i] = p;
        p += sprintf(p, "%s/%s", dir, names[i]) + 1;
    }
    *paths = out;
    *n = (int)n_names;
done:
    for (size_t i = 0; i < n_names; i++) free(names[i]);
    free(names);
    closedir(d);
    return st;
}
