/* Seasonal views (data.views seasonal, loader.h): over shards with a time axis whose pixels encode
 * (location, acquisition), both views of every sample come from its own location, from two
 * different acquisitions when it has several, exactly those tw_loader_seasons draws from (seed,
 * epoch, sample); 1 rank and 2 ranks give every sample the same pair; the pairs change between
 * epochs; shards without a time axis are refused with a message naming the file.
 * Exit 0 pass, 1 fail. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/loader.h"
#include "data/shard_dir.h"

#define HW 4
#define N_LOC 24
#define PER_SHARD 7

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL " __VA_ARGS__); printf("\n"); } } while (0)

static int n_times_of(int i) { return 1 + i % 4; }

/* S2 band b of location i, acquisition t: 1000 + 40 i + 10 t + b everywhere; S1: -20 + i + t / 8. */
static tw_status write_shards(const char *dir, int timed, tw_err *err) {
    tw_shard_layout lay = {.h = HW, .w = HW, .n_times = timed ? 4 : 0, .products = TW_PROD_S2 | TW_PROD_S1};
    static uint16_t s2[4 * TW_S2_BANDS * HW * HW];
    static float s1[4 * TW_S1_BANDS * HW * HW];
    tw_status st = TW_OK;
    for (int k = 0; k * PER_SHARD < N_LOC && !st; k++) {
        char path[4096], name[32];
        snprintf(path, sizeof path, "%s/train-%05d.h5", dir, k);
        tw_shard_writer *wr;
        if ((st = tw_shard_writer_create(&wr, path, "train", "test", &lay, err))) return st;
        for (int i = k * PER_SHARD; i < (k + 1) * PER_SHARD && i < N_LOC && !st; i++) {
            int nt = timed ? n_times_of(i) : 1;
            for (int t = 0; t < nt; t++) {
                for (int b = 0; b < TW_S2_BANDS; b++)
                    for (int p = 0; p < HW * HW; p++) s2[(t * TW_S2_BANDS + b) * HW * HW + p] = (uint16_t)(1000 + 40 * i + 10 * t + b);
                for (int b = 0; b < TW_S1_BANDS; b++)
                    for (int p = 0; p < HW * HW; p++) s1[(t * TW_S1_BANDS + b) * HW * HW + p] = -20.0f + (float)i + (float)t / 8;
            }
            snprintf(name, sizeof name, "%07d", i);
            tw_shard_sample s = {.s2 = s2, .s1 = s1, .name = name, .s1_name = name, .n_times = nt};
            st = tw_shard_writer_add(wr, &s, err);
        }
        if (st) tw_shard_writer_abort(wr);
        else st = tw_shard_writer_close(wr, 0, err);
    }
    tw_shard_norm norm;
    int used_all;
    return st ? st : tw_shard_dir_finalize(dir, "train", &norm, &used_all, err);
}

static tw_status open_loader(tw_loader **ld, const char *dir, int rank, int world, int64_t batch, tw_err *err) {
    tw_loader_opts o;
    tw_loader_opts_default(&o);
    o.dir = dir;
    o.split = "train";
    o.global_batch = batch;
    o.rank = rank;
    o.world = world;
    o.seed = 77;
    o.n_views = 2;
    o.views = TW_VIEWS_SEASONAL;
    o.n_classes = TW_N_CLASSES;
    return tw_loader_init(ld, &o, err);
}

/* The (location, acquisition) a view's S2 planes encode, through the loader's normalisation. */
static void decode(int *loc, int *t, const float *s2, const tw_shard_norm *n) {
    double raw = s2[0] * n->std[0] + n->mean[0];
    long v = lround(raw) - 1000;
    *loc = (int)(v / 40);
    *t = (int)(v % 40 / 10);
}

