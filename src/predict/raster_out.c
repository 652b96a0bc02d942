/* GeoTIFF / COG writing through GDAL (raster_out.h). */
#include "predict/raster_out.h"

#include <cpl_conv.h>
#include <cpl_error.h>
#include <errno.h>
#include <gdal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/atomic_file.h"

struct tw_raster_out {
    GDALDatasetH ds;
    GDALDataType type;
    char path[4096], tmp[4160], tmp_cog[4160];
    int n_bands, width, height;
};

/* path and the .aux.xml sidecar GDAL may have left beside it. */
static void remove_with_aux(const char *path) {
    char aux[4200];
    snprintf(aux, sizeof aux, "%s.aux.xml", path);
    unlink(path);
    unlink(aux);
}

static const char *gdal_why(void) {
    const char *m = CPLGetLastErrorMsg();
    return m && *m ? m : "unknown GDAL error";
}

tw_status tw_raster_out_open(tw_raster_out **out, const char *path, const tw_grid *g, int n_bands, const char *type,
                             const char *const *band_names, double nodata, const char *const *metadata, tw_err *err) {
    *out = NULL;
    tw_status st = tw_atomic_target_check(path, err);
    if (st) return st;
    GDALDriverH drv = GDALGetDriverByName("GTiff");
    if (!drv) return tw_err_set(err, TW_E_IO, "%s: GDAL has no GTiff driver", path);
    tw_raster_out *w = calloc(1, sizeof *w);
    if (!w) return tw_err_set(err, TW_E_NOMEM, "%s: writer", path);
    if (snprintf(w->path, sizeof w->path, "%s", path) >= (int)sizeof w->path) {
        free(w);
        return tw_err_set(err, TW_E_RANGE, "%s: path too long", path);
    }
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld.tif", path, (long)getpid());
    snprintf(w->tmp_cog, sizeof w->tmp_cog, "%s.tmp.%ld.cog.tif", path, (long)getpid());
    w->type = GDALGetDataTypeByName(type);
    w->n_bands = n_bands;
    w->width = g->width;
    w->height = g->height;
    /* BIGTIFF when it may pass 4 GB (a float band per class over a whole tile does). */
    char *opts[] = {"TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER",
                    n_bands > 1 ? "INTERLEAVE=BAND" : NULL, NULL};
    CPLErrorReset();
    w->ds = GDALCreate(drv, w->tmp, g->width, g->height, n_bands, w->type, opts);
    if (!w->ds) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot create %s: %s", path, w->tmp, gdal_why());
        free(w);
        return st;
    }
    double t[6];
    memcpy(t, g->transform, sizeof t);
    int bad = GDALSetGeoTransform(w->ds, t) != CE_None || (g->crs_wkt[0] && GDALSetProjection(w->ds, g->crs_wkt) != CE_None);
    for (int b = 0; b < n_bands && !bad; b++) {
        GDALRasterBandH band = GDALGetRasterBand(w->ds, b + 1);
        bad = GDALSetRasterNoDataValue(band, nodata) != CE_None;
        if (band_names) GDALSetDescription(band, band_names[b]);
    }
    for (int i = 0; metadata && metadata[i] && !bad; i++) {
        char key[256];
        const char *eq = strchr(metadata[i], '=');
        if (!eq || eq - metadata[i] >= (long)sizeof key) continue;
        snprintf(key, sizeof key, "%.*s", (int)(eq - metadata[i]), metadata[i]);
        bad = GDALSetMetadataItem(w->ds, key, eq + 1, NULL) != CE_None;
    }
    if (bad) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot set the georeference and band metadata: %s", w->tmp, gdal_why());
        tw_raster_out_abort(w);
        return st;
    }
    *out = w;
    return TW_OK;
}

tw_status tw_raster_out_classes(tw_raster_out *w, const uint8_t (*rgb)[3], int n, tw_err *err) {
    GDALColorTableH ct = GDALCreateColorTable(GPI_RGB);
    for (int i = 0; i < n; i++) {
        GDALColorEntry e = {rgb[i][0], rgb[i][1], rgb[i][2], 255};
        GDALSetColorEntry(ct, i, &e);
    }
    CPLErrorReset();
    int bad = GDALSetRasterColorTable(GDALGetRasterBand(w->ds, 1), ct) != CE_None;
    GDALDestroyColorTable(ct);
    return bad ? tw_err_set(err, TW_E_IO, "%s: cannot set the colour table: %s", w->tmp, gdal_why()) : TW_OK;
}

tw_status tw_raster_out_write(tw_raster_out *w, const void *data, int y0, int h, tw_err *err) {
    CPLErrorReset();
    if (GDALDatasetRasterIO(w->ds, GF_Write, 0, y0, w->width, h, (void *)data, w->width, h, w->type, w->n_bands, NULL, 0,
                            0, 0) != CE_None)
        return tw_err_set(err, TW_E_IO, "%s: writing rows %d..%d failed: %s", w->tmp, y0, y0 + h - 1, gdal_why());
    return TW_OK;
}

tw_status tw_raster_out_close(tw_raster_out *w, tw_err *err) {
    tw_status st = TW_OK;
    CPLErrorReset();
    GDALFlushCache(w->ds);
    if (CPLGetLastErrorType() >= CE_Failure) st = tw_err_set(err, TW_E_IO, "%s: flush failed: %s", w->tmp, gdal_why());
    GDALDriverH cog = GDALGetDriverByName("COG");
    const char *final = w->tmp;
    if (st == TW_OK && cog) {
        char *opts[] = {"COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER", "OVERVIEWS=NONE", NULL};
        GDALDatasetH c = GDALCreateCopy(cog, w->tmp_cog, w->ds, FALSE, opts, NULL, NULL);
        if (!c || (GDALClose(c), CPLGetLastErrorType() >= CE_Failure))
            st = tw_err_set(err, TW_E_IO, "%s: cannot write the Cloud-Optimised GeoTIFF %s: %s", w->path, w->tmp_cog,
                            gdal_why());
        final = w->tmp_cog;
    }
    CPLErrorReset();
    GDALClose(w->ds);
    w->ds = NULL;
    if (st == TW_OK && CPLGetLastErrorType() >= CE_Failure)
        st = tw_err_set(err, TW_E_IO, "%s: closing failed: %s", w->tmp, gdal_why());
    if (st == TW_OK && rename(final, w->path) != 0)
        st = tw_err_set(err, TW_E_IO, "%s: cannot move %s into place: %s", w->path, final, strerror(errno));
    remove_with_aux(w->tmp);
    remove_with_aux(w->tmp_cog);
    free(w);
    return st;
}

void tw_raster_out_abort(tw_raster_out *w) {
    if (!w) return;
    if (w->ds) GDALClose(w->ds);
    remove_with_aux(w->tmp);
    remove_with_aux(w->tmp_cog);
    free(w);
}
