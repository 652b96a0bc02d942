/* data.subset: label-fraction subsets that keep every class (tw_sampler_subset_labeled) and the
 * loader's 43-class labels. Checks nesting over 1, 5, 10, 20, 50, 100 %, that every class with a
 * positive in the split has one in every subset (a class with a single positive included), the
 * size bounds, that the loader trains on exactly that subset for world 1, 2 and 4, that batches
 * carry [n, 43] labels from labels43, and the errors (shards without labels43, a bad class count). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/loader.h"
#include "data/sampler.h"
#include "data/shard.h"
#include "data/shard_dir.h"

#include "check.h"

#define H 4
#define W 4

static uint64_t next(uint64_t *x) {   /* splitmix64 */
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* labels [n, k]: class j positive with probability about (j + 1) / 64; class k-1 never, class
 * k-2 only at item rare, class k-3 at three items. */
static void make_labels(uint8_t *y, int64_t n, int k, int64_t rare, uint64_t seed) {
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < k; j++) y[i * k + j] = (int)(next(&seed) % 64) <= j / 2;
    for (int64_t i = 0; i < n; i++) y[i * k + k - 1] = 0, y[i * k + k - 2] = i == rare, y[i * k + k - 3] = i % (n / 3 + 1) == 5;
}

static int contains(const int64_t *sorted, int64_t n, int64_t x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (sorted[mid] < x) lo = mid + 1; else hi = mid;
    }
    return lo < n && sorted[lo] == x;
}

static void test_sampler(int64_t n, int k) {
    const double fr[] = {0.01, 0.05, 0.10, 0.20, 0.50, 1.0};
    uint8_t *y = malloc((size_t)n * k);
    int64_t *sub[6], n_sub[6];
    tw_err err = {0};
    make_labels(y, n, k, n / 2 + 3, 11);
    for (int f = 0; f < 6; f++) {
        CHECK(!tw_sampler_subset_labeled(&sub[f], &n_sub[f], n, y, k, fr[f], 7, &err), "%s", err.msg);
        int64_t base_n, *base;
        CHECK(!tw_sampler_subset(&base, &base_n, n, fr[f], 7, &err), "%s", err.msg);
        int64_t m = llround(fr[f] * (double)n) < 1 ? 1 : llround(fr[f] * (double)n);   /* at least one item */
        CHECK(base_n == m && n_sub[f] >= m && n_sub[f] <= m + k, "fraction %g: %lld items (base %lld, k %d)", fr[f],
              (long long)n_sub[f], (long long)m, k);
        for (int64_t i = 0; i < base_n; i++) CHECK(contains(sub[f], n_sub[f], base[i]), "base item %lld left out", (long long)base[i]);
        for (int64_t i = 1; i < n_sub[f]; i++) CHECK(sub[f][i - 1] < sub[f][i], "not increasing at %lld", (long long)i);
        for (int j = 0; j < k; j++) {
            int in_split = 0, in_sub = 0;
            for (int64_t i = 0; i < n; i++) in_split |= y[i * k + j];
            for (int64_t i = 0; i < n_sub[f]; i++) in_sub |= y[sub[f][i] * k + j];
            CHECK(in_sub == in_split, "fraction %g, class %d: %d positives in the split, subset has %s", fr[f], j,
                  in_split, in_sub ? "some" : "none");
        }
        /* Every added item is needed: it is positive for a class the base lacks. */
        for (int64_t i = 0; i < n_sub[f]; i++) {
            if (contains(base, base_n, sub[f][i])) continue;
            int needed = 0;
            for (int j = 0; j < k; j++) {
                int in_base = 0;
                for (int64_t b = 0; b < base_n; b++) in_base |= y[base[b] * k + j];
                needed |= y[sub[f][i] * k + j] && !in_base;
            }
            CHECK(needed, "fraction %g: item %lld added for no class", fr[f], (long long)sub[f][i]);
        }
        free(base);
    }
    CHECK(n_sub[0] > llround(fr[0] * (double)n), "n %lld: 1%% subset added no class (the test lost its rare class)", (long long)n);
    CHECK(n_sub[5] == n, "fraction 1 has %lld of %lld", (long long)n_sub[5], (long long)n);
    for (int f = 0; f + 1 < 6; f++)
        for (int64_t i = 0; i < n_sub[f]; i++)
            CHECK(contains(sub[f + 1], n_sub[f + 1], sub[f][i]), "n %lld k %d: %g not inside %g (item %lld)",
                  (long long)n, k, fr[f], fr[f + 1], (long long)sub[f][i]);
    int64_t *plain, n_plain, *nolab, n_nolab;
    tw_sampler_subset(&plain, &n_plain, n, 0.1, 7, &err);
    tw_sampler_subset_labeled(&nolab, &n_nolab, n, NULL, 0, 0.1, 7, &err);
    CHECK(n_plain == n_nolab && !memcmp(plain, nolab, (size_t)n_plain * sizeof *plain), "labels NULL differs");
    free(nolab);
    CHECK(tw_sampler_subset_labeled(&nolab, &n_nolab, n, y, k, 1.5, 7, &err) == TW_E_RANGE, "fraction 1.5 accepted");
    free(plain);
    for (int f = 0; f < 6; f++) free(sub[f]);
    free(y);
}

