/* predict/tiles.h: window origins (every stride, one flush with the far edge), the Hann weights
 * (half-overlapping copies sum to one), the blend (stride = window gives each window's values;
 * windows skipped and pixels flagged bad give nodata), and the errors of impossible grids. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "predict/tiles.h"

int main(void) {
    tw_err err = {0};
    tw_tiles t;
    CHECK(tw_tiles_init(&t, 64, 100, 32, 16, &err) == TW_OK, "%s", err.msg);
    int want_x[] = {0, 16, 32, 48, 64, 68}, want_y[] = {0, 16, 32};
    CHECK(t.n_x == 6 && t.n_y == 3, "windows %d x %d, want 6 x 3", t.n_x, t.n_y);
    for (int j = 0; j < t.n_x && j < 6; j++) CHECK(t.x0[j] == want_x[j], "x0[%d] = %d, want %d", j, t.x0[j], want_x[j]);
    for (int i = 0; i < t.n_y && i < 3; i++) CHECK(t.y0[i] == want_y[i], "y0[%d] = %d, want %d", i, t.y0[i], want_y[i]);
    CHECK(tw_tiles_rows_done(&t, 0) == 16 && tw_tiles_rows_done(&t, 2) == 64, "rows done %d, %d",
          tw_tiles_rows_done(&t, 0), tw_tiles_rows_done(&t, 2));
    double worst = 0;
    for (int i = 0; i < 16; i++) worst = fmax(worst, fabs(t.weight[i] + t.weight[i + 16] - 1.0));
    CHECK(worst < 1e-12 && t.weight[0] > 0, "Hann weights at half overlap sum to 1 (|d| %g), w(0) = %g", worst,
          t.weight[0]);
    tw_tiles_free(&t);

    /* stride = window: every pixel is its window's value; a skipped window and a bad pixel: NaN */
    CHECK(tw_tiles_init(&t, 16, 24, 8, 8, &err) == TW_OK, "%s", err.msg);
    int k = 3, n = t.n_y * t.n_x;
    float *vals = malloc(sizeof(float) * n * k), *out = malloc(sizeof(float) * k * 16 * 24);
    uint8_t *valid = malloc(n), *bad = calloc(16 * 24, 1);
    for (int q = 0; q < n * k; q++) vals[q] = (float)(q % 7) / 7.0f + 0.01f * q;
    memset(valid, 1, n);
    valid[4] = 0;                    /* window (1, 1): rows 8..15, columns 8..15 */
    bad[3 * 24 + 20] = 1;            /* pixel (3, 20) */
    tw_tiles_blend_rows(out, &t, vals, valid, k, 0, 16, bad, NAN);
    double d = 0;
    int nan_ok = 1;
    for (int c = 0; c < k; c++)
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 24; x++) {
                float o = out[(c * 16 + y) * 24 + x];
                int q = (y / 8) * t.n_x + x / 8, skip = q == 4 || (y == 3 && x == 20);
                if (skip) nan_ok &= isnan(o);
                else d = fmax(d, fabs(o - vals[q * k + c]));
            }
    CHECK(d < 1e-6 && nan_ok, "stride = window: max |d| %g, nodata where skipped or bad: %d", d, nan_ok);
    tw_tiles_free(&t);

    CHECK(tw_tiles_init(&t, 16, 16, 8, 9, &err) != TW_OK, "a stride over the window accepted");
    CHECK(tw_tiles_init(&t, 7, 16, 8, 4, &err) != TW_OK && strstr(err.msg, "smaller"), "a scene under a window: %s",
          err.msg);
    free(vals);
    free(out);
    free(valid);
    free(bad);
    printf("%s\n", n_fail ? "FAIL" : "PASS");
    return n_fail ? 1 : 0;
}
