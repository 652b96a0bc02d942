/* Shard format version 2 through the C writer and reader, for test_shard_v2.py:
 *   shard_v2_probe write DIR   writes DIR/train-00000.h5 and train-00001.h5 with a time axis of
 *                              4 (1 to 4 acquisitions per location), s2 + s1 + s2c, dates, two
 *                              CRSs and a patch without one, no labels; then the normalisation
 *   shard_v2_probe read DIR    opens every train shard and checks each acquisition's pixels,
 *                              dates and georeference against the formula below; exit 1 with
 *                              the reader's message (bad-shard tests) or the first mismatch
 * Pixel (i, t, band, y, x) of product p is a function of them alone (value()), as is the rest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"
#include "data/shard_dir.h"

#define H 6
#define W 5
#define N_PER 3

static const char *const wkt_of[2] = {"EPSG:32632 as WKT placeholder A", "EPSG:32633 as WKT placeholder B"};

static double value(int p, int64_t i, int t, int b, int y, int x) {
    double v = (double)(i * 1000 + t * 200 + b * 10 + y * W + x);
    return p == 1 ? -30.0 + v / 97.0 : v;   /* s1 in dB; s2, s2c: uint16 */
}
static int n_times_of(int64_t i) { return 1 + (int)(i % 4); }
static int32_t date_of(int p, int64_t i, int t) { return 20200101 + 300 * t + (int32_t)(i % 20) + p; }
static int crs_of(int64_t i) { return i % 3 == 2 ? -1 : (int)(i % 3); }

static tw_status write_dir(const char *dir, tw_err *err) {
    tw_shard_layout lay = {.h = H, .w = W, .n_times = 4, .products = TW_PROD_S2 | TW_PROD_S1 | TW_PROD_S2C,
                           .has_labels = 0, .has_georef = 1};
    static uint16_t s2[4 * TW_S2_BANDS * H * W], s2c[4 * TW_S2C_BANDS * H * W];
    static float s1[4 * TW_S1_BANDS * H * W];
    tw_status st = TW_OK;
    for (int sh = 0; sh < 2 && !st; sh++) {
        char path[4096], name[32];
        snprintf(path, sizeof path, "%s/train-%05d.h5", dir, sh);
        tw_shard_writer *wr;
        if ((st = tw_shard_writer_create(&wr, path, "train", "test", &lay, err))) return st;
        for (int64_t i = sh * N_PER; i < (sh + 1) * N_PER && !st; i++) {
            int nt = n_times_of(i);
            int32_t d[3][4];
            for (int t = 0; t < nt; t++) {
                for (int p = 0; p < 3; p++) d[p][t] = date_of(p, i, t);
                for (int b = 0; b < TW_S2C_BANDS; b++)
                    for (int y = 0; y < H; y++)
                        for (int x = 0; x < W; x++) {
                            size_t px = (size_t)y * W + x;
                            if (b < TW_S2_BANDS) s2[((size_t)t * TW_S2_BANDS + b) * H * W + px] = (uint16_t)value(0, i, t, b, y, x);
                            if (b < TW_S1_BANDS) s1[((size_t)t * TW_S1_BANDS + b) * H * W + px] = (float)value(1, i, t, b, y, x);
                            s2c[((size_t)t * TW_S2C_BANDS + b) * H * W + px] = (uint16_t)value(2, i, t, b, y, x);
                        }
            }
            double tr[6] = {500000.0 + 10 * (double)i, 10, 0, 5300000.0 - (double)i, 0, -10};
            snprintf(name, sizeof name, "%07lld", (long long)i);
            int c = crs_of(i);
            tw_shard_sample s = {.s2 = s2, .s1 = s1, .s2c = s2c, .name = name, .s1_name = name, .n_times = nt,
                                 .s2_date = d[0], .s1_date = d[1], .s2c_date = d[2],
                                 .crs_wkt = c < 0 ? NULL : wkt_of[c], .epsg = c < 0 ? 0 : 32632 + c, .transform = tr};
            st = tw_shard_writer_add(wr, &s, err);
        }
        if (st) tw_shard_writer_abort(wr);
        else st = tw_shard_writer_close(wr, 0, err);
    }
    tw_shard_norm norm;
    int used_all;
    return st ? st : tw_shard_dir_finalize(dir, "train", &norm, &used_all, err);
}

