/* Scenes as model input (scene_input.h): band lookup by description or position, the output
 * grid, warps onto it, the overlap check, and normalised strips. */
#include "predict/scene_input.h"

#include <ctype.h>
#include <gdal.h>
#include <gdal_alg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

#define MAX_FILES TW_S2_BANDS
#define PATH_MAX_ 4096

/* Splits a comma list into at most max paths (copied into store). Returns the count, or -1. */
static int split_list(const char *list, char store[][PATH_MAX_], int max) {
    int n = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n == max || len == 0 || len >= PATH_MAX_) return -1;
        memcpy(store[n], p, len);
        store[n++][len] = 0;
        p += len + (e ? 1 : 0);
        if (e && !*p) return -1;
    }
    return n;
}

/* The bands' descriptions of path (empty strings where none). */
static void band_names(const char *path, char names[][32], int n) {
    GDALDatasetH ds = GDALOpenEx(path, GDAL_OF_RASTER | GDAL_OF_READONLY, NULL, NULL, NULL);
    for (int b = 0; b < n; b++) {
        const char *d = ds ? GDALGetDescription(GDALGetRasterBand(ds, b + 1)) : NULL;
        snprintf(names[b], 32, "%s", d ? d : "");
    }
    if (ds) GDALClose(ds);
}

/* "B2", "b02" and "B02" name the same band. */
static int same_band(const char *desc, const char *want) {
    if (!strcasecmp(desc, want)) return 1;
    return (desc[0] == 'B' || desc[0] == 'b') && desc[1] && isdigit((unsigned char)desc[1]) && !desc[2] &&
           want[1] == '0' && desc[1] == want[2] && !want[3];
}

/* The 1-based band of a multi-band scene that holds `want` (position `pos` when the file names
 * none of its bands and has `n_expected` of them); 0 with err set when it has none. */
