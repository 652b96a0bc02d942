/* The loader over many small shards (index-only scale): 400 shards of 3 samples, 2 x 2 pixels
 * that encode (shard, sample). With max_open 4 an epoch on 1 rank and on each of 2 ranks reads
 * every sample exactly once, each the right one, and never holds more than 4 shards open; the
 * index is per shard (docs/shards.md, "The loader"). Exit 0 pass, 1 fail. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/loader.h"
#include "data/shard_dir.h"

#define N_SHARDS 400
#define PER 3
#define HW 2

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL " __VA_ARGS__); printf("\n"); } } while (0)

static tw_status write_all(const char *dir, tw_err *err) {
    uint16_t s2[TW_S2_BANDS * HW * HW];
    float s1[TW_S1_BANDS * HW * HW];
    uint8_t labels[TW_N_CLASSES] = {0};
    tw_status st = TW_OK;
    for (int k = 0; k < N_SHARDS && !st; k++) {
        char path[4096], name[32];
        snprintf(path, sizeof path, "%s/train-%05d.h5", dir, k);
        tw_shard_writer *wr;
        if ((st = tw_shard_writer_open(&wr, path, "train", "test", HW, HW, err))) return st;
        for (int i = 0; i < PER && !st; i++) {
            int g = k * PER + i;   /* the sample's global index in the split */
            for (int p = 0; p < TW_S2_BANDS * HW * HW; p++) s2[p] = (uint16_t)(g + p % 7);
            for (int p = 0; p < TW_S1_BANDS * HW * HW; p++) s1[p] = (float)(p % 3);
            snprintf(name, sizeof name, "p%d", g);
            tw_shard_sample s = {.s2 = s2, .s1 = s1, .labels = labels, .name = name, .s1_name = name};
            st = tw_shard_writer_add(wr, &s, err);
        }
        if (st) tw_shard_writer_abort(wr);
        else st = tw_shard_writer_close(wr, 0, err);
    }
    tw_shard_norm norm;
    int used_all;
    return st ? st : tw_shard_dir_finalize(dir, "train", &norm, &used_all, err);
}

/* Reads one epoch on `world` ranks; counts each sample in seen[]. */
static void epoch(const char *dir, int world, int *seen) {
    for (int r = 0; r < world; r++) {
        tw_loader_opts o;
        tw_loader_opts_default(&o);
        o.dir = dir;
        o.split = "train";
        o.global_batch = 16;
        o.rank = r;
        o.world = world;
        o.seed = 5;
        o.drop_last = 0;
        o.max_open = 4;
        tw_err err = {0};
        tw_loader *ld;
        if (tw_loader_init(&ld, &o, &err)) {
            printf("FAIL init: %s\n", err.msg);
            failures++;
            return;
        }
        const tw_shard_norm *n = tw_loader_norm(ld);
        for (int64_t s = 0; s < tw_loader_steps_per_epoch(ld); s++) {
            const tw_batch *b;
            if (tw_loader_next(ld, &b, &err)) {
                printf("FAIL next: %s\n", err.msg);
                failures++;
                break;
            }
            for (int i = 0; i < b->n; i++) {
                double raw = b->s2[0][(size_t)i * b->c_s2 * HW * HW] * n->std[0] + n->mean[0];
                CHECK(lround(raw) == b->index[i], "sample %lld decodes as %ld", (long long)b->index[i], lround(raw));
                seen[b->index[i]]++;
            }
        }
        CHECK(tw_loader_most_open(ld) <= 4 && tw_loader_most_open(ld) >= 1, "rank %d of %d: %d shards open at once",
              r, world, tw_loader_most_open(ld));
        tw_loader_free(ld);
    }
}

int main(void) {
    char dir[] = "/tmp/tw_loader_index_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    tw_err err = {0};
    if (write_all(dir, &err)) {
        printf("FAIL setup: %s\n", err.msg);
        return 1;
    }
    for (int world = 1; world <= 2; world++) {
        static int seen[N_SHARDS * PER];
        memset(seen, 0, sizeof seen);
        epoch(dir, world, seen);
        int bad = 0;
        for (int i = 0; i < N_SHARDS * PER; i++) bad += seen[i] != 1;
        CHECK(bad == 0, "%d ranks: %d samples not read exactly once", world, bad);
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
    printf(failures ? "test_loader_index: %d failures\n" : "test_loader_index: ok\n", failures);
    return failures ? 1 : 0;
}
