/* SSL4EO-S12 for the converter (convert.h): the published layout <root>/<product>/<id>/<acq>/<band>.tif
 * (products s1, s2c, s2a; ids of 7 digits; one folder per acquisition named after its product,
 * the date in it), as zhu-xlab/SSL4EO-S12's ssl4eo_dataset.py and torchgeo's SSL4EOS12 read it.
 * Every band is brought onto the location's 10 m grid: resampled bilinearly like the BigEarthNet
 * path where it shares the grid's CRS and extent, warped (GDAL's warper) where it does not. */
#include "data/convert.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/labels.h"

/* The products in shard order of TW_PROD_* bits, their folders and band files. */
typedef struct {
    int bit;
    const char *dir;
    int n_bands;
    const char *const *files;   /* <file>.tif in shard band order */
    const char *type;           /* as read: "UInt16" reflectance x 10000, "Float32" dB */
    int date_slot;              /* index into tw_convert_buf.dates */
} product;

static const char *const s2a_files[TW_S2_BANDS] = {"B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"};
static const char *const s2c_files[TW_S2C_BANDS] = {"B1", "B2", "B3", "B4", "B5", "B6", "B7",
                                                    "B8", "B8A", "B9", "B10", "B11", "B12"};
static const char *const s1_files[TW_S1_BANDS] = {"VV", "VH"};

static const product products[3] = {
    {TW_PROD_S2, "s2a", TW_S2_BANDS, s2a_files, "UInt16", 0},
    {TW_PROD_S2C, "s2c", TW_S2C_BANDS, s2c_files, "UInt16", 2},
    {TW_PROD_S1, "s1", TW_S1_BANDS, s1_files, "Float32", 1},
};

static int is_location_id(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= 32) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

static int cmp_pstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The sorted entries of a folder (no hidden ones); ids only when ids_only. */
static tw_status list_names(char ***out, size_t *n, const char *dir, int ids_only, tw_err *err) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return tw_err_set(err, TW_E_IO, "%s: %s", dir, strerror(errno));
    size_t cap = 0;
    tw_status st = TW_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || (ids_only && !is_location_id(e->d_name))) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            char **g = realloc(*out, cap * sizeof *g);
            if (!g) { st = tw_err_set(err, TW_E_NOMEM, "%s", dir); break; }
            *out = g;
        }
        if (!((*out)[*n] = strdup(e->d_name))) { st = tw_err_set(err, TW_E_NOMEM, "%s", dir); break; }
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(*out, *n, sizeof **out, cmp_pstr);
    return st;
}

