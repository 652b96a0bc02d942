/* The windows a scene is cut into for inference and the blending of the windows' outputs back
 * into pixels: window origins every `stride` pixels along each axis plus one flush with the far
 * edge, and a per-pixel weighted mean over the valid windows that cover the pixel. The model,
 * the reading and the writing are predict.c's. */
#ifndef TW_PREDICT_TILES_H
#define TW_PREDICT_TILES_H

#include <stdint.h>

#include "core/status.h"

typedef struct tw_tiles {
    int height, width, win, stride;
    int n_y, n_x;        /* windows down and across */
    int *y0, *x0;        /* [n_y], [n_x] window origins, increasing, the last flush with the edge */
    double *weight;      /* [win]: w(t) = sin^2(pi (t + 1/2) / win), the Hann window sampled at pixel
                          * centres: positive everywhere, and at stride = win / 2 the two windows'
                          * weights over a pixel sum to 1 (sin^2 + cos^2) */
} tw_tiles;

/* stride in [1, win]; the scene must hold one window (message names the sizes). */
tw_status tw_tiles_init(tw_tiles *t, int height, int width, int win, int stride, tw_err *err);
void tw_tiles_free(tw_tiles *t);

/* The last output row that windows of rows 0..i already decide: the rows [y0[i], end) are final
 * once window row i is scored (later windows start at y0[i+1] or below the scene). */
int tw_tiles_rows_done(const tw_tiles *t, int i);

/* out [k, r1 - r0, width] (=): rows [r0, r1) of the blend of vals [n_y, n_x, k] over the windows
 * with valid[n_y * n_x] != 0: out = sum w(y - y0) w(x - x0) v / sum w(y - y0) w(x - x0) (weights
 * normalised to sum to one at every pixel). A pixel no valid window covers, or with
 * px_bad[(y - r0) * width + x] != 0 (px_bad may be NULL), is `nodata`. */
void tw_tiles_blend_rows(float *out, const tw_tiles *t, const float *vals, const uint8_t *valid, int k, int r0,
                         int r1, const uint8_t *px_bad, float nodata);

#endif
