/* The loader and sampler, llm.c test_dataloader style: shards whose pixels encode the sample id,
 * loaders for ranks 0..R-1 in one process. Checks disjoint and complete global batches, the same
 * global batches for R = 1, 2, 4, determinism across runs and epochs, resume at (epoch, step),
 * nested label fractions, evaluation order, the two-view augmentation hook, band selection. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/augment.h"
#include "data/loader.h"
#include "data/sampler.h"
#include "data/shard.h"
#include "data/shard_dir.h"

#include "check.h"

#define H 6
#define W 5
#define N_SAMPLES 100
static const int shard_sizes[] = {37, 50, 13};

/* Sample id: S1 VV = id, S1 VH = -id, S2 band b = 100 * b + id + pixel, labels = bits of id. */
static tw_status write_shards(const char *dir, tw_err *err) {
    int64_t id = 0;
    for (int s = 0; s < 3; s++) {
        char path[512];
        snprintf(path, sizeof path, "%s/train-%05d.h5", dir, s);
        tw_shard_writer *wr;
        tw_status st = tw_shard_writer_open(&wr, path, "train", "test", H, W, err);
        if (st) return st;
        for (int i = 0; i < shard_sizes[s]; i++, id++) {
            uint16_t s2[TW_S2_BANDS * H * W];
            float s1[TW_S1_BANDS * H * W];
            uint8_t labels[TW_N_CLASSES] = {0};
            for (int p = 0; p < H * W; p++) {
                s1[p] = (float)id;
                s1[H * W + p] = -(float)id;
                for (int b = 0; b < TW_S2_BANDS; b++) s2[b * H * W + p] = (uint16_t)(100 * b + id + p);
            }
            for (int k = 0; k < 7; k++) labels[k] = (id >> k) & 1;
            char name[32];
            snprintf(name, sizeof name, "patch_%03lld", (long long)id);
            tw_shard_sample smp = {.s2 = s2, .s1 = s1, .labels = labels, .name = name, .s1_name = name, .flags = (uint8_t)(id % 3)};
            if ((st = tw_shard_writer_add(wr, &smp, err))) return st;
        }
        if ((st = tw_shard_writer_close(wr, 0, err))) return st;
    }
    tw_shard_norm norm;
    int used_all;
    return tw_shard_dir_finalize(dir, "train", &norm, &used_all, err);
}

/* The id a normalised VV pixel encodes. */
static int64_t decode_id(const tw_loader *ld, float vv) {
    const tw_shard_norm *n = tw_loader_norm(ld);
    return llround(vv * n->std[TW_S2_BANDS] + n->mean[TW_S2_BANDS]);
}

/* Runs n_steps global batches over R ranks; writes the global batches' ids to out, in order. */
static int run_ranks(int64_t *out, const tw_loader_opts *base, int R, int n_steps) {
    tw_loader *ld[4] = {0};
    tw_err err = {0};
    int ok = 1;
    for (int r = 0; r < R; r++) {
        tw_loader_opts o = *base;
        o.rank = r;
        o.world = R;
        if (tw_loader_init(&ld[r], &o, &err)) {
            fprintf(stderr, "FAIL loader init rank %d/%d: %s\n", r, R, err.msg);
            check_n_fail++;
            ok = 0;
            goto done;
        }
    }
    for (int s = 0; s < n_steps; s++) {
        int64_t k = 0;
        for (int r = 0; r < R; r++) {
            const tw_batch *b;
            if (tw_loader_next(ld[r], &b, &err)) {
                fprintf(stderr, "FAIL next rank %d: %s\n", r, err.msg);
                check_n_fail++;
                ok = 0;
                goto done;
            }
            CHECK(b->n == base->global_batch / R || !base->drop_last, "rank %d has %d samples", r, b->n);
            for (int i = 0; i < b->n; i++) {
                int64_t id = decode_id(ld[r], b->s1[0][(size_t)i * b->c_s1 * H * W]);
                CHECK(id == b->index[i], "pixel id %lld vs index %lld", (long long)id, (long long)b->index[i]);
                float vh = b->s1[0][(size_t)i * b->c_s1 * H * W + H * W];
                const tw_shard_norm *nm = tw_loader_norm(ld[r]);
                CHECK(llround(vh * nm->std[TW_S2_BANDS + 1] + nm->mean[TW_S2_BANDS + 1]) == -id, "VH of %lld", (long long)id);
                for (int k2 = 0; k2 < 7; k2++)
                    CHECK(b->labels[i * TW_N_CLASSES + k2] == (float)((id >> k2) & 1), "label %d of %lld", k2, (long long)id);
                CHECK(b->flags[i] == id % 3, "flags of %lld", (long long)id);
                out[(int64_t)s * base->global_batch + k++] = id;
            }
        }
        for (; k < base->global_batch; k++) out[(int64_t)s * base->global_batch + k] = -1;
    }
done:
    for (int r = 0; r < R; r++) tw_loader_free(ld[r]);
    return ok;
}

