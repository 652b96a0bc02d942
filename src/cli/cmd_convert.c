/* `twinfuse convert`: BigEarthNet v1.0 / v2.0 (reBEN) and SSL4EO-S12 archives, or a user's own
 * subset, into shards (docs/shards.md). Argument parsing and the summary; the work is src/data/convert*.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "data/convert.h"
#include "dist/comm.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: twinfuse convert --layout v1 --s2 DIR --s1 DIR (--splits DIR | --split NAME) [options] --out DIR\n"
            "       twinfuse convert --layout v2 --root DIR --metadata FILE [--split NAME] [options] --out DIR\n"
            "       twinfuse convert --layout ssl4eo --root DIR [--products s1,s2c,s2a] [--size N] [--split NAME]\n"
            "                        [options] --out DIR\n"
            "  v1: --splits DIR holds train.csv, val.csv, test.csv; --clouds FILE and --snow FILE are the\n"
            "      official patches_with_cloud_and_shadow.csv and patches_with_seasonal_snow.csv\n"
            "  v2: FILE is written by: python tools/reben_metadata.py ROOT/metadata.parquet\n"
            "      ROOT/metadata_for_patches_with_snow_cloud_or_shadow.parquet > FILE\n"
            "       twinfuse convert --layout scenes --manifest FILE [--size N] [--stride N] [--max-nodata F]\n"
            "                        [--max-cloud F] [--labels-raster FILE --label-classes FILE\n"
            "                        [--label-min-fraction F]] [--split NAME] [options] --out DIR\n"
            "  ssl4eo: DIR holds s1/, s2c/, s2a/ as published (<product>/<id>/<acquisition>/<band>.tif);\n"
            "      --products: which of them (default all three); --size N: the centre N x N of the\n"
            "      264 px grid (default 264); every location keeps its acquisitions (up to 4) and dates\n"
            "  scenes: FILE is CSV (header row) or JSON lines (.jsonl): name, split, s2 (12-band file or a\n"
            "      path with {band}), B01..B12, s1 (2-band file or {band}), VV, VH, s1_scale (db|linear),\n"
            "      date, mask (non-zero: cloud) or scl; patches of --size (default 120) every --stride\n"
            "      (default --size) on the S2 10 m grid, S1 warped onto it; --max-nodata (default 0) and\n"
            "      --max-cloud (default 0.1) drop patches; labels: raster values -> class names\n"
            "  --split NAME      every patch to split NAME (a subset without split lists; ssl4eo: train)\n"
            "  --keep-snow       keep seasonal-snow patches (flagged) instead of leaving them out\n"
            "  --on-error skip|stop   skip and count bad patches (default) or stop at the first\n"
            "  --shard-size N    patches per shard (default 1000)\n"
            "  --compress none|deflate|lz4|zstd   the images' HDF5 filter (default none: reads fastest;\n"
            "                    lz4, zstd: their HDF5 plugin in HDF5_PLUGIN_PATH; docs/shards.md)\n"
            "  --threads N       reader threads (default 2)\n"
            "  --no-progress     no progress line\n"
            "Reruns keep complete shards: an interrupted conversion resumes with the same options.\n"
            "Under mpirun (or srun) the ranks split the shards; progress and the summary come from rank 0.\n");
}

/* "s1,s2c,s2a" (any subset, any order) into TW_PROD_* bits; -1 on an unknown name. */
static int parse_products(const char *v) {
    int bits = 0;
    char buf[64];
    if (strlen(v) >= sizeof buf) return -1;
    strcpy(buf, v);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "s1")) bits |= TW_PROD_S1;
        else if (!strcmp(t, "s2a")) bits |= TW_PROD_S2;
        else if (!strcmp(t, "s2c")) bits |= TW_PROD_S2C;
        else return -1;
    }
    return bits ? bits : -1;
}

static int parse_frac(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= 1)) return -1;
    *out = v;
    return 0;
}

static int parse_pos(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 1) return -1;
    *out = v;
    return 0;
}

