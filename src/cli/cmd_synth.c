/* `twinfuse synth`: writes a deterministic synthetic BigEarthNet-like shard directory
 * (docs/synth.md). Argument parsing only; the generator is src/data/synth*.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "data/synth.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: twinfuse synth --out DIR [--seed N] [--size S] [--train N] [--val N] [--test N]\n"
            "                      [--clouds N] [--shard-size N] [--threads N]\n"
            "  defaults: --seed 0 --size 120 --train 1000 --val 200 --test 200 --clouds 100\n"
            "            --shard-size 256 --threads 1\n"
            "       twinfuse synth --out DIR --scene SIZE [--seed N]\n"
            "  a SIZE x SIZE georeferenced scene instead: DIR/scene-s2.tif (12 bands) and DIR/scene-s1.tif\n"
            "  (VV, VH dB), 10 m in UTM 33N, for `twinfuse predict` (docs/predict.md)\n");
}

/* Parses a whole non-negative integer; 0 on success. */
static int parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) return -1;
    *out = v;
    return 0;
}

int tw_cmd_synth(int argc, char **argv) {
    int64_t scene = 0;
    tw_synth_opts o = {.seed = 0, .h = 120, .w = 120, .n = {1000, 200, 200, 100}, .shard_size = 256, .threads = 1, .progress = 1};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "twinfuse synth: '%s' needs a value\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--out")) {
            o.dir = v;
            continue;
        }
        int64_t x = 0;
        if (parse_i64(v, &x)) {
            fprintf(stderr, "twinfuse synth: %s '%s' is not a non-negative integer\n", a, v);
            return 2;
        }
        if (!strcmp(a, "--seed")) o.seed = (uint64_t)x;
        else if (!strcmp(a, "--size")) o.h = o.w = (int)(x > 4096 ? 0 : x);
        else if (!strcmp(a, "--train")) o.n[TW_SYNTH_TRAIN] = x;
        else if (!strcmp(a, "--val")) o.n[TW_SYNTH_VAL] = x;
        else if (!strcmp(a, "--test")) o.n[TW_SYNTH_TEST] = x;
        else if (!strcmp(a, "--clouds")) o.n[TW_SYNTH_CLOUDS] = x;
        else if (!strcmp(a, "--shard-size")) o.shard_size = x;
        else if (!strcmp(a, "--threads")) o.threads = (int)(x > 256 ? 0 : x);
        else if (!strcmp(a, "--scene")) scene = x;
        else {
            fprintf(stderr, "twinfuse synth: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.dir) {
        fprintf(stderr, "twinfuse synth: --out DIR is required\n");
        usage(stderr);
        return 2;
    }
    tw_err err = {0};
    if (scene) {
        char s2[4200], s1[4200];
        snprintf(s2, sizeof s2, "%s/scene-s2.tif", o.dir);
        snprintf(s1, sizeof s1, "%s/scene-s1.tif", o.dir);
        if (mkdir(o.dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "twinfuse synth: %s: cannot create: %s\n", o.dir, strerror(errno));
            return 1;
        }
        if (tw_synth_scene_write(s2, s1, (int)(scene > 200000 ? 0 : scene), o.seed, &err) != TW_OK) {
            fprintf(stderr, "twinfuse synth: %s\n", err.msg);
            return 1;
        }
        printf("# synth: scene %lldx%lld seed=%llu: %s %s\n", (long long)scene, (long long)scene,
               (unsigned long long)o.seed, s2, s1);
        return 0;
    }
    if (tw_synth_write(&o, &err) != TW_OK) {
        fprintf(stderr, "twinfuse synth: %s\n", err.msg);
        return 1;
    }
    printf("# synth: %s  seed=%llu  %dx%d  train=%lld val=%lld test=%lld clouds=%lld\n", o.dir,
           (unsigned long long)o.seed, o.h, o.w, (long long)o.n[0], (long long)o.n[1], (long long)o.n[2], (long long)o.n[3]);
    return 0;
}
