/* Window grid and blending (tiles.h). The weighting is TerraTorch's idea (tiled_inference's blend
 * mask: a smooth ramp over the overlaps, never zero) with a Hann window, whose half-overlapping
 * copies sum to one, so a stride of half a window blends without any renormalisation at all. */
#include "predict/tiles.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* Origins 0, s, 2s, ... while a window fits, then one flush with the edge if pixels are left. */
static int *positions(int len, int win, int stride, int *n) {
    int m = (len - win) / stride + 1;
    int extra = (m - 1) * stride + win < len;
    int *p = malloc(sizeof *p * (size_t)(m + extra));
    if (!p) return NULL;
    for (int i = 0; i < m; i++) p[i] = i * stride;
    if (extra) p[m] = len - win;
    *n = m + extra;
    return p;
}

tw_status tw_tiles_init(tw_tiles *t, int height, int width, int win, int stride, tw_err *err) {
    memset(t, 0, sizeof *t);
    if (win < 1 || stride < 1 || stride > win)
        return tw_err_set(err, TW_E_RANGE, "stride %d with windows of %d: want 1 <= stride <= window", stride, win);
    if (height < win || width < win)
        return tw_err_set(err, TW_E_SHAPE, "a %dx%d scene is smaller than one %dx%d window", width, height, win, win);
    t->height = height;
    t->width = width;
    t->win = win;
    t->stride = stride;
    t->y0 = positions(height, win, stride, &t->n_y);
    t->x0 = positions(width, win, stride, &t->n_x);
    t->weight = malloc(sizeof *t->weight * (size_t)win);
    if (!t->y0 || !t->x0 || !t->weight) {
        tw_tiles_free(t);
        return tw_err_set(err, TW_E_NOMEM, "window grid of a %dx%d scene", width, height);
    }
    for (int i = 0; i < win; i++) {
        double s = sin(M_PI * (i + 0.5) / win);
        t->weight[i] = s * s;
    }
    return TW_OK;
}

void tw_tiles_free(tw_tiles *t) {
    free(t->y0);
    free(t->x0);
    free(t->weight);
    memset(t, 0, sizeof *t);
}

int tw_tiles_rows_done(const tw_tiles *t, int i) { return i + 1 < t->n_y ? t->y0[i + 1] : t->height; }

void tw_tiles_blend_rows(float *out, const tw_tiles *t, const float *vals, const uint8_t *valid, int k, int r0,
                         int r1, const uint8_t *px_bad, float nodata) {
    int W = t->width, win = t->win;
    double *acc = malloc(sizeof *acc * (size_t)(k + 1) * W);   /* [k + 1, W]: sums, then the weights */
    TW_ASSERT(acc);
    for (int y = r0; y < r1; y++) {
        memset(acc, 0, sizeof *acc * (size_t)(k + 1) * W);
        double *den = acc + (size_t)k * W;
        for (int i = 0; i < t->n_y; i++) {
            if (y < t->y0[i] || y >= t->y0[i] + win) continue;
            double wy = t->weight[y - t->y0[i]];
            for (int j = 0; j < t->n_x; j++) {
                if (!valid[(size_t)i * t->n_x + j]) continue;
                const float *v = vals + ((size_t)i * t->n_x + j) * k;
                int x0 = t->x0[j];
                for (int x = 0; x < win; x++) den[x0 + x] += wy * t->weight[x];
                for (int c = 0; c < k; c++) {
                    double *a = acc + (size_t)c * W + x0, vc = wy * v[c];
                    for (int x = 0; x < win; x++) a[x] += vc * t->weight[x];
                }
            }
        }
        const uint8_t *bad = px_bad ? px_bad + (size_t)(y - r0) * W : NULL;
        for (int c = 0; c < k; c++) {
            float *o = out + ((size_t)c * (r1 - r0) + (y - r0)) * W;
            const double *a = acc + (size_t)c * W;
            for (int x = 0; x < W; x++) o[x] = den[x] > 0 && !(bad && bad[x]) ? (float)(a[x] / den[x]) : nodata;
        }
    }
    free(acc);
}
