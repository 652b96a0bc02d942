/* Scenes through GDAL's C API (scene.h): open, stack single-band files as one VRT, warp onto a
 * grid with a warped VRT (GDALCreateWarpedVRT, the exact GenImgProj transformer), read windows. */
#include "data/scene.h"

#include <cpl_conv.h>
#include <cpl_error.h>
#include <cpl_string.h>
#include <gdal.h>
#include <gdal_alg.h>
#include <gdal_utils.h>
#include <gdalwarper.h>
#include <math.h>
#include <ogr_srs_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tw_scene {
    GDALDatasetH ds;
    char path[4096];
    int n_bands;
    tw_grid grid;
};

static const char *gdal_why(void) {
    const char *m = CPLGetLastErrorMsg();
    return m && *m ? m : "missing or unreadable";
}

/* Fills the grid from a dataset; the EPSG code from GDAL's own identification (0 when none). */
static void grid_of(tw_grid *g, GDALDatasetH ds) {
    memset(g, 0, sizeof *g);
    const char *wkt = GDALGetProjectionRef(ds);
    snprintf(g->crs_wkt, sizeof g->crs_wkt, "%s", wkt ? wkt : "");
    if (GDALGetGeoTransform(ds, g->transform) != CE_None) {
        double id[6] = {0, 1, 0, 0, 0, 1};
        memcpy(g->transform, id, sizeof id);
    }
    g->width = GDALGetRasterXSize(ds);
    g->height = GDALGetRasterYSize(ds);
    if (g->crs_wkt[0]) {
        OGRSpatialReferenceH srs = OSRNewSpatialReference(g->crs_wkt);
        if (srs) {
            if (OSRAutoIdentifyEPSG(srs) == OGRERR_NONE || OSRGetAuthorityCode(srs, NULL)) {
                const char *code = OSRGetAuthorityCode(srs, NULL), *auth = OSRGetAuthorityName(srs, NULL);
                if (code && auth && !strcmp(auth, "EPSG")) g->epsg = (int)strtol(code, NULL, 10);
            }
            OSRDestroySpatialReference(srs);
        }
    }
}

static tw_status scene_wrap(tw_scene **out, GDALDatasetH ds, const char *path, tw_err *err) {
    tw_scene *sc = calloc(1, sizeof *sc);
    if (!sc) {
        GDALClose(ds);
        return tw_err_set(err, TW_E_NOMEM, "%s: scene", path);
    }
    sc->ds = ds;
    snprintf(sc->path, sizeof sc->path, "%s", path);
    sc->n_bands = GDALGetRasterCount(ds);
    grid_of(&sc->grid, ds);
    *out = sc;
    return TW_OK;
}

tw_status tw_scene_open(tw_scene **out, const char *path, tw_err *err) {
    *out = NULL;
    CPLErrorReset();
    GDALDatasetH ds = GDALOpenEx(path, GDAL_OF_RASTER | GDAL_OF_READONLY, NULL, NULL, NULL);
    if (!ds) return tw_err_set(err, TW_E_MISSING, "%s: cannot open raster: %s", path, gdal_why());
    if (GDALGetRasterCount(ds) < 1) {
        GDALClose(ds);
        return tw_err_set(err, TW_E_SHAPE, "%s: no raster bands", path);
    }
    return scene_wrap(out, ds, path, err);
}

int tw_grid_same(const tw_grid *a, const tw_grid *b) {
    if (a->width != b->width || a->height != b->height) return 0;
    double px = fabs(a->transform[1]) + fabs(a->transform[5]);
    for (int i = 0; i < 6; i++)
        if (fabs(a->transform[i] - b->transform[i]) > 1e-6 * (px > 0 ? px : 1)) return 0;
    if (!a->crs_wkt[0] || !b->crs_wkt[0]) return !a->crs_wkt[0] && !b->crs_wkt[0];
    if (!strcmp(a->crs_wkt, b->crs_wkt)) return 1;
    OGRSpatialReferenceH sa = OSRNewSpatialReference(a->crs_wkt), sb = OSRNewSpatialReference(b->crs_wkt);
    int same = sa && sb && OSRIsSame(sa, sb);
    if (sa) OSRDestroySpatialReference(sa);
    if (sb) OSRDestroySpatialReference(sb);
    return same;
}