#define N_TRAIN 60
static uint8_t y19[N_TRAIN][TW_N_CLASSES], y43[N_TRAIN][TW_N_CLASSES43];

/* train: two shards (37 + 23) with 19- and 43-class labels, class 18 only in sample 41 and
 * 43-class 42 only in sample 13; val: one shard without 43-class labels. */
static tw_status write_shards(const char *dir, tw_err *err) {
    uint64_t seed = 3;
    for (int i = 0; i < N_TRAIN; i++) {
        for (int j = 0; j < TW_N_CLASSES; j++) y19[i][j] = j < 18 && next(&seed) % 4 == 0;
        for (int j = 0; j < TW_N_CLASSES43; j++) y43[i][j] = j < 42 && next(&seed) % 5 == 0;
    }
    y19[41][18] = 1;
    y43[13][42] = 1;
    const char *split[3] = {"train", "train", "val"};
    const int first[3] = {0, 37, 0}, count[3] = {37, 23, 9};
    for (int s = 0; s < 3; s++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s-%05d.h5", dir, split[s], s == 1);
        tw_shard_writer *wr;
        tw_status st = tw_shard_writer_open(&wr, path, split[s], "test", H, W, err);
        if (st) return st;
        for (int i = first[s]; i < first[s] + count[s]; i++) {
            uint16_t s2[TW_S2_BANDS * H * W];
            float s1[TW_S1_BANDS * H * W];
            for (int p = 0; p < TW_S2_BANDS * H * W; p++) s2[p] = (uint16_t)(i + p);
            for (int p = 0; p < TW_S1_BANDS * H * W; p++) s1[p] = (float)(i - p);
            char name[32];
            snprintf(name, sizeof name, "patch_%03d", i);
            tw_shard_sample smp = {.s2 = s2, .s1 = s1, .labels = y19[i], .labels43 = s < 2 ? y43[i] : NULL,
                                   .name = name, .s1_name = name};
            if ((st = tw_shard_writer_add(wr, &smp, err))) return st;
        }
        if ((st = tw_shard_writer_close(wr, 0, err))) return st;
    }
    tw_shard_norm norm;
    int used_all;
    return tw_shard_dir_finalize(dir, "train", &norm, &used_all, err);
}