int main(void) {
    char dir[] = "/tmp/tw_views_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char timed[4200], flat[4200];
    snprintf(timed, sizeof timed, "%s/timed", dir);
    snprintf(flat, sizeof flat, "%s/flat", dir);
    tw_err err = {0};
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "mkdir -p %s %s", timed, flat);
    if (system(cmd) != 0 || write_shards(timed, 1, &err) || write_shards(flat, 0, &err)) {
        printf("FAIL setup: %s\n", err.msg);
        return 1;
    }
    const int64_t B = 8, n_epochs = 3, spe = N_LOC / B;
    int seen[3][N_LOC][2];   /* per epoch: the acquisitions of each sample's views, 1 rank */
    memset(seen, -1, sizeof seen);
    tw_loader *ld;
    if (open_loader(&ld, timed, 0, 1, B, &err)) {
        printf("FAIL loader: %s\n", err.msg);
        return 1;
    }
    tw_shard_norm norm_copy = *tw_loader_norm(ld);   /* outlives this loader */
    const tw_shard_norm *norm = &norm_copy;
    for (int64_t s = 0; s < n_epochs * spe; s++) {
        const tw_batch *b;
        if (tw_loader_next(ld, &b, &err)) { printf("FAIL next: %s\n", err.msg); return 1; }
        size_t plane = (size_t)b->c_s2 * b->h * b->w;
        for (int i = 0; i < b->n; i++) {
            int loc[2], t[2], want[2];
            int64_t idx = b->index[i];
            for (int v = 0; v < 2; v++) decode(&loc[v], &t[v], b->s2[v] + i * plane, norm);
            tw_loader_seasons(want, n_times_of((int)idx), 77, b->epoch, idx);
            CHECK(loc[0] == idx && loc[1] == idx, "sample %lld: views from locations %d and %d", (long long)idx, loc[0], loc[1]);
            CHECK(t[0] == want[0] && t[1] == want[1], "sample %lld epoch %lld: acquisitions %d, %d, drawn %d, %d",
                  (long long)idx, (long long)b->epoch, t[0], t[1], want[0], want[1]);
            CHECK(t[0] < n_times_of((int)idx) && t[1] < n_times_of((int)idx) && (n_times_of((int)idx) == 1 || t[0] != t[1]),
                  "sample %lld: acquisitions %d, %d of %d", (long long)idx, t[0], t[1], n_times_of((int)idx));
            float s1_0 = b->s1[0][(size_t)i * b->c_s1 * b->h * b->w] * (float)norm->std[12] + (float)norm->mean[12];
            CHECK(fabsf(s1_0 - (-20.0f + (float)idx + (float)t[0] / 8)) < 1e-3f, "sample %lld: S1 of view 0 is not "
                  "acquisition %d's", (long long)idx, t[0]);
            seen[b->epoch][idx][0] = t[0];
            seen[b->epoch][idx][1] = t[1];
        }
    }
    tw_loader_free(ld);
    int changed = 0;
    for (int i = 0; i < N_LOC; i++) changed += seen[0][i][0] != seen[1][i][0] || seen[0][i][1] != seen[1][i][1];
    CHECK(changed > 0, "the seasonal pairs are the same in epochs 0 and 1");
    /* 2 ranks: every sample the same pair as on 1 rank. */
    tw_loader *r[2];
    if (open_loader(&r[0], timed, 0, 2, B, &err) || open_loader(&r[1], timed, 1, 2, B, &err)) {
        printf("FAIL 2-rank loader: %s\n", err.msg);
        return 1;
    }
    int n_checked = 0;
    for (int64_t s = 0; s < n_epochs * spe; s++)
        for (int k = 0; k < 2; k++) {
            const tw_batch *b;
            if (tw_loader_next(r[k], &b, &err)) { printf("FAIL next: %s\n", err.msg); return 1; }
            size_t plane = (size_t)b->c_s2 * b->h * b->w;
            for (int i = 0; i < b->n; i++, n_checked++) {
                int loc, t0, t1;
                decode(&loc, &t0, b->s2[0] + i * plane, norm);
                decode(&loc, &t1, b->s2[1] + i * plane, norm);
                CHECK(t0 == seen[b->epoch][b->index[i]][0] && t1 == seen[b->epoch][b->index[i]][1],
                      "rank %d sample %lld: acquisitions %d, %d; 1 rank: %d, %d", k, (long long)b->index[i], t0, t1,
                      seen[b->epoch][b->index[i]][0], seen[b->epoch][b->index[i]][1]);
            }
        }
    CHECK(n_checked == n_epochs * N_LOC, "2 ranks read %d samples, want %lld", n_checked, (long long)(n_epochs * N_LOC));
    tw_loader_free(r[0]);
    tw_loader_free(r[1]);
    /* Shards without a time axis. */
    tw_loader *bad = NULL;
    tw_status st = open_loader(&bad, flat, 0, 1, B, &err);
    CHECK(st != TW_OK && strstr(err.msg, "train-00000.h5") && strstr(err.msg, "time axis"), "flat shards: %s",
          st ? err.msg : "accepted");
    if (!st) tw_loader_free(bad);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
    printf(failures ? "test_views: %d failures\n" : "test_views: ok\n", failures);
    return failures ? 1 : 0;
}
