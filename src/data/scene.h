/* Georeferenced rasters of any size through GDAL: a scene (one multi-band file, or single-band
 * files stacked), its grid (CRS, geotransform, size), a window read into a buffer, and a scene
 * warped onto another scene's grid with GDAL's warper. The converters and `predict` cut patches
 * from scenes with it; raster.h keeps the fixed-size BigEarthNet band reader. */
#ifndef TW_SCENE_H
#define TW_SCENE_H

#include <stdint.h>

#include "core/status.h"

/* A grid: the CRS (WKT, and its EPSG code or 0), the GDAL geotransform (x = t[0] + col t[1] +
 * row t[2], y = t[3] + col t[4] + row t[5], of a pixel's top-left corner) and the size. */
typedef struct tw_grid {
    char crs_wkt[4096];
    int epsg;
    double transform[6];
    int width, height;
} tw_grid;

typedef struct tw_scene tw_scene;

typedef enum { TW_RESAMPLE_NEAREST, TW_RESAMPLE_BILINEAR } tw_resample;

/* Opens `path` (any GDAL raster) for reading; the message names the file. Call tw_raster_init
 * (raster.h) once first. */
tw_status tw_scene_open(tw_scene **out, const char *path, tw_err *err);
/* Stacks single-band files of one grid as the bands of one scene (a VRT in memory); a file of
 * another size, transform or CRS, or with more than one band, is named in the message. */
tw_status tw_scene_open_stack(tw_scene **out, const char *const *paths, int n_paths, tw_err *err);
/* A scene that reads `src` resampled onto `grid` (GDAL's warper through a warped VRT: the same
 * transformer and kernels as gdalwarp -et 0 -wo XSCALE=.. -wo YSCALE=..; the scale is fixed per
 * warp, the ratio of the pixel sizes, so that a window's pixels do not depend on where it falls).
 * Pixels of the grid that src does not cover read as `nodata`. src must outlive the result. */
tw_status tw_scene_warp(tw_scene **out, tw_scene *src, const tw_grid *grid, tw_resample resample, double nodata,
                        tw_err *err);
void tw_scene_close(tw_scene *sc);

const tw_grid *tw_scene_grid(const tw_scene *sc);
int tw_scene_n_bands(const tw_scene *sc);
const char *tw_scene_path(const tw_scene *sc);
/* The band's nodata value in *value; 0 when the band declares none. */
int tw_scene_nodata(const tw_scene *sc, int band, double *value);

/* Reads bands[0..n_bands) (1-based, NULL: 1..n_bands) of the window [x0, x0+w) x [y0, y0+h)
 * into out [n_bands, h, w], converted to `type` ("Float32", "UInt16", "Byte": a GDAL type name).
 * The window must lie inside the scene. */
tw_status tw_scene_read(tw_scene *sc, void *out, const char *type, const int *bands, int n_bands, int x0, int y0,
                        int w, int h, tw_err *err);

/* The same window read resampled to out_w x out_h (GDAL's RasterIO with `resample`: the call
 * rasterio's read(out_shape=..., resampling=...) makes), into out [n_bands, out_h, out_w]. */
tw_status tw_scene_read_scaled(tw_scene *sc, void *out, const char *type, const int *bands, int n_bands, int x0, int y0,
                               int w, int h, int out_w, int out_h, tw_resample resample, tw_err *err);

/* The grid of a window of `g`: same CRS, origin moved to (x0, y0), size w x h. */
void tw_grid_window(tw_grid *out, const tw_grid *g, int x0, int y0, int w, int h);
/* The fraction of grid a's area that grid b covers (b's corners and edge midpoints taken into
 * a's CRS, their bounding box intersected with a's): 0 when they do not overlap or b's CRS cannot
 * be transformed into a's. */
double tw_grid_overlap(const tw_grid *a, const tw_grid *b);
/* 1 when two grids have the same CRS (GDAL's comparison), transform (to 1e-6 of a pixel) and size. */
int tw_grid_same(const tw_grid *a, const tw_grid *b);

#endif
