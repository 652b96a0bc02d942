/* A model's input channels read from georeferenced scenes: S2 as one multi-band file or twelve
 * band files (the shards' band order), S1 VV and VH (dB, or linear intensity turned into dB as
 * 10 log10), each channel resampled onto the output grid with GDAL's warper when it lies on
 * another one, and normalised with the statistics the model was trained with. Strips of rows come
 * out as normalised f32 planes with a per-pixel nodata mask. The grid logic is data/scene.h's. */
#ifndef TW_PREDICT_SCENE_INPUT_H
#define TW_PREDICT_SCENE_INPUT_H

#include <stdint.h>

#include "data/scene.h"
#include "data/shard.h"

#define TW_SCENE_INPUT_MAX (TW_S2_BANDS + TW_S1_BANDS)

typedef struct tw_scene_input_opts {
    const char *s2;            /* a multi-band file, or 12 comma-separated band files; NULL: none */
    const char *s1;            /* a 2-band file (VV, VH) or "VV.tif,VH.tif"; NULL: none */
    const char *grid;          /* NULL: the S2 scene's grid (S1's when there is no S2); else a
                                * raster whose grid (CRS, transform, size) the output takes */
    int s1_linear;             /* S1 holds linear intensity: 10 log10(x), x <= 0 is nodata */
    int n_s2;                  /* the model's S2 channels: s2_bands[0..n_s2) index tw_shard_s2_bands */
    const int *s2_bands;
    int use_s1;                /* the model's last two channels are VV, VH */
    const tw_shard_norm *norm; /* per shard band (S2 bands, then VV, VH) */
} tw_scene_input_opts;

typedef struct tw_scene_input {
    tw_grid grid;
    int n_ch;                              /* n_s2 + (use_s1 ? 2 : 0): S2 channels, then VV, VH */
    tw_scene *src[TW_SCENE_INPUT_MAX];     /* the scene each channel is read from (on grid) */
    int band[TW_SCENE_INPUT_MAX];          /* 1-based band of src */
    int is_s1[TW_SCENE_INPUT_MAX];
    int has_nodata[TW_SCENE_INPUT_MAX];
    double nodata[TW_SCENE_INPUT_MAX];
    float scale[TW_SCENE_INPUT_MAX], shift[TW_SCENE_INPUT_MAX];   /* y = x scale + shift, as the loader */
    int s1_linear;
    tw_scene *owned[4 * TW_SCENE_INPUT_MAX];
    int n_owned;
    float *raw;                            /* one row band of one channel, the read buffer */
    int raw_rows;
} tw_scene_input;

/* Opens and checks the inputs; every message names the file: a band the model needs and the
 * scene lacks, S1 and S2 that do not overlap, a scene without a CRS that must be warped. */
tw_status tw_scene_input_open(tw_scene_input *in, const tw_scene_input_opts *o, tw_err *err);
void tw_scene_input_close(tw_scene_input *in);

/* Rows [y0, y0 + h) of every channel: planes [n_ch, h, width] normalised, and bad [h, width] = 1
 * where any channel is nodata (its declared value, NaN, a pixel the warp did not cover, or a
 * non-positive linear S1 value); those pixels are 0 in planes. */
tw_status tw_scene_input_read(tw_scene_input *in, float *planes, uint8_t *bad, int y0, int h, tw_err *err);

#endif
