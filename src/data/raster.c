/* The GDAL reader (raster.h). GDALDatasetRasterIOEx with GRIORA_Bilinear over the whole raster
 * is the same call rasterio makes for read(out_shape=...), so the pixels match it exactly. */
#include "data/raster.h"

#include <gdal.h>
#include <cpl_error.h>
#include <cpl_conv.h>
#include <string.h>

void tw_raster_init(void) {
    GDALAllRegister();
    CPLSetErrorHandler(CPLQuietErrorHandler);
}

tw_status tw_raster_read(void *out, const char *path, const char *want_type, int native_h, int native_w,
                         int out_h, int out_w, tw_err *err) {
    GDALDataType want = GDALGetDataTypeByName(want_type);
    CPLErrorReset();
    GDALDatasetH ds = GDALOpenEx(path, GDAL_OF_RASTER | GDAL_OF_READONLY, NULL, NULL, NULL);
    if (!ds) {
        const char *why = CPLGetLastErrorMsg();
        return tw_err_set(err, TW_E_MISSING, "%s: cannot open raster: %s", path, why && *why ? why : "missing or unreadable");
    }
    tw_status st = TW_OK;
    int nb = GDALGetRasterCount(ds), w = GDALGetRasterXSize(ds), h = GDALGetRasterYSize(ds);
    if (nb != 1) {
        st = tw_err_set(err, TW_E_SHAPE, "%s: %d bands, want 1", path, nb);
        goto done;
    }
    GDALDataType t = GDALGetRasterDataType(GDALGetRasterBand(ds, 1));
    if (t != want) {
        st = tw_err_set(err, TW_E_DTYPE, "%s: pixel type %s, want %s", path, GDALGetDataTypeName(t), want_type);
        goto done;
    }
    if (w != native_w || h != native_h) {
        st = tw_err_set(err, TW_E_SHAPE, "%s: %dx%d pixels, want %dx%d", path, w, h, native_w, native_h);
        goto done;
    }
    GDALRasterIOExtraArg extra;
    INIT_RASTERIO_EXTRA_ARG(extra);
    extra.eResampleAlg = (w == out_w && h == out_h) ? GRIORA_NearestNeighbour : GRIORA_Bilinear;
    int band = 1;
    if (GDALDatasetRasterIOEx(ds, GF_Read, 0, 0, w, h, out, out_w, out_h, want, 1, &band, 0, 0, 0, &extra) != CE_None)
        st = tw_err_set(err, TW_E_IO, "%s: read failed: %s", path, CPLGetLastErrorMsg());
done:
    GDALClose(ds);
    return st;
}