static int find_band(tw_scene *sc, const char *want, int pos, int n_expected, const char *what, tw_err *err) {
    int nb = tw_scene_n_bands(sc);
    char (*names)[32] = calloc((size_t)nb, 32);
    TW_ASSERT(names);
    band_names(tw_scene_path(sc), names, nb);
    int named = 0, found = 0;
    for (int b = 0; b < nb; b++) {
        named |= names[b][0] != 0;
        if (!found && names[b][0] && same_band(names[b], want)) found = b + 1;
    }
    if (!named && nb == n_expected) found = pos + 1;
    if (!found) {
        char list[512] = "";
        for (int b = 0; b < nb && strlen(list) < sizeof list - 40; b++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", b ? ", " : "", names[b][0] ? names[b] : "?");
        if (named)
            tw_err_set(err, TW_E_SHAPE, "%s: no band %s among its bands (%s); the model reads it", tw_scene_path(sc), want,
                       list);
        else
            tw_err_set(err, TW_E_SHAPE, "%s: %d unnamed bands; the model reads %s, which needs the %d %s bands in the "
                       "shards' order or band descriptions naming them", tw_scene_path(sc), nb, want, n_expected, what);
    }
    free(names);
    return found;
}

/* Whether src's footprint meets grid g (corners and edge midpoints mapped into g's pixels). */
static int overlaps(const tw_grid *src, const tw_grid *g) {
    void *tr = GDALCreateGenImgProjTransformer3(src->crs_wkt, src->transform, g->crs_wkt, g->transform);
    if (!tr) return 0;
    double x[8], y[8], z[8] = {0};
    int ok[8], W = src->width, H = src->height;
    double px[8] = {0, W / 2.0, W, W, W, W / 2.0, 0, 0}, py[8] = {0, 0, 0, H / 2.0, H, H, H, H / 2.0};
    memcpy(x, px, sizeof x);
    memcpy(y, py, sizeof y);
    GDALGenImgProjTransform(tr, FALSE, 8, x, y, z, ok);
    GDALDestroyGenImgProjTransformer(tr);
    double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
    for (int i = 0; i < 8; i++) {
        if (!ok[i]) continue;
        x_lo = fmin(x_lo, x[i]);
        x_hi = fmax(x_hi, x[i]);
        y_lo = fmin(y_lo, y[i]);
        y_hi = fmax(y_hi, y[i]);
    }
    return x_lo < g->width && x_hi > 0 && y_lo < g->height && y_hi > 0;
}

/* sc itself when it lies on the input's grid, else a bilinear warp onto it (owned by in). */
static tw_status on_grid(tw_scene_input *in, tw_scene *sc, const char *grid_from, tw_scene **out, tw_err *err) {
    const tw_grid *g = tw_scene_grid(sc);
    if (tw_grid_same(g, &in->grid)) {
        *out = sc;
        return TW_OK;
    }
    if (!g->crs_wkt[0] || !in->grid.crs_wkt[0])
        return tw_err_set(err, TW_E_FORMAT, "%s: not on the grid of %s and %s has no CRS to warp with", tw_scene_path(sc),
                          grid_from, g->crs_wkt[0] ? grid_from : tw_scene_path(sc));
    if (!overlaps(g, &in->grid))
        return tw_err_set(err, TW_E_RANGE, "%s does not overlap %s (the output grid)", tw_scene_path(sc), grid_from);
    tw_status st = tw_scene_warp(out, sc, &in->grid, TW_RESAMPLE_BILINEAR, NAN, err);
    if (st == TW_OK) in->owned[in->n_owned++] = *out;
    return st;
}

static tw_status open_owned(tw_scene_input *in, const char *path, tw_scene **out, tw_err *err) {
    tw_status st = tw_scene_open(out, path, err);
    if (st == TW_OK) in->owned[in->n_owned++] = *out;
    return st;
}

/* Opens the comma list or single file of one source into sc[] (one scene per file). */
static tw_status open_source(tw_scene_input *in, const char *spec, int n_list, const char *what, tw_scene **sc,
                             int *n_files, tw_err *err) {
    static char store[MAX_FILES][PATH_MAX_];
    int n = strchr(spec, ',') ? split_list(spec, store, MAX_FILES) : 1;
    if (n == 1) snprintf(store[0], PATH_MAX_, "%s", spec);
    if (n != 1 && n != n_list)
        return tw_err_set(err, TW_E_USAGE, "%s: want one multi-band file or %d comma-separated band files (%s), got "
                          "'%s'", what, n_list, what, spec);
    for (int i = 0; i < n; i++) {
        tw_status st = open_owned(in, store[i], &sc[i], err);
        if (st) return st;
        if (n > 1 && tw_scene_n_bands(sc[i]) != 1)
            return tw_err_set(err, TW_E_SHAPE, "%s: %d bands; each file of a %s band list holds one band", store[i],
                              tw_scene_n_bands(sc[i]), what);
    }
    *n_files = n;
    return TW_OK;
}

tw_status tw_scene_input_open(tw_scene_input *in, const tw_scene_input_opts *o, tw_err *err) {
    memset(in, 0, sizeof *in);
    in->s1_linear = o->s1_linear;
    tw_scene *s2[MAX_FILES] = {0}, *s1[TW_S1_BANDS] = {0};
    int n2 = 0, n1 = 0;
    tw_status st = TW_OK;
    if (o->n_s2 && !o->s2) return tw_err_set(err, TW_E_USAGE, "the model reads S2: give --s2");
    if (o->use_s1 && !o->s1) return tw_err_set(err, TW_E_USAGE, "the model reads S1 (VV, VH): give --s1");
    if (o->n_s2 && (st = open_source(in, o->s2, TW_S2_BANDS, "S2", s2, &n2, err))) goto fail;
    if (o->use_s1 && (st = open_source(in, o->s1, TW_S1_BANDS, "S1", s1, &n1, err))) goto fail;

    /* The output grid: --grid, else S2's finest band, else S1's. */
    const char *grid_from;
    if (o->grid) {
        tw_scene *g;
        if ((st = tw_scene_open(&g, o->grid, err))) goto fail;
        in->grid = *tw_scene_grid(g);
        tw_scene_close(g);
        grid_from = o->grid;
    } else if (n2) {
        int best = 0;
        for (int i = 1; i < n2; i++)
            if (fabs(tw_scene_grid(s2[i])->transform[1]) < fabs(tw_scene_grid(s2[best])->transform[1])) best = i;
        in->grid = *tw_scene_grid(s2[best]);
        grid_from = tw_scene_path(s2[best]);
    } else {
        in->grid = *tw_scene_grid(s1[0]);
        grid_from = tw_scene_path(s1[0]);
    }
    static char grid_name[PATH_MAX_];
    snprintf(grid_name, sizeof grid_name, "%s", grid_from);

    /* S2 channels: by band description or position in a multi-band file, by position in a list. */
    tw_scene *s2_on = NULL;
    for (int i = 0; i < o->n_s2; i++) {
        int b = o->s2_bands[i];
        if (n2 == 1) {
            int band = find_band(s2[0], tw_shard_s2_bands[b], b, TW_S2_BANDS, "S2", err);
            if (!band) { st = TW_E_SHAPE; goto fail; }
            if (!s2_on && (st = on_grid(in, s2[0], grid_name, &s2_on, err))) goto fail;
            in->src[in->n_ch] = s2_on;
            in->band[in->n_ch] = band;
        } else {
            if ((st = on_grid(in, s2[b], grid_name, &in->src[in->n_ch], err))) goto fail;
            in->band[in->n_ch] = 1;
        }
        in->scale[in->n_ch] = (float)(1.0 / o->norm->std[b]);
        in->shift[in->n_ch] = (float)(-o->norm->mean[b] / o->norm->std[b]);
        in->n_ch++;
    }
    tw_scene *s1_on = NULL;
    for (int c = 0; o->use_s1 && c < TW_S1_BANDS; c++) {
        if (n1 == 1) {
            int band = find_band(s1[0], tw_shard_s1_bands[c], c, TW_S1_BANDS, "S1", err);
            if (!band) { st = TW_E_SHAPE; goto fail; }
            if (!s1_on && (st = on_grid(in, s1[0], grid_name, &s1_on, err))) goto fail;
            in->src[in->n_ch] = s1_on;
            in->band[in->n_ch] = band;
        } else {
            if ((st = on_grid(in, s1[c], grid_name, &in->src[in->n_ch], err))) goto fail;
            in->band[in->n_ch] = 1;
        }
        in->is_s1[in->n_ch] = 1;
        in->scale[in->n_ch] = (float)(1.0 / o->norm->std[TW_S2_BANDS + c]);
        in->shift[in->n_ch] = (float)(-o->norm->mean[TW_S2_BANDS + c] / o->norm->std[TW_S2_BANDS + c]);
        in->n_ch++;
    }
    for (int i = 0; i < in->n_ch; i++) in->has_nodata[i] = tw_scene_nodata(in->src[i], in->band[i], &in->nodata[i]);
    return TW_OK;
fail:
    tw_scene_input_close(in);
    return st;
}

void tw_scene_input_close(tw_scene_input *in) {
    /* Warps read from the scenes they were made of: close them first (they were opened later). */
    for (int i = in->n_owned - 1; i >= 0; i--) tw_scene_close(in->owned[i]);
    free(in->raw);
    memset(in, 0, sizeof *in);
}

tw_status tw_scene_input_read(tw_scene_input *in, float *planes, uint8_t *bad, int y0, int h, tw_err *err) {
    int W = in->grid.width;
    size_t n_px = (size_t)h * W;
    if (in->raw_rows < h) {
        free(in->raw);
        in->raw = malloc(sizeof *in->raw * n_px);
        if (!in->raw) return tw_err_set(err, TW_E_NOMEM, "a strip of %d rows of a %d-pixel-wide scene", h, W);
        in->raw_rows = h;
    }
    memset(bad, 0, n_px);
    for (int c = 0; c < in->n_ch; c++) {
        tw_status st = tw_scene_read(in->src[c], in->raw, "Float32", &in->band[c], 1, 0, y0, W, h, err);
        if (st) return st;
        const float *r = in->raw;
        float nd = (float)in->nodata[c];
        int has = in->has_nodata[c], lin = in->s1_linear && in->is_s1[c];
        for (size_t i = 0; i < n_px; i++) {
            float v = r[i];
            int b = isnan(v) || (has && v == nd) || (lin && !(v > 0));
            if (!b && lin) v = 10.0f * log10f(v);
            bad[i] |= (uint8_t)b;
            planes[c * n_px + i] = v;
        }
    }
    /* Normalised only now, so a pixel bad in any channel is 0 in every one. */
    for (int c = 0; c < in->n_ch; c++) {
        float *p = planes + c * n_px, s = in->scale[c], t = in->shift[c];
        for (size_t i = 0; i < n_px; i++) p[i] = bad[i] ? 0.0f : p[i] * s + t;
    }
    return TW_OK;
}
