/* Georeferenced raster outputs of predict and embed: a tiled, DEFLATE-compressed GeoTIFF written
 * strip by strip into a temporary file next to the target, turned into a Cloud-Optimised GeoTIFF
 * when GDAL has the COG driver, then renamed into place; a failure leaves nothing behind. */
#ifndef TW_PREDICT_RASTER_OUT_H
#define TW_PREDICT_RASTER_OUT_H

#include <stdint.h>

#include "core/status.h"
#include "data/scene.h"

typedef struct tw_raster_out tw_raster_out;

/* type: "Float32" or "Byte"; band_names[n_bands] (NULL: none) become band descriptions; every
 * band's nodata is `nodata`. metadata: NULL or NULL-terminated "KEY=VALUE" strings. */
tw_status tw_raster_out_open(tw_raster_out **out, const char *path, const tw_grid *g, int n_bands, const char *type,
                             const char *const *band_names, double nodata, const char *const *metadata, tw_err *err);
/* A colour table (rgb[n][3]) for a one-band Byte raster of class indices. The class names belong
 * in the metadata: GDAL keeps category names only in a .aux.xml sidecar. */
tw_status tw_raster_out_classes(tw_raster_out *w, const uint8_t (*rgb)[3], int n, tw_err *err);
/* rows [y0, y0 + h) of every band: data [n_bands, h, width] of the open type. */
tw_status tw_raster_out_write(tw_raster_out *w, const void *data, int y0, int h, tw_err *err);
/* Finishes (COG copy when available), renames into place; frees w either way. */
tw_status tw_raster_out_close(tw_raster_out *w, tw_err *err);
/* Removes the temporary file; frees w. NULL is fine. */
void tw_raster_out_abort(tw_raster_out *w);

#endif