int tw_cmd_convert(int argc, char **argv) {
    tw_convert_opts o = {.shard_size = 1000, .threads = 2, .progress = 1,
                         .products = TW_PROD_S1 | TW_PROD_S2 | TW_PROD_S2C, .max_cloud = 0.1};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--keep-snow")) { o.keep_snow = 1; continue; }
        if (!strcmp(a, "--no-progress")) { o.progress = 0; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "twinfuse convert: '%s' needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        int64_t x;
        if (!strcmp(a, "--layout")) {
            if (!strcmp(v, "v1")) o.layout = TW_LAYOUT_V1;
            else if (!strcmp(v, "v2")) o.layout = TW_LAYOUT_V2;
            else if (!strcmp(v, "ssl4eo")) o.layout = TW_LAYOUT_SSL4EO;
            else if (!strcmp(v, "scenes")) o.layout = TW_LAYOUT_SCENES;
            else { fprintf(stderr, "twinfuse convert: --layout '%s', want v1, v2, ssl4eo or scenes\n", v); return 2; }
        } else if (!strcmp(a, "--s2")) o.s2_root = v;
        else if (!strcmp(a, "--s1")) o.s1_root = v;
        else if (!strcmp(a, "--root")) o.root = v;
        else if (!strcmp(a, "--metadata")) o.metadata = v;
        else if (!strcmp(a, "--splits")) o.splits_dir = v;
        else if (!strcmp(a, "--split")) o.split = v;
        else if (!strcmp(a, "--clouds")) o.cloud_list = v;
        else if (!strcmp(a, "--snow")) o.snow_list = v;
        else if (!strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "--products")) {
            if ((o.products = parse_products(v)) < 0) {
                fprintf(stderr, "twinfuse convert: --products '%s', want a comma list of s1, s2c, s2a\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--size") || !strcmp(a, "--stride")) {
            if (parse_pos(v, &x) || x > 4096) {
                fprintf(stderr, "twinfuse convert: %s '%s', want 1..4096\n", a, v);
                return 2;
            }
            *(!strcmp(a, "--size") ? &o.size : &o.stride) = (int)x;
        } else if (!strcmp(a, "--manifest")) {
            o.manifest = v;
        } else if (!strcmp(a, "--compress")) {
            int c = -1;
            for (int k = 0; tw_compress_names[k]; k++)
                if (!strcmp(v, tw_compress_names[k])) c = k;
            if (c < 0) {
                fprintf(stderr, "twinfuse convert: --compress '%s', want none, deflate, lz4 or zstd\n", v);
                return 2;
            }
            o.compress = (tw_compress)c;
        } else if (!strcmp(a, "--labels-raster")) o.labels_raster = v;
        else if (!strcmp(a, "--label-classes")) o.label_classes = v;
        else if (!strcmp(a, "--max-nodata") || !strcmp(a, "--max-cloud") || !strcmp(a, "--label-min-fraction")) {
            double *dst = !strcmp(a, "--max-nodata") ? &o.max_nodata : !strcmp(a, "--max-cloud") ? &o.max_cloud
                                                                                   : &o.label_min_fraction;
            if (parse_frac(v, dst)) {
                fprintf(stderr, "twinfuse convert: %s '%s', want a fraction in [0, 1]\n", a, v);
                return 2;
            }
        }
        else if (!strcmp(a, "--on-error")) {
            if (!strcmp(v, "skip")) o.stop_on_error = 0;
            else if (!strcmp(v, "stop")) o.stop_on_error = 1;
            else { fprintf(stderr, "twinfuse convert: --on-error '%s', want skip or stop\n", v); return 2; }
        } else if (!strcmp(a, "--shard-size") || !strcmp(a, "--threads")) {
            if (parse_pos(v, &x) || (a[2] == 't' && x > 256)) {
                fprintf(stderr, "twinfuse convert: %s '%s' is not a positive integer%s\n", a, v, a[2] == 't' ? " <= 256" : "");
                return 2;
            }
            if (a[2] == 't') o.threads = (int)x;
            else o.shard_size = x;
        } else {
            fprintf(stderr, "twinfuse convert: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.layout) {
        fprintf(stderr, "twinfuse convert: --layout v1|v2|ssl4eo|scenes is required\n");
        usage(stderr);
        return 2;
    }
    /* Under a launcher the ranks split the shards (tw_convert_opts.ranks); alone, one process. */
    tw_comm *comm = NULL;
    tw_err err = {0};
    tw_comm_kind kind = tw_comm_kind_auto(0);
    if (kind != TW_COMM_SINGLE && tw_comm_create(&comm, kind, NULL, NULL, &err) != TW_OK) {
        fprintf(stderr, "twinfuse convert: %s\n", err.msg);
        return 1;
    }
    tw_reducer red;
    if (comm) {
        red = tw_comm_reducer(comm);
        o.ranks = &red;
        o.rank = tw_comm_rank(comm);
    }
    tw_convert_summary sum;
    tw_status st = tw_convert_run(&sum, &o, &err);
    tw_comm_free(comm);
    if (st != TW_OK) {
        if (o.rank == 0) fprintf(stderr, "twinfuse convert: %s\n", err.msg);
        else if (st != TW_E_USAGE) fprintf(stderr, "twinfuse convert: [rank %d] %s\n", o.rank, err.msg);
        return st == TW_E_USAGE ? 2 : 1;
    }
    if (o.rank != 0) return 0;
    static const char *const names[] = {"", "BigEarthNet v1.0", "BigEarthNet v2.0", "SSL4EO-S12", "scenes"};
    printf("# convert: %s -> %s in %.3f s\n", names[o.layout], o.out, sum.seconds);
    for (int s = 0; s < sum.n_splits; s++)
        printf("#   split %-8s %8lld %s in %lld shards\n", sum.split_names[s], (long long)sum.written[s],
               o.layout == TW_LAYOUT_SSL4EO ? "locations" : "patches",
               (long long)sum.shards[s]);
    if (sum.resumed_shards)
        printf("#   kept %lld complete shards from an earlier run (%lld patches skipped then)\n", (long long)sum.resumed_shards,
               (long long)sum.skipped_resumed);
    for (int k = 0; k < TW_SKIP_N; k++)
        if (sum.skipped[k]) printf("#   skipped %8lld  %s\n", (long long)sum.skipped[k], tw_skip_str((tw_skip)k));
    if (sum.stats_from_all) printf("#   no train split: normalisation statistics over every split\n");
    return 0;
}