double tw_grid_overlap(const tw_grid *a, const tw_grid *b) {
    OGRSpatialReferenceH sa = OSRNewSpatialReference(a->crs_wkt), sb = OSRNewSpatialReference(b->crs_wkt);
    OGRCoordinateTransformationH ct = NULL;
    double frac = 0;
    if (sa && sb) {
        OSRSetAxisMappingStrategy(sa, OAMS_TRADITIONAL_GIS_ORDER);
        OSRSetAxisMappingStrategy(sb, OAMS_TRADITIONAL_GIS_ORDER);
        ct = OCTNewCoordinateTransformation(sb, sa);
    }
    if (ct) {
        double x[8], y[8];
        int ok[8], k = 0;
        for (int i = 0; i <= 2; i++)
            for (int j = 0; j <= 2; j++) {
                if (i == 1 && j == 1) continue;
                double c = b->width * i / 2.0, r = b->height * j / 2.0;
                x[k] = b->transform[0] + c * b->transform[1] + r * b->transform[2];
                y[k] = b->transform[3] + c * b->transform[4] + r * b->transform[5];
                k++;
            }
        if (OCTTransformEx(ct, 8, x, y, NULL, ok)) {
            double bx0 = INFINITY, bx1 = -INFINITY, by0 = INFINITY, by1 = -INFINITY;
            for (int i = 0; i < 8; i++)
                if (ok[i]) {
                    bx0 = fmin(bx0, x[i]), bx1 = fmax(bx1, x[i]), by0 = fmin(by0, y[i]), by1 = fmax(by1, y[i]);
                }
            double ax0 = a->transform[0], ax1 = ax0 + a->width * a->transform[1];
            double ay1 = a->transform[3], ay0 = ay1 + a->height * a->transform[5];
            double ix = fmin(ax1, bx1) - fmax(ax0, bx0), iy = fmin(ay1, by1) - fmax(ay0, by0);
            double area = (ax1 - ax0) * (ay1 - ay0);
            if (ix > 0 && iy > 0 && area > 0) frac = fmin(1.0, ix * iy / area);
        }
        OCTDestroyCoordinateTransformation(ct);
    }
    if (sa) OSRDestroySpatialReference(sa);
    if (sb) OSRDestroySpatialReference(sb);
    return frac;
}

void tw_grid_window(tw_grid *out, const tw_grid *g, int x0, int y0, int w, int h) {
    if (out != g) *out = *g;
    const double *t = g->transform;
    double t0 = t[0] + x0 * t[1] + y0 * t[2], t3 = t[3] + x0 * t[4] + y0 * t[5];
    out->transform[0] = t0;
    out->transform[3] = t3;
    out->width = w;
    out->height = h;
}

tw_status tw_scene_open_stack(tw_scene **out, const char *const *paths, int n_paths, tw_err *err) {
    *out = NULL;
    if (n_paths < 1) return tw_err_set(err, TW_E_USAGE, "a band stack of no files");
    tw_grid first = {0};
    for (int i = 0; i < n_paths; i++) {   /* each file checked alone, so the message names it */
        tw_scene *one;
        tw_status st = tw_scene_open(&one, paths[i], err);
        if (st) return st;
        int nb = one->n_bands, same = i == 0 || tw_grid_same(&one->grid, &first);
        tw_grid g = one->grid;
        tw_scene_close(one);
        if (nb != 1) return tw_err_set(err, TW_E_SHAPE, "%s: %d bands, want 1 (a band file)", paths[i], nb);
        if (i == 0) first = g;
        else if (!same)
            return tw_err_set(err, TW_E_SHAPE, "%s: grid %dx%d (EPSG %d, origin %.3f %.3f, pixel %g) differs from %s "
                              "(%dx%d, EPSG %d, origin %.3f %.3f, pixel %g)", paths[i], g.width, g.height, g.epsg,
                              g.transform[0], g.transform[3], g.transform[1], paths[0], first.width, first.height,
                              first.epsg, first.transform[0], first.transform[3], first.transform[1]);
    }
    char *argv[] = {"-separate", NULL};
    GDALBuildVRTOptions *opt = GDALBuildVRTOptionsNew(argv, NULL);
    int usage_error = 0;
    CPLErrorReset();
    GDALDatasetH ds = opt ? GDALBuildVRT("", n_paths, NULL, paths, opt, &usage_error) : NULL;
    GDALBuildVRTOptionsFree(opt);
    if (!ds) return tw_err_set(err, TW_E_IO, "%s (+%d files): cannot stack the bands: %s", paths[0], n_paths - 1, gdal_why());
    return scene_wrap(out, ds, paths[0], err);
}