static int read_dir(const char *dir, tw_err *err) {
    char **paths;
    int n_paths, bad = 0;
    if (tw_shard_list(&paths, &n_paths, dir, "train", err)) return -1;
    static uint16_t s2[TW_S2_BANDS * H * W], s2c[TW_S2C_BANDS * H * W];
    static float s1[TW_S1_BANDS * H * W];
    for (int k = 0; k < n_paths && !bad; k++) {
        tw_shard *sh;
        if (tw_shard_open(&sh, paths[k], err)) {
            free(paths);
            return -1;
        }
        const tw_shard_layout *l = tw_shard_layout_of(sh);
        if (tw_shard_version(sh) != 2 || l->n_times != 4 || l->has_labels || !l->has_georef || l->h != H || l->w != W) {
            fprintf(stderr, "%s: layout version %d T %d labels %d georef %d %dx%d\n", paths[k], tw_shard_version(sh),
                    l->n_times, l->has_labels, l->has_georef, l->h, l->w);
            bad = 1;
        }
        for (int64_t r = 0; r < tw_shard_n(sh) && !bad; r++) {
            int64_t i = k * N_PER + r;
            tw_shard_geo g;
            if (tw_shard_read_geo(sh, r, &g, err)) { tw_shard_close(sh); free(paths); return -1; }
            int c = crs_of(i);
            if (g.n_times != n_times_of(i) || strcmp(g.crs_wkt, c < 0 ? "" : wkt_of[c]) || g.epsg != (c < 0 ? 0 : 32632 + c) ||
                g.transform[0] != 500000.0 + 10 * (double)i || g.transform[5] != -10) {
                fprintf(stderr, "%s sample %lld: geo n_times %d crs '%s' epsg %d t0 %f\n", paths[k], (long long)r, g.n_times,
                        g.crs_wkt, g.epsg, g.transform[0]);
                bad = 1;
            }
            for (int t = 0; t < TW_SHARD_MAX_TIMES && !bad; t++) {
                int32_t want[3] = {t < g.n_times ? date_of(0, i, t) : 0, t < g.n_times ? date_of(1, i, t) : 0,
                                   t < g.n_times ? date_of(2, i, t) : 0};
                if (g.s2_date[t] != want[0] || g.s1_date[t] != want[1] || g.s2c_date[t] != want[2]) {
                    fprintf(stderr, "%s sample %lld acquisition %d: dates %d %d %d\n", paths[k], (long long)r, t,
                            g.s2_date[t], g.s1_date[t], g.s2c_date[t]);
                    bad = 1;
                }
            }
            for (int t = 0; t < g.n_times && !bad; t++) {
                if (tw_shard_read_time(sh, r, t, s2, s2c, s1, err)) { tw_shard_close(sh); free(paths); return -1; }
                for (int b = 0; b < TW_S2C_BANDS && !bad; b++)
                    for (int px = 0; px < H * W && !bad; px++) {
                        int y = px / W, x = px % W;
                        if ((b < TW_S2_BANDS && s2[b * H * W + px] != (uint16_t)value(0, i, t, b, y, x)) ||
                            (b < TW_S1_BANDS && s1[b * H * W + px] != (float)value(1, i, t, b, y, x)) ||
                            s2c[b * H * W + px] != (uint16_t)value(2, i, t, b, y, x)) {
                            fprintf(stderr, "%s sample %lld acquisition %d band %d pixel %d differs\n", paths[k],
                                    (long long)r, t, b, px);
                            bad = 1;
                        }
                    }
            }
            if (!bad && tw_shard_read_time(sh, r, g.n_times, s2, NULL, NULL, err) == TW_OK) {
                fprintf(stderr, "%s sample %lld: acquisition %d of %d read without an error\n", paths[k], (long long)r,
                        g.n_times, g.n_times);
                bad = 1;
            }
        }
        uint8_t labels[TW_N_CLASSES];
        tw_err e2 = {0};
        if (!bad && tw_shard_read_labels(sh, labels, TW_N_CLASSES, &e2) != TW_E_MISSING) {
            fprintf(stderr, "%s: labels of an unlabelled shard read without TW_E_MISSING\n", paths[k]);
            bad = 1;
        }
        tw_shard_close(sh);
    }
    free(paths);
    return bad;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "write") && strcmp(argv[1], "read"))) {
        fprintf(stderr, "usage: shard_v2_probe write|read DIR\n");
        return 2;
    }
    tw_err err = {0};
    int rc = !strcmp(argv[1], "write") ? (write_dir(argv[2], &err) ? -1 : 0) : read_dir(argv[2], &err);
    if (rc < 0) fprintf(stderr, "shard_v2_probe: %s\n", err.msg);
    return rc ? 1 : 0;
}
