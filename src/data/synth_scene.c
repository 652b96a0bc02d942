/* `twinfuse synth --scene`: a synthetic georeferenced scene (synth.h): tiles of at most
 * TILE x TILE pixels, each one synthetic sample (its own land-cover layout), written into an S2
 * GeoTIFF (12 uint16 bands named B01..B12 in the shards' order, nodata 0) and an S1 one (VV, VH
 * in dB) on the same UTM grid, for predict's demo and benchmark; both written under temporary names
 * and renamed once complete. */
#include <cpl_conv.h>
#include <cpl_error.h>
#include <errno.h>
#include <gdal.h>
#include <ogr_srs_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/raster.h"
#include "data/shard.h"
#include "data/synth.h"

#define TILE 256

static const char utm33n[] = "EPSG:32633";

static GDALDatasetH create(const char *path, int size, int bands, GDALDataType t, const char *const *names) {
    char *opts[] = {"TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER", NULL};
    GDALDatasetH ds = GDALCreate(GDALGetDriverByName("GTiff"), path, size, size, bands, t, opts);
    if (!ds) return NULL;
    double gt[6] = {500000.0, 10.0, 0, 5000000.0, 0, -10.0};
    GDALSetGeoTransform(ds, gt);
    OGRSpatialReferenceH srs = OSRNewSpatialReference(NULL);
    char *wkt = NULL;
    if (OSRSetFromUserInput(srs, utm33n) == OGRERR_NONE && OSRExportToWkt(srs, &wkt) == OGRERR_NONE)
        GDALSetProjection(ds, wkt);
    CPLFree(wkt);
    OSRDestroySpatialReference(srs);
    for (int b = 0; b < bands; b++) {
        GDALRasterBandH band = GDALGetRasterBand(ds, b + 1);
        GDALSetDescription(band, names[b]);
        if (t == GDT_UInt16) GDALSetRasterNoDataValue(band, 0);
    }
    return ds;
}

tw_status tw_synth_scene_write(const char *s2_path, const char *s1_path, int size, uint64_t seed, tw_err *err) {
    if (size < 8 || size > 200000) return tw_err_set(err, TW_E_RANGE, "synth --scene %d: want 8..200000 pixels", size);
    tw_raster_init();
    char tmp2[4200], tmp1[4200];
    snprintf(tmp2, sizeof tmp2, "%s.tmp.tif", s2_path);
    snprintf(tmp1, sizeof tmp1, "%s.tmp.tif", s1_path);
    CPLErrorReset();
    GDALDatasetH s2 = create(tmp2, size, TW_S2_BANDS, GDT_UInt16, tw_shard_s2_bands);
    GDALDatasetH s1 = s2 ? create(tmp1, size, TW_S1_BANDS, GDT_Float32, tw_shard_s1_bands) : NULL;
    tw_status st = TW_OK;
    if (!s2 || !s1) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot create: %s", s2 ? s1_path : s2_path, CPLGetLastErrorMsg());
        goto done;
    }
    int t = size < TILE ? size : TILE, n = (size + t - 1) / t;
    uint16_t *a2 = malloc(sizeof *a2 * TW_S2_BANDS * t * t);
    float *a1 = malloc(sizeof *a1 * TW_S1_BANDS * t * t);
    if (!a2 || !a1) st = tw_err_set(err, TW_E_NOMEM, "synth scene tile %dx%d", t, t);
    for (int ty = 0; ty < n && st == TW_OK; ty++)
        for (int tx = 0; tx < n && st == TW_OK; tx++) {
            int h = ty == n - 1 ? size - ty * t : t, w = tx == n - 1 ? size - tx * t : t;
            uint8_t labels[TW_N_CLASSES], flags;
            if (h < 8 || w < 8) {   /* a sliver at the edge: the neighbouring tile's pixels, cut */
                h = h < 8 ? 8 : h;
                w = w < 8 ? 8 : w;
            }
            st = tw_synth_sample(a2, a1, labels, NULL, &flags, seed, TW_SYNTH_TRAIN, (int64_t)ty * n + tx, h, w, 0, err);
            int wh = ty * t + h > size ? size - ty * t : h, ww = tx * t + w > size ? size - tx * t : w;
            /* The sample is [bands, h, w]: written with a line stride of w floats per row. */
            if (st == TW_OK &&
                (GDALDatasetRasterIO(s2, GF_Write, tx * t, ty * t, ww, wh, a2, ww, wh, GDT_UInt16, TW_S2_BANDS, NULL, 2,
                                     (GSpacing)2 * w, (GSpacing)2 * w * h) != CE_None ||
                 GDALDatasetRasterIO(s1, GF_Write, tx * t, ty * t, ww, wh, a1, ww, wh, GDT_Float32, TW_S1_BANDS, NULL,
                                     4, (GSpacing)4 * w, (GSpacing)4 * w * h) != CE_None))
                st = tw_err_set(err, TW_E_IO, "%s: writing tile (%d, %d): %s", s2_path, ty, tx, CPLGetLastErrorMsg());
        }
    free(a2);
    free(a1);
done:
    CPLErrorReset();
    if (s2) GDALClose(s2);
    if (s1) GDALClose(s1);
    if (st == TW_OK && CPLGetLastErrorType() >= CE_Failure)
        st = tw_err_set(err, TW_E_IO, "%s: closing: %s", s2_path, CPLGetLastErrorMsg());
    if (st == TW_OK && (rename(tmp2, s2_path) != 0 || rename(tmp1, s1_path) != 0))
        st = tw_err_set(err, TW_E_IO, "%s: cannot move the scene into place: %s", s2_path, strerror(errno));
    remove(tmp2);
    remove(tmp1);
    return st;
}
