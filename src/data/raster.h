/* Reading one single-band GeoTIFF through GDAL's C API into a buffer of the output grid: the
 * 10 m bands as they are, the 20 m and 60 m bands resampled with GDAL's bilinear kernel, the
 * way rasterio's read(out_shape=..., resampling=bilinear) and torchgeo do it. */
#ifndef TW_RASTER_H
#define TW_RASTER_H

#include <stdint.h>

#include "core/status.h"

/* Call once before any thread reads (registers the drivers, silences GDAL's stderr). */
void tw_raster_init(void);

/* Reads band 1 of `path`, which must be single-band, of `want_type` ("UInt16" or "Float32", a
 * GDAL type name) and native_h x native_w pixels, into out [out_h, out_w] (resampled bilinearly
 * when the sizes differ). Messages name the file. */
tw_status tw_raster_read(void *out, const char *path, const char *want_type, int native_h, int native_w,
                         int out_h, int out_w, tw_err *err);

#endif