/* The warper's resampling scale (destination pixels per source pixel) along x and y. GDAL works
 * it out per processing chunk from the chunk's shape, so the pixels of a window would depend on
 * where the window falls; we fix it once per warp: the ratio of the pixel sizes where both CRSs
 * are projected (10 m S1 onto a 10 m S2 grid: 1, a 20 m band: 2), else measured through the
 * transformer at the grid's centre. */
static void warp_scale(double *sx, double *sy, const tw_grid *src, const tw_grid *dst, void *tr) {
    *sx = *sy = 1;
    OGRSpatialReferenceH a = OSRNewSpatialReference(src->crs_wkt), b = OSRNewSpatialReference(dst->crs_wkt);
    if (a && b && OSRIsProjected(a) && OSRIsProjected(b)) {
        double ua = OSRGetLinearUnits(a, NULL), ub = OSRGetLinearUnits(b, NULL);
        *sx = fabs(src->transform[1]) * ua / (fabs(dst->transform[1]) * ub);
        *sy = fabs(src->transform[5]) * ua / (fabs(dst->transform[5]) * ub);
    } else {
        double x[3] = {dst->width / 2.0, dst->width / 2.0 + 1, dst->width / 2.0};
        double y[3] = {dst->height / 2.0, dst->height / 2.0, dst->height / 2.0 + 1}, z[3] = {0, 0, 0};
        int ok[3];
        if (GDALGenImgProjTransform(tr, TRUE, 3, x, y, z, ok) && ok[0] && ok[1] && ok[2]) {
            double dx = hypot(x[1] - x[0], y[1] - y[0]), dy = hypot(x[2] - x[0], y[2] - y[0]);
            if (dx > 0 && dy > 0) *sx = 1 / dx, *sy = 1 / dy;
        }
    }
    if (a) OSRDestroySpatialReference(a);
    if (b) OSRDestroySpatialReference(b);
}

tw_status tw_scene_warp(tw_scene **out, tw_scene *src, const tw_grid *grid, tw_resample resample, double nodata,
                        tw_err *err) {
    *out = NULL;
    if (!src->grid.crs_wkt[0] || !grid->crs_wkt[0])
        return tw_err_set(err, TW_E_FORMAT, "%s: cannot warp without a CRS on both sides", src->path);
    CPLErrorReset();
    void *tr = GDALCreateGenImgProjTransformer3(src->grid.crs_wkt, src->grid.transform, grid->crs_wkt, grid->transform);
    if (!tr) return tw_err_set(err, TW_E_FORMAT, "%s: no transformation to the target CRS: %s", src->path, gdal_why());
    GDALWarpOptions *wo = GDALCreateWarpOptions();
    int n = src->n_bands;
    wo->hSrcDS = src->ds;
    wo->eResampleAlg = resample == TW_RESAMPLE_BILINEAR ? GRA_Bilinear : GRA_NearestNeighbour;
    wo->nBandCount = n;
    wo->panSrcBands = CPLMalloc(sizeof(int) * (size_t)n);
    wo->panDstBands = CPLMalloc(sizeof(int) * (size_t)n);
    wo->padfDstNoDataReal = CPLMalloc(sizeof(double) * (size_t)n);
    int any_src_nodata = 0;
    double *src_nd = CPLMalloc(sizeof(double) * (size_t)n);
    for (int b = 0; b < n; b++) {
        wo->panSrcBands[b] = wo->panDstBands[b] = b + 1;
        wo->padfDstNoDataReal[b] = nodata;
        if (tw_scene_nodata(src, b + 1, &src_nd[b])) any_src_nodata = 1;
        else src_nd[b] = NAN;
    }
    /* Source nodata pixels are missing, not values: the warper leaves them out of the kernel. */
    if (any_src_nodata) wo->padfSrcNoDataReal = src_nd;
    else CPLFree(src_nd);
    wo->papszWarpOptions = CSLSetNameValue(wo->papszWarpOptions, "INIT_DEST", "NO_DATA");
    double sx, sy;
    char num[64];
    warp_scale(&sx, &sy, &src->grid, grid, tr);
    snprintf(num, sizeof num, "%.17g", sx);
    wo->papszWarpOptions = CSLSetNameValue(wo->papszWarpOptions, "XSCALE", num);
    snprintf(num, sizeof num, "%.17g", sy);
    wo->papszWarpOptions = CSLSetNameValue(wo->papszWarpOptions, "YSCALE", num);
    wo->pfnTransformer = GDALGenImgProjTransform;
    wo->pTransformerArg = tr;   /* owned by the warped VRT from here on */
    double gt[6];
    memcpy(gt, grid->transform, sizeof gt);
    GDALDatasetH vrt = GDALCreateWarpedVRT(src->ds, grid->width, grid->height, gt, wo);
    GDALDestroyWarpOptions(wo);
    if (!vrt) {
        GDALDestroyGenImgProjTransformer(tr);
        return tw_err_set(err, TW_E_IO, "%s: cannot warp onto the target grid: %s", src->path, gdal_why());
    }
    GDALSetProjection(vrt, grid->crs_wkt);
    for (int b = 0; b < n; b++) GDALSetRasterNoDataValue(GDALGetRasterBand(vrt, b + 1), nodata);
    return scene_wrap(out, vrt, src->path, err);
}