static void names_free(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

tw_status tw_ssl4eo_list(tw_patch_list *list, tw_convert_summary *sum, const tw_convert_opts *o, tw_err *err) {
    if (!o->root) return tw_err_set(err, TW_E_USAGE, "ssl4eo layout: --root DIR (with s1/, s2c/, s2a/) is required");
    if (!o->products) return tw_err_set(err, TW_E_USAGE, "ssl4eo layout: no product to convert");
    char path[4096];
    char **ids[3] = {NULL, NULL, NULL};
    size_t n_ids[3] = {0, 0, 0};
    int first = -1;
    tw_status st = TW_OK;
    for (int k = 0; k < 3 && !st; k++) {
        if (!(o->products & products[k].bit)) continue;
        snprintf(path, sizeof path, "%s/%s", o->root, products[k].dir);
        st = list_names(&ids[k], &n_ids[k], path, 1, err);
        if (first < 0) first = k;
    }
    const char *split = o->split ? o->split : "train";
    int split_id = st ? -1 : tw_convert_split_id(sum, split);
    if (!st && split_id < 0) st = tw_err_set(err, TW_E_RANGE, "split name '%s' too long", split);
    /* A location missing from a product asked for is skipped and named. */
    for (size_t i = 0; !st && i < n_ids[first]; i++) {
        const char *id = ids[first][i];
        const char *lacking = NULL;
        for (int k = 0; k < 3 && !lacking; k++)
            if (k != first && (o->products & products[k].bit) &&
                !bsearch(&id, ids[k], n_ids[k], sizeof *ids[k], cmp_pstr))
                lacking = products[k].dir;
        if (lacking) {
            sum->skipped[TW_SKIP_RASTER]++;
            if (o->stop_on_error)
                st = tw_err_set(err, TW_E_MISSING, "%s/%s/%s: missing (location %s)", o->root, lacking, id, id);
            else
                tw_convert_warn(o, "twinfuse convert: skipped location %s: %s/%s/%s is missing\n", id, o->root, lacking, id);
            continue;
        }
        tw_patch p = {.s2 = (char *)id, .s1 = (char *)id, .split = split_id};
        st = tw_patch_list_add(list, &p, err);
    }
    for (int k = 0; k < 3 && !st; k++)
        if ((o->products & products[k].bit) && k != first)
            for (size_t i = 0; i < n_ids[k]; i++)
                if (!bsearch(&ids[k][i], ids[first], n_ids[first], sizeof *ids[first], cmp_pstr)) {
                    sum->skipped[TW_SKIP_RASTER]++;
                    if (o->stop_on_error) {
                        st = tw_err_set(err, TW_E_MISSING, "%s/%s/%s: missing (location %s)", o->root, products[first].dir,
                                        ids[k][i], ids[k][i]);
                        break;
                    }
                    tw_convert_warn(o, "twinfuse convert: skipped location %s: %s/%s/%s is missing\n", ids[k][i], o->root,
                            products[first].dir, ids[k][i]);
                }
    for (int k = 0; k < 3; k++) names_free(ids[k], n_ids[k]);
    return st;
}

/* The date in an acquisition folder's name: the first YYYYMMDDT (S2: 20200605T101559_..., S1:
 * S1A_IW_GRDH_1SDV_20200607T...), or 0. */
static int32_t date_of(const char *name) {
    for (const char *p = name; *p; p++) {
        int ok = 1;
        for (int k = 0; k < 8 && ok; k++) ok = p[k] >= '0' && p[k] <= '9';
        if (ok && p[8] == 'T' && (p == name || p[-1] < '0' || p[-1] > '9')) {
            int32_t v = (int32_t)strtol((char[9]){p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], 0}, NULL, 10);
            int mo = v / 100 % 100, dy = v % 100;
            if (v >= 19000101 && mo >= 1 && mo <= 12 && dy >= 1 && dy <= 31) return v;
        }
    }
    return 0;
}

typedef struct { char *name; int32_t date; } acq;