/* The options most cases start from: the train split of dir, global batch `batch`, shuffled or
 * in order. */
static tw_loader_opts train_opts(const char *dir, int batch, int shuffle) {
    tw_loader_opts o;
    tw_loader_opts_default(&o);
    o.dir = dir;
    o.split = "train";
    o.global_batch = batch;
    o.shuffle = shuffle;
    return o;
}

static void test_ranks_and_epochs(const char *dir) {
    tw_loader_opts o = train_opts(dir, 8, 1);
    o.seed = 1234;
    const int spe = N_SAMPLES / 8, n_steps = 3 * spe;   /* three epochs, drop-last */
    int64_t ref[3 * (N_SAMPLES / 8) * 8], got[3 * (N_SAMPLES / 8) * 8];
    if (!run_ranks(ref, &o, 1, n_steps)) return;
    for (int e = 0; e < 3; e++) {
        int seen[N_SAMPLES] = {0}, n_seen = 0;
        for (int i = 0; i < spe * 8; i++) {
            int64_t id = ref[e * spe * 8 + i];
            CHECK(id >= 0 && id < N_SAMPLES, "id %lld", (long long)id);
            if (id >= 0 && id < N_SAMPLES) {
                CHECK(!seen[id], "epoch %d: sample %lld twice", e, (long long)id);
                n_seen += !seen[id];
                seen[id] = 1;
            }
        }
        CHECK(n_seen == spe * 8, "epoch %d saw %d distinct samples, want %d", e, n_seen, spe * 8);
    }
    CHECK(memcmp(ref, ref + spe * 8, spe * 8 * sizeof *ref) != 0, "epochs 0 and 1 have the same order");
    for (int R = 2; R <= 4; R *= 2) {
        if (!run_ranks(got, &o, R, n_steps)) return;
        CHECK(!memcmp(ref, got, sizeof ref), "R=%d: global batches differ from R=1", R);
    }
    /* The same options give the same stream; another seed does not. */
    run_ranks(got, &o, 1, n_steps);
    CHECK(!memcmp(ref, got, sizeof ref), "a second run differs");
    o.seed = 99;
    run_ranks(got, &o, 1, n_steps);
    CHECK(memcmp(ref, got, sizeof ref), "seed 99 gives the same order as seed 1234");
    o.seed = 1234;
    /* Resume: start at (epoch 1, step 3) on 2 ranks; it must continue the reference stream. */
    o.start_epoch = 1;
    o.start_step = 3;
    int start = 1 * spe + 3;
    run_ranks(got, &o, 2, n_steps - start);
    CHECK(!memcmp(ref + start * 8, got, (size_t)(n_steps - start) * 8 * sizeof *ref), "resumed stream differs");
    /* tw_loader_state names the next batch. */
    tw_loader *ld;
    tw_err err = {0};
    if (tw_loader_init(&ld, &o, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const tw_batch *b = NULL;
    for (int s = 0; s < spe; s++) tw_loader_next(ld, &b, &err);   /* wraps into epoch 2 */
    int64_t e, st;
    tw_loader_state(ld, &e, &st);
    CHECK(b && b->epoch == 2 && b->step == 2, "last batch at (%lld, %lld)", b ? (long long)b->epoch : -1LL, b ? (long long)b->step : -1LL);
    CHECK(e == 2 && st == 3, "state (%lld, %lld), want (2, 3)", (long long)e, (long long)st);
    tw_loader_free(ld);
}

static void test_eval_order(const char *dir) {
    tw_loader_opts o = train_opts(dir, 8, 0);
    o.drop_last = 0;
    int64_t got[13 * 8];
    if (!run_ranks(got, &o, 2, 13)) return;   /* 12 full batches and one of 4 */
    int64_t next = 0;
    for (int i = 0; i < 13 * 8; i++)
        if (got[i] >= 0) {
            CHECK(got[i] == next, "eval position %d: %lld, want %lld", i, (long long)got[i], (long long)next);
            next++;
        }
    CHECK(next == N_SAMPLES, "evaluation saw %lld samples, want %d", (long long)next, N_SAMPLES);
}

static void test_subsets(const char *dir) {
    const double fr[] = {0.01, 0.1, 0.5, 1.0};
    int64_t *sub[4];
    int64_t n_sub[4];
    tw_err err = {0};
    for (int k = 0; k < 4; k++) {
        tw_status st = tw_sampler_subset(&sub[k], &n_sub[k], 1000, fr[k], 7, &err);
        CHECK(!st, "%s", err.msg);
        if (st) return;
        CHECK(n_sub[k] == (int64_t)llround(fr[k] * 1000), "fraction %g has %lld", fr[k], (long long)n_sub[k]);
    }
    for (int k = 0; k + 1 < 4; k++) {   /* nested: every item of the smaller subset is in the larger one */
        int64_t j = 0;
        for (int64_t i = 0; i < n_sub[k]; i++) {
            while (j < n_sub[k + 1] && sub[k + 1][j] < sub[k][i]) j++;
            CHECK(j < n_sub[k + 1] && sub[k + 1][j] == sub[k][i], "fraction %g not inside %g", fr[k], fr[k + 1]);
        }
    }
    int64_t *other;
    int64_t n_other;
    tw_sampler_subset(&other, &n_other, 1000, 0.1, 8, &err);
    CHECK(memcmp(other, sub[1], (size_t)n_other * sizeof *other), "subset seed 8 equals seed 7");
    free(other);
    CHECK(tw_sampler_subset(&other, &n_other, 1000, 0.0, 7, &err) == TW_E_RANGE, "fraction 0 accepted");
    /* The loader with fraction 0.1 yields exactly the subset's samples (the one that keeps every
     * class, data/sampler.h), each once per epoch. */
    tw_loader_opts o = train_opts(dir, 2, 1);
    o.label_fraction = 0.1;
    o.subset_seed = 7;
    int64_t want_n, *want;
    uint8_t labels[N_SAMPLES * TW_N_CLASSES] = {0};   /* what write_shards stored: bits of the id */
    for (int i = 0; i < N_SAMPLES; i++)
        for (int k = 0; k < 7; k++) labels[i * TW_N_CLASSES + k] = (i >> k) & 1;
    tw_sampler_subset_labeled(&want, &want_n, N_SAMPLES, labels, TW_N_CLASSES, 0.1, 7, &err);
    int64_t got[10];
    if (run_ranks(got, &o, 2, 5)) {
        int hit = 0;
        for (int i = 0; i < 10; i++)
            for (int j = 0; j < want_n; j++) hit += got[i] == want[j];
        CHECK(want_n == 10 && hit == 10, "fraction 0.1 loader: %d of 10 samples in the subset", hit);
    }
    free(want);
    for (int k = 0; k < 4; k++) free(sub[k]);
}

/* A hook that makes view v = in + 1000 * (v + 1), cropped to the top-left out->h x out->w. */
static tw_status test_hook(void *user, tw_view *out, const tw_view *in, uint64_t seed, int64_t epoch, int64_t sample,
                           int view, tw_err *err) {
    (void)seed;
    (void)epoch;
    int *n_calls = user;
    (*n_calls)++;
    if (sample < 0 || sample >= N_SAMPLES) return tw_err_set(err, TW_E_RANGE, "hook got sample %lld", (long long)sample);
    for (int c = 0; c < out->c_s1 + out->c_s2; c++) {
        const float *src = c < in->c_s1 ? in->s1 + c * in->h * in->w : in->s2 + (c - in->c_s1) * in->h * in->w;
        float *dst = c < out->c_s1 ? out->s1 + c * out->h * out->w : out->s2 + (c - out->c_s1) * out->h * out->w;
        for (int y = 0; y < out->h; y++)
            for (int x = 0; x < out->w; x++) dst[y * out->w + x] = src[y * in->w + x] + 1000.0f * (view + 1);
    }
    return TW_OK;
}

static void test_views_and_bands(const char *dir) {
    int n_calls = 0;
    tw_loader_opts o = train_opts(dir, 4, 1);
    o.n_views = 2;
    o.augment = test_hook;
    o.augment_user = &n_calls;
    o.out_h = 4;
    o.out_w = 3;
    o.prefetch = 1;
    tw_err err = {0};
    CHECK(tw_loader_bands_parse(&o, "rgb", &err) == TW_OK, "%s", err.msg);
    CHECK(tw_loader_bands_parse(&o, "B04,B99", &err) == TW_E_UNKNOWN, "B99 accepted");
    CHECK(strstr(err.msg, "B99") != NULL, "message: %s", err.msg);
    tw_loader_bands_parse(&o, "rgb", &err);
    tw_loader *ld;
    if (tw_loader_init(&ld, &o, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const tw_batch *b;
    CHECK(!tw_loader_next(ld, &b, &err), "%s", err.msg);
    const tw_shard_norm *nm = tw_loader_norm(ld);
    CHECK(b->n_views == 2 && b->c_s1 == 2 && b->c_s2 == 3 && b->h == 4 && b->w == 3, "batch shape");
    for (int i = 0; i < b->n; i++) {
        int64_t id = b->index[i];
        for (int v = 0; v < 2; v++) {
            float vv = b->s1[v][i * 2 * 12] - 1000.0f * (v + 1);
            CHECK(llround(vv * nm->std[TW_S2_BANDS] + nm->mean[TW_S2_BANDS]) == id, "view %d VV of %lld", v, (long long)id);
            /* RGB = B04, B03, B02; pixel (y=2, x=1) of the crop is pixel 2 * W + 1 of the shard. */
            const int bands[3] = {3, 2, 1};
            for (int c = 0; c < 3; c++) {
                float y = b->s2[v][(i * 3 + c) * 12 + 2 * 3 + 1] - 1000.0f * (v + 1);
                double x = y * nm->std[bands[c]] + nm->mean[bands[c]];
                CHECK(fabs(x - (100 * bands[c] + id + 2 * W + 1)) < 0.05, "view %d band %d of %lld: %g", v, c, (long long)id, x);
            }
        }
    }
    tw_loader_free(ld);
    CHECK(n_calls >= 8, "hook called %d times", n_calls);
    /* A crop without a hook is a usage error; so is a batch that does not split over ranks. */
    o.augment = NULL;
    CHECK(tw_loader_init(&ld, &o, &err) == TW_E_USAGE, "crop without hook accepted");
    o.out_h = o.out_w = 0;
    o.global_batch = 6;
    o.world = 4;
    CHECK(tw_loader_init(&ld, &o, &err) == TW_E_RANGE, "batch 6 over 4 ranks accepted");
    o.world = 1;
    o.split = "nosuch";
    CHECK(tw_loader_init(&ld, &o, &err) == TW_E_MISSING && strstr(err.msg, "nosuch"), "missing split: %s", err.msg);
}

/* A hook that fails on sample 42: the error must come out of tw_loader_next, and stay. */
static tw_status failing_hook(void *user, tw_view *out, const tw_view *in, uint64_t seed, int64_t epoch, int64_t sample,
                              int view, tw_err *err) {
    (void)user;
    (void)seed;
    (void)epoch;
    (void)view;
    if (sample == 42) return tw_err_set(err, TW_E_RANGE, "sample forty-two refused");
    memcpy(out->s1, in->s1, (size_t)in->c_s1 * in->h * in->w * sizeof(float));
    memcpy(out->s2, in->s2, (size_t)in->c_s2 * in->h * in->w * sizeof(float));
    return TW_OK;
}

static void test_hook_error(const char *dir) {
    tw_loader_opts o = train_opts(dir, 10, 0);
    o.augment = failing_hook;
    tw_loader *ld;
    tw_err err = {0};
    if (tw_loader_init(&ld, &o, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const tw_batch *b;
    tw_status st = TW_OK;
    int n_ok = 0;
    for (int s = 0; s < 10 && !(st = tw_loader_next(ld, &b, &err)); s++) n_ok++;
    CHECK(n_ok == 4 && st == TW_E_RANGE, "%d batches before the error (want 4), status %d", n_ok, (int)st);
    CHECK(strstr(err.msg, "forty-two") && strstr(err.msg, "sample 42"), "message: %s", err.msg);
    tw_err again = {0};
    CHECK(tw_loader_next(ld, &b, &again) == TW_E_RANGE && b == NULL, "the error did not stay");
    tw_loader_free(ld);
}

/* A hook that breaks an assertion of data/augment.c (view 2 does not exist) on sample 13, or
 * (user a path) truncates that shard file while the loader reads it, on sample 0. */
static tw_status faulty_hook(void *user, tw_view *out, const tw_view *in, uint64_t seed, int64_t epoch, int64_t sample,
                             int view, tw_err *err) {
    const char *cut = user;
    (void)epoch;
    (void)err;
    float scratch[3 * 8 * 8];
    if (cut && sample == 0 && view == 0 && truncate(cut, 4096) != 0) perror(cut);
    if (!cut && sample == 13)
        tw_augment_view(out->s2, scratch, in->s2, in->c_s2, in->h, in->w, 8, &(tw_aug_params){0}, seed, 0, 0, 2);
    memcpy(out->s1, in->s1, (size_t)in->c_s1 * in->h * in->w * sizeof(float));
    memcpy(out->s2, in->s2, (size_t)in->c_s2 * in->h * in->w * sizeof(float));
    return TW_OK;
}

/* A TW_ASSERT on the loader's thread reaches tw_loader_next as a status with its file:line; the
 * process goes on (it used to abort from that thread). So does a read error. */
static void test_thread_faults(const char *dir) {
    tw_loader_opts o = train_opts(dir, 10, 0);
    o.augment = faulty_hook;
    tw_loader *ld;
    tw_err err = {0};
    const tw_batch *b;
    tw_status st = TW_OK;
    if (tw_loader_init(&ld, &o, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int n_ok = 0;
    for (int s = 0; s < 10 && !(st = tw_loader_next(ld, &b, &err)); s++) n_ok++;
    CHECK(n_ok == 1 && st == TW_E_INTERNAL, "assertion: %d batches before the error (want 1), status %d", n_ok, (int)st);
    CHECK(strstr(err.msg, "augment.c") && strstr(err.msg, "assertion failed") && strstr(err.msg, "loader thread"),
          "assertion message: %s", err.msg);
    CHECK(tw_loader_next(ld, &b, &err) == TW_E_INTERNAL, "the assertion's error did not stay");
    tw_loader_free(ld);

    /* A read error: a shard cut short while the loader reads it. */
    char path[600], cmd[1400];
    snprintf(path, sizeof path, "%s/cut-00000.h5", dir);
    snprintf(cmd, sizeof cmd, "cp '%s/train-00000.h5' '%s'", dir, path);
    CHECK(system(cmd) == 0, "%s", cmd);
    o.split = "cut";
    o.augment_user = path;
    if (tw_loader_init(&ld, &o, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    for (int s = 0; s < 10 && !(st = tw_loader_next(ld, &b, &err)); s++) continue;
    CHECK(st == TW_E_IO && strstr(err.msg, "cut-00000.h5") && strstr(err.msg, "shrank"), "read error: status %d, %s",
          (int)st, err.msg);
    tw_loader_free(ld);
    unlink(path);
}

int main(void) {
    char dir[] = "/tmp/tw_test_loader_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    tw_err err = {0};
    if (write_shards(dir, &err)) {
        fprintf(stderr, "FAIL writing shards: %s\n", err.msg);
        return 1;
    }
    test_ranks_and_epochs(dir);
    test_eval_order(dir);
    test_subsets(dir);
    test_views_and_bands(dir);
    test_hook_error(dir);
    test_thread_faults(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    if (check_n_fail) {
        fprintf(stderr, "test_loader: %d checks failed\n", check_n_fail);
        return 1;
    }
    printf("test_loader: ok (R = 1, 2, 4; 3 epochs; resume; fractions; eval order; 2 views; bands; hook errors)\n");
    return 0;
}