/* One epoch of the loader over `world` ranks: marks seen[index], checks the labels. */
static void run_epoch(const char *dir, int world, int n_classes, double fraction, int *seen) {
    tw_loader *ld[4] = {0};
    tw_err err = {0};
    for (int r = 0; r < world; r++) {
        tw_loader_opts o;
        tw_loader_opts_default(&o);
        o.dir = dir;
        o.split = "train";
        o.global_batch = 4;
        o.drop_last = 0;
        o.rank = r;
        o.world = world;
        o.label_fraction = fraction;
        o.subset_seed = 5;
        o.n_classes = n_classes;
        if (tw_loader_init(&ld[r], &o, &err)) {
            CHECK(0, "loader world %d rank %d: %s", world, r, err.msg);
            goto done;
        }
    }
    for (int64_t s = 0; s < tw_loader_steps_per_epoch(ld[0]); s++)
        for (int r = 0; r < world; r++) {
            const tw_batch *b;
            if (tw_loader_next(ld[r], &b, &err)) {
                CHECK(0, "next: %s", err.msg);
                goto done;
            }
            CHECK(b->n_classes == n_classes, "batch has %d classes", b->n_classes);
            for (int i = 0; i < b->n; i++) {
                int64_t id = b->index[i];
                seen[id]++;
                for (int j = 0; j < n_classes; j++) {
                    int want = n_classes == TW_N_CLASSES43 ? y43[id][j] : y19[id][j];
                    CHECK(b->labels[(size_t)i * n_classes + j] == (float)want, "sample %lld class %d", (long long)id, j);
                }
            }
        }
done:
    for (int r = 0; r < world; r++) tw_loader_free(ld[r]);
}

static void test_loader(const char *dir) {
    for (int c = 0; c < 2; c++) {
        int k = c ? TW_N_CLASSES43 : TW_N_CLASSES;
        uint8_t *y = c ? &y43[0][0] : &y19[0][0];
        int64_t *want, n_want;
        tw_err err = {0};
        CHECK(!tw_sampler_subset_labeled(&want, &n_want, N_TRAIN, y, k, 0.05, 5, &err), "%s", err.msg);
        CHECK(contains(want, n_want, c ? 13 : 41), "the rare class's only sample is not in the 5%% subset");
        for (int world = 1; world <= 4; world *= 2) {
            int seen[N_TRAIN] = {0};
            run_epoch(dir, world, k, 0.05, seen);
            for (int i = 0; i < N_TRAIN; i++)
                CHECK(seen[i] == contains(want, n_want, i), "%d classes, world %d: sample %d seen %d times", k, world,
                      i, seen[i]);
        }
        int all[N_TRAIN] = {0};
        run_epoch(dir, 2, k, 1.0, all);
        for (int i = 0; i < N_TRAIN; i++) CHECK(all[i] == 1, "fraction 1: sample %d seen %d times", i, all[i]);
        free(want);
    }
    tw_loader *ld = NULL;
    tw_err err = {0};
    tw_loader_opts o;
    tw_loader_opts_default(&o);
    o.dir = dir;
    o.split = "val";
    o.global_batch = 3;
    o.n_classes = TW_N_CLASSES43;
    CHECK(tw_loader_init(&ld, &o, &err) == TW_E_MISSING && strstr(err.msg, "val-00000.h5"),
          "43 classes from shards without them: %s", err.msg);
    o.n_classes = 7;
    CHECK(tw_loader_init(&ld, &o, &err) == TW_E_RANGE, "7 classes accepted: %s", err.msg);
    o.n_classes = TW_N_CLASSES;
    CHECK(tw_loader_init(&ld, &o, &err) == TW_OK, "19 classes from val: %s", err.msg);
    tw_loader_free(ld);
}

int main(void) {
    test_sampler(5000, TW_N_CLASSES);
    test_sampler(777, TW_N_CLASSES43);
    test_sampler(40, TW_N_CLASSES);
    char dir[] = "/tmp/tw_test_subset_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    tw_err err = {0};
    if (write_shards(dir, &err)) {
        fprintf(stderr, "FAIL writing shards: %s\n", err.msg);
        return 1;
    }
    test_loader(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    if (check_n_fail) {
        fprintf(stderr, "test_subset: %d checks failed\n", check_n_fail);
        return 1;
    }
    printf("test_subset: ok (nested 1..100 %%, every class kept, sizes; loader subset for world 1, 2, 4; 43 classes)\n");
    return 0;
}