static int cmp_acq(const void *a, const void *b) {
    const acq *x = a, *y = b;
    if (x->date != y->date) return x->date < y->date ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* 1 when band grid g covers the same ground as the reference grid r in the same CRS, to half a
 * pixel of r. */
static int same_extent(const tw_grid *g, const tw_grid *r) {
    double tol = 0.5 * fabs(r->transform[1]);
    double gx1 = g->transform[0] + g->width * g->transform[1], gy1 = g->transform[3] + g->height * g->transform[5];
    double rx1 = r->transform[0] + r->width * r->transform[1], ry1 = r->transform[3] + r->height * r->transform[5];
    return fabs(g->transform[0] - r->transform[0]) <= tol && fabs(g->transform[3] - r->transform[3]) <= tol &&
           fabs(gx1 - rx1) <= tol && fabs(gy1 - ry1) <= tol && g->transform[2] == 0 && g->transform[4] == 0;
}

static int same_crs(const tw_grid *a, const tw_grid *b) {
    tw_grid x = *a;   /* tw_grid_same with b's transform and size: the CRS alone */
    memcpy(x.transform, b->transform, sizeof x.transform);
    x.width = b->width;
    x.height = b->height;
    return tw_grid_same(&x, b);
}

/* Reads one band file onto the location grid `loc` ([loc.height, loc.width] into full). The
 * acquisition's first band file is `ref` (NULL while reading it): a band must share its CRS and
 * extent and be its size or that size / div (20 m: 2, 60 m: 6). */
static tw_skip read_band(float *full_f32, uint16_t *full_u16, const char *path, const char *type, int div,
                         tw_grid *ref_io, int ref_set, const tw_grid *loc, tw_err *err) {
    const tw_grid *ref = ref_set ? ref_io : NULL;
    tw_scene *sc = NULL, *wp = NULL;
    if (tw_scene_open(&sc, path, err)) return TW_SKIP_RASTER;
    tw_skip why = TW_SKIP_N;
    const tw_grid *g = tw_scene_grid(sc);
    void *out = full_f32 ? (void *)full_f32 : (void *)full_u16;
    if (tw_scene_n_bands(sc) != 1) {
        tw_err_set(err, TW_E_SHAPE, "%s: %d bands, want 1", path, tw_scene_n_bands(sc));
        why = TW_SKIP_RASTER;
    } else if (ref && !same_crs(g, ref)) {
        tw_err_set(err, TW_E_FORMAT, "%s: CRS (EPSG %d) differs from the acquisition's first band's (EPSG %d)", path,
                   g->epsg, ref->epsg);
        why = TW_SKIP_RASTER;
    } else if (ref && (!same_extent(g, ref) || !((g->width == ref->width && g->height == ref->height) ||
                                                 (g->width * div == ref->width && g->height * div == ref->height)))) {
        char alt[64] = "";
        if (div > 1) snprintf(alt, sizeof alt, " (or %dx%d at its native resolution)", ref->width / div, ref->height / div);
        tw_err_set(err, TW_E_SHAPE, "%s: %dx%d pixels at (%.2f, %.2f), want %dx%d%s over the first band's extent at "
                   "(%.2f, %.2f)", path, g->width, g->height, g->transform[0], g->transform[3], ref->width, ref->height,
                   alt, ref->transform[0], ref->transform[3]);
        why = TW_SKIP_RASTER;
    } else if (same_crs(g, loc) && same_extent(g, loc)) {
        /* The BigEarthNet path's read: the whole raster, bilinear to the 10 m size. */
        if (tw_scene_read_scaled(sc, out, type, NULL, 1, 0, 0, g->width, g->height, loc->width, loc->height,
                                 TW_RESAMPLE_BILINEAR, err))
            why = TW_SKIP_RASTER;
    } else if (tw_scene_warp(&wp, sc, loc, TW_RESAMPLE_BILINEAR, full_f32 ? NAN : 0, err) ||
               tw_scene_read(wp, out, type, NULL, 1, 0, 0, loc->width, loc->height, err)) {
        why = TW_SKIP_RASTER;
    }
    if (why == TW_SKIP_N && !ref) *ref_io = *g;
    tw_scene_close(wp);
    tw_scene_close(sc);
    return why;
}

/* The acquisitions of one product at a location, sorted by date; at most TW_SHARD_MAX_TIMES. */
static tw_status list_acqs(acq *out, int *n, const char *dir, tw_err *err) {
    char **names;
    size_t k;
    *n = 0;
    tw_status st = list_names(&names, &k, dir, 0, err);
    if (st) return st;
    acq all[64];
    size_t m = k < 64 ? k : 64;
    for (size_t i = 0; i < m; i++) all[i] = (acq){names[i], date_of(names[i])};
    qsort(all, m, sizeof *all, cmp_acq);
    for (size_t i = 0; i < m && *n < TW_SHARD_MAX_TIMES; i++) {
        out[*n].date = all[i].date;
        out[*n].name = strdup(all[i].name);
        if (!out[*n].name) st = tw_err_set(err, TW_E_NOMEM, "%s", dir);
        else (*n)++;
    }
    names_free(names, k);
    return st;
}

static const int band_div_s2a[TW_S2_BANDS] = {6, 1, 1, 1, 2, 2, 2, 1, 2, 6, 2, 2};
static const int band_div_s2c[TW_S2C_BANDS] = {6, 1, 1, 1, 2, 2, 2, 1, 2, 6, 6, 2, 2};

tw_skip tw_ssl4eo_read(tw_convert_buf *b, const tw_convert_opts *o, const tw_patch *p, tw_err *err) {
    int S = o->size ? o->size : TW_SSL4EO_SIZE;
    size_t n_px = (size_t)S * S;
    char dir[4096], path[8192];
    acq acqs[3][TW_SHARD_MAX_TIMES];
    int n_acq[3] = {0, 0, 0};
    tw_skip why = TW_SKIP_N;
    memset(b->dates, 0, sizeof b->dates);
    memset(b->l19, 0, sizeof b->l19);
    memset(b->l43, 0, sizeof b->l43);
    b->n_times = TW_SHARD_MAX_TIMES;
    for (int k = 0; k < 3 && why == TW_SKIP_N; k++) {
        if (!(o->products & products[k].bit)) continue;
        snprintf(dir, sizeof dir, "%s/%s/%s", o->root, products[k].dir, p->s2);
        if (list_acqs(acqs[k], &n_acq[k], dir, err)) why = TW_SKIP_RASTER;
        else if (n_acq[k] == 0) {
            tw_err_set(err, TW_E_MISSING, "%s: no acquisition folders", dir);
            why = TW_SKIP_RASTER;
        }
        if (n_acq[k] < b->n_times) b->n_times = n_acq[k];
    }
    /* The location's grid: its first S2 acquisition's (s2a, else s2c) 10 m band B2, else S1's VV.
     * Products pair up by date order; a product with fewer acquisitions bounds n_times. */
    float *full_f = NULL;
    uint16_t *full_u = NULL;
    tw_grid loc = {0};
    int have_loc = 0;
    for (int k = 0; k < 3 && why == TW_SKIP_N; k++) {
        const product *pr = &products[k];
        if (!(o->products & pr->bit)) continue;
        for (int t = 0; t < b->n_times && why == TW_SKIP_N; t++) {
            tw_grid ref;
            int ref_set = 0;
            b->dates[pr->date_slot][t] = acqs[k][t].date;
            /* The 10 m reference band first (B2 or VV), then the others in shard order. */
            int order[TW_S2C_BANDS], n_order = 0, first = pr->bit == TW_PROD_S1 ? 0 : 1;
            order[n_order++] = first;
            for (int c = 0; c < pr->n_bands; c++)
                if (c != first) order[n_order++] = c;
            for (int j = 0; j < n_order && why == TW_SKIP_N; j++) {
                int c = order[j];
                snprintf(path, sizeof path, "%s/%s/%s/%s/%s.tif", o->root, pr->dir, p->s2, acqs[k][t].name, pr->files[c]);
                if (!have_loc) {   /* the location grid is this band's own */
                    tw_scene *sc;
                    if (tw_scene_open(&sc, path, err)) { why = TW_SKIP_RASTER; break; }
                    loc = *tw_scene_grid(sc);
                    tw_scene_close(sc);
                    if (loc.width < S || loc.height < S) {
                        tw_err_set(err, TW_E_SHAPE, "%s: %dx%d pixels, smaller than --size %d", path, loc.width,
                                   loc.height, S);
                        why = TW_SKIP_RASTER;
                        break;
                    }
                    free(full_f);
                    full_f = malloc(sizeof(float) * (size_t)loc.width * (size_t)loc.height);
                    full_u = malloc(sizeof(uint16_t) * (size_t)loc.width * (size_t)loc.height);
                    if (!full_f || !full_u) { tw_err_set(err, TW_E_NOMEM, "%s", path); why = TW_SKIP_RASTER; break; }
                    have_loc = 1;
                }
                int is_f = pr->bit == TW_PROD_S1;
                int div = pr->bit == TW_PROD_S2 ? band_div_s2a[c] : pr->bit == TW_PROD_S2C ? band_div_s2c[c] : 1;
                why = read_band(is_f ? full_f : NULL, is_f ? NULL : full_u, path, pr->type, div, &ref, ref_set, &loc, err);
                if (why != TW_SKIP_N) break;
                ref_set = 1;
                /* The centre S x S of the grid (torchvision's CenterCrop, offsets rounded down). */
                int y0 = (loc.height - S) / 2, x0 = (loc.width - S) / 2;
                size_t plane = ((size_t)t * pr->n_bands + c) * n_px;
                for (int y = 0; y < S; y++) {
                    size_t src = (size_t)(y0 + y) * loc.width + x0;
                    if (is_f) {
                        for (int x = 0; x < S; x++) {
                            float v = full_f[src + x];
                            if (!isfinite(v)) {
                                tw_err_set(err, TW_E_NONFINITE, "%s: no value at pixel (%d, %d) of the location grid "
                                           "(not covered by this acquisition, or NaN)", path, y0 + y, x0 + x);
                                why = TW_SKIP_NONFINITE;
                                break;
                            }
                            b->s1[plane + (size_t)y * S + x] = v;
                        }
                        if (why != TW_SKIP_N) break;
                    } else {
                        memcpy((pr->bit == TW_PROD_S2 ? b->s2 : b->s2c) + plane + (size_t)y * S, full_u + src,
                               (size_t)S * sizeof(uint16_t));
                    }
                }
            }
        }
    }
    if (why == TW_SKIP_N) tw_grid_window(&b->grid, &loc, (loc.width - S) / 2, (loc.height - S) / 2, S, S);
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < n_acq[k]; t++) free(acqs[k][t].name);
    free(full_f);
    free(full_u);
    return why;
}
