/* Reads a window of a scene through src/data/scene.h and writes it as raw float32, for
 * test_scene.py, which compares it with GDAL's own tools (gdalwarp, rasterio):
 *   scene_probe OUT.f32 X0 Y0 W H FILE...            one file, or single-band files stacked
 *   scene_probe -warp REF OUT.f32 X0 Y0 W H FILE...  FILE(s) warped (bilinear) onto REF's grid
 * Prints the grid (EPSG and transform) of what it read; exit 1 with the message on bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/raster.h"
#include "data/scene.h"

static int num(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end != 0) {
        fprintf(stderr, "scene_probe: '%s' is not an integer\n", s);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv) {
    int warp = argc > 1 && !strcmp(argv[1], "-warp");
    int a = warp ? 3 : 1;
    if (argc < a + 6) {
        fprintf(stderr, "usage: scene_probe [-warp REF] OUT.f32 X0 Y0 W H FILE...\n");
        return 2;
    }
    const char *out = argv[a];
    int x0 = num(argv[a + 1]), y0 = num(argv[a + 2]), w = num(argv[a + 3]), h = num(argv[a + 4]);
    int n_files = argc - (a + 5);
    tw_raster_init();
    tw_err err = {0};
    tw_scene *src = NULL, *ref = NULL, *wrp = NULL;
    int rc = 1;
    float *buf = NULL;
    tw_status st = n_files == 1 ? tw_scene_open(&src, argv[a + 5], &err)
                                : tw_scene_open_stack(&src, (const char *const *)argv + a + 5, n_files, &err);
    if (!st && warp && !(st = tw_scene_open(&ref, argv[2], &err)))
        st = tw_scene_warp(&wrp, src, tw_scene_grid(ref), TW_RESAMPLE_BILINEAR, -9999, &err);
    tw_scene *sc = wrp ? wrp : src;
    if (!st) {
        int nb = tw_scene_n_bands(sc);
        buf = malloc(sizeof(float) * (size_t)nb * (size_t)w * (size_t)h);
        st = tw_scene_read(sc, buf, "Float32", NULL, nb, x0, y0, w, h, &err);
        FILE *f = st ? NULL : fopen(out, "wb");
        if (f && fwrite(buf, sizeof(float), (size_t)nb * w * h, f) == (size_t)nb * w * h && fclose(f) == 0) {
            tw_grid g;
            tw_grid_window(&g, tw_scene_grid(sc), x0, y0, w, h);
            printf("bands %d epsg %d transform %.10g %.10g %.10g %.10g %.10g %.10g\n", nb, g.epsg, g.transform[0],
                   g.transform[1], g.transform[2], g.transform[3], g.transform[4], g.transform[5]);
            rc = 0;
        } else if (!st) {
            fprintf(stderr, "scene_probe: cannot write %s\n", out);
        }
    }
    if (st) fprintf(stderr, "scene_probe: %s\n", err.msg);
    free(buf);
    tw_scene_close(wrp);
    tw_scene_close(ref);
    tw_scene_close(src);
    return rc;
}