void tw_scene_close(tw_scene *sc) {
    if (!sc) return;
    GDALClose(sc->ds);
    free(sc);
}

const tw_grid *tw_scene_grid(const tw_scene *sc) { return &sc->grid; }
int tw_scene_n_bands(const tw_scene *sc) { return sc->n_bands; }
const char *tw_scene_path(const tw_scene *sc) { return sc->path; }

int tw_scene_nodata(const tw_scene *sc, int band, double *value) {
    int has = 0;
    double v = GDALGetRasterNoDataValue(GDALGetRasterBand(sc->ds, band), &has);
    *value = has ? v : 0;
    return has != 0;
}

tw_status tw_scene_read_scaled(tw_scene *sc, void *out, const char *type, const int *bands, int n_bands, int x0, int y0,
                               int w, int h, int out_w, int out_h, tw_resample resample, tw_err *err) {
    GDALDataType t = GDALGetDataTypeByName(type);
    if (t == GDT_Unknown) return tw_err_set(err, TW_E_USAGE, "%s: unknown pixel type %s", sc->path, type);
    if (n_bands < 1 || n_bands > sc->n_bands)
        return tw_err_set(err, TW_E_RANGE, "%s: %d bands asked, the scene has %d", sc->path, n_bands, sc->n_bands);
    for (int b = 0; bands && b < n_bands; b++)
        if (bands[b] < 1 || bands[b] > sc->n_bands)
            return tw_err_set(err, TW_E_RANGE, "%s: band %d of %d", sc->path, bands[b], sc->n_bands);
    if (x0 < 0 || y0 < 0 || w < 1 || h < 1 || x0 + w > sc->grid.width || y0 + h > sc->grid.height || out_w < 1 || out_h < 1)
        return tw_err_set(err, TW_E_RANGE, "%s: window %dx%d at (%d, %d) outside the %dx%d scene", sc->path, w, h, x0, y0,
                          sc->grid.width, sc->grid.height);
    GDALRasterIOExtraArg extra;
    INIT_RASTERIO_EXTRA_ARG(extra);
    extra.eResampleAlg = resample == TW_RESAMPLE_BILINEAR && (w != out_w || h != out_h) ? GRIORA_Bilinear
                                                                                     : GRIORA_NearestNeighbour;
    CPLErrorReset();
    if (GDALDatasetRasterIOEx(sc->ds, GF_Read, x0, y0, w, h, out, out_w, out_h, t, n_bands, (int *)bands, 0, 0, 0,
                              &extra) != CE_None)
        return tw_err_set(err, TW_E_IO, "%s: read of window %dx%d at (%d, %d) failed: %s", sc->path, w, h, x0, y0,
                          gdal_why());
    return TW_OK;
}

tw_status tw_scene_read(tw_scene *sc, void *out, const char *type, const int *bands, int n_bands, int x0, int y0,
                        int w, int h, tw_err *err) {
    return tw_scene_read_scaled(sc, out, type, bands, n_bands, x0, y0, w, h, w, h, TW_RESAMPLE_NEAREST, err);
}
