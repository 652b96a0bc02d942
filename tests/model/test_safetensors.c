/* safetensors: every kind of bad file gives its error (status, file and tensor named, no crash);
 * our writer's files read back and read in torch (every dtype, 0-dim and empty tensors,
 * metadata); torchvision's state_dict loads into the ResNet18 arena (fc.* ignored only when asked)
 * and what we save loads into torchvision with only fc.* missing; a checkpoint with a missing,
 * extra, mis-shaped or wrongly typed tensor is refused, naming it; 400 random corruptions of a
 * valid file are refused or read, never a crash.
 * usage: test_safetensors WORK_DIR REF_DIR PYTHON ST_CHECK_PY; exit 0 pass, 1 fail. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "backend/backend.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/params.h"
#include "model/resnet18.h"

static const char *work_dir;

/* A file made of an 8-byte length (n_len, or the header's own length when n_len < 0), the header
 * text and n_data bytes of data. */
static void craft(const char *path, long long n_len, const char *header, size_t n_data) {
    FILE *f = fopen(path, "wb");
    TW_ASSERT(f);
    unsigned long long len = n_len < 0 ? strlen(header) : (unsigned long long)n_len;
    for (int i = 0; i < 8; i++) fputc((int)((len >> (8 * i)) & 0xff), f);
    fputs(header, f);
    for (size_t i = 0; i < n_data; i++) fputc((int)(i & 0xff), f);
    fclose(f);
}

/* Opening path must fail with code, and the message must name the file and `what`. */
static void expect_open_error(const char *label, const char *path, tw_status code, const char *what) {
    tw_st_file *f = NULL;
    tw_err err = {0};
    tw_status st = tw_st_open(&f, path, &err);
    int ok = st == code && !f && strstr(err.msg, path) && (!what || strstr(err.msg, what));
    printf("%s %-28s -> %s: %s\n", ok ? "  ok  " : "  FAIL", label, tw_status_str(st), err.msg);
    if (!ok) check_n_fail++;
    tw_st_close(f);
}

static void bad_files(void) {
    char p[1024];
#define CASE(label, n_len, header, n_data, code, what)                         \
    do {                                                                   \
        snprintf(p, sizeof p, "%s/bad_%s.safetensors", work_dir, label);   \
        craft(p, n_len, header, n_data);                                   \
        expect_open_error(label, p, code, what);                           \
    } while (0)
    snprintf(p, sizeof p, "%s/bad_short.safetensors", work_dir);
    FILE *f = fopen(p, "wb");
    fputs("abc", f);
    fclose(f);
    expect_open_error("shorter than 8 bytes", p, TW_E_FORMAT, "too short");
    CASE("huge header length", 1LL << 62, "{}", 0, TW_E_FORMAT, "header length");
    CASE("header past the end", 1000, "{}", 16, TW_E_FORMAT, "header length");
    CASE("not JSON", -1, "{\"a\": [1, 2", 0, TW_E_FORMAT, "JSON");
    CASE("JSON array", -1, "[1, 2]", 0, TW_E_FORMAT, "JSON object");
    CASE("unknown dtype", -1, "{\"w\":{\"dtype\":\"X9\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         TW_E_DTYPE, "'w'");
    CASE("unsupported F64", -1, "{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
         TW_E_DTYPE, "F64");
    CASE("bytes != shape", -1, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
         TW_E_SHAPE, "'w'");
    CASE("negative dim", -1, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
         TW_E_SHAPE, "'w'");
    CASE("shape overflow", -1,
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", 4,
         TW_E_SHAPE, "'w'");
    CASE("offsets past data", -1, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         4, TW_E_RANGE, "'w'");
    CASE("truncated data", -1, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
         9, TW_E_RANGE, "truncated");
    CASE("begin > end", -1, "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
         TW_E_FORMAT, "'w'");
    CASE("overlapping", -1,
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, TW_E_FORMAT, "overlaps");
    CASE("gap", -1,
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, TW_E_FORMAT, "gap");
    CASE("trailing bytes", -1, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
         TW_E_FORMAT, "cover");
    CASE("missing data_offsets", -1, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, TW_E_FORMAT, "'w'");
    CASE("extra key", -1,
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, TW_E_FORMAT, "'w'");
    CASE("duplicate name", -1,
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, TW_E_FORMAT, "JSON");
    CASE("metadata not strings", -1, "{\"__metadata__\":{\"step\":1}}", 0, TW_E_FORMAT, "step");
#undef CASE
    snprintf(p, sizeof p, "%s/no_such_file.safetensors", work_dir);
    expect_open_error("missing file", p, TW_E_IO, "No such file");
}

/* Writes every dtype we support, 0-dim and empty tensors and metadata; reads them back; has torch
 * read them. Also: overwriting keeps no temporary file behind. */
static void writer_round_trip(const char *python, const char *script) {
    char path[1024], cmd[4096];
    snprintf(path, sizeof path, "%s/pattern.safetensors", work_dir);
    float f32[24];
    for (int i = 0; i < 24; i++) f32[i] = (float)i * 0.5f - 3.0f;
    uint16_t bf16[6];
    for (int i = 0; i < 6; i++) bf16[i] = tw_f32_to_bf16((float)i - 2.5f);
    int64_t i64 = (int64_t)1 << 40;
    uint8_t u8[5] = {0, 1, 2, 3, 4};
    int64_t s_f32[3] = {2, 3, 4}, s_bf16[1] = {6}, s_u8[2] = {5, 1}, s_empty[2] = {0, 3};
    for (int round = 0; round < 2; round++) {   /* the second write replaces the first */
        tw_st_writer *w = tw_st_writer_init();
        tw_st_writer_add(w, "f32", TW_F32, 3, s_f32, f32);
        tw_st_writer_add(w, "bf16", TW_BF16, 1, s_bf16, bf16);
        tw_st_writer_add(w, "i64", TW_I64, 0, NULL, &i64);
        tw_st_writer_add(w, "u8", TW_U8, 2, s_u8, u8);
        tw_st_writer_add(w, "empty", TW_F32, 2, s_empty, f32);
        tw_st_writer_meta(w, "step", round ? "42" : "41");
        tw_st_writer_meta(w, "config", "{\"a\": [1, 2]}\n\"quoted\"");
        tw_err err = {0};
        tw_status st = tw_st_writer_save(w, path, &err);
        CHECK(st == TW_OK, "write %s: %s", path, err.msg);
        tw_st_writer_free(w);
    }
    DIR *d = opendir(work_dir);
    struct dirent *e;
    int n_tmp = 0;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, "pattern.safetensors.tmp")) n_tmp++;
    if (d) closedir(d);
    CHECK(n_tmp == 0, "%d temporary files left next to %s", n_tmp, path);

    tw_st_file *f = NULL;
    tw_err err = {0};
    CHECK(tw_st_open(&f, path, &err) == TW_OK, "read back: %s", err.msg);
    if (f) {
        const tw_st_tensor *t = tw_st_find(f, "f32");
        float back[24] = {0};
        CHECK(t && t->dtype == TW_F32 && t->ndim == 3 && t->shape[2] == 4 &&
               tw_st_read(f, back, t, &err) == TW_OK && !memcmp(back, f32, sizeof f32),
               "f32 tensor differs after the round trip");
        t = tw_st_find(f, "i64");
        int64_t b64 = 0;
        CHECK(t && t->ndim == 0 && t->dtype == TW_I64 && tw_st_read(f, &b64, t, &err) == TW_OK &&
               b64 == i64, "0-dim I64 differs");
        t = tw_st_find(f, "empty");
        CHECK(t && t->n_elems == 0 && t->begin == t->end, "empty tensor");
        const char *step = tw_st_meta_get(f, "step");
        CHECK(step && !strcmp(step, "42"), "metadata step = %s", step ? step : "(none)");
        tw_st_close(f);
    }
    snprintf(cmd, sizeof cmd, "'%s' '%s' pattern '%s'", python, script, path);
    CHECK(system(cmd) == 0, "torch could not read what we wrote (%s)", cmd);
    printf("  ok   writer: round trip, atomic replace, torch reads it\n");
}

/* A copy of src with one change: drop `skip`, add `extra`, give `reshape` the shape [64, 2, 7, 7],
 * or store `retype` as I32 (F32 tensors) or F32 (I64 counters). */
static void rewrite(const char *dst, const char *src, const char *skip, const char *extra,
                    const char *reshape, const char *retype) {
    tw_st_file *f = NULL;
    tw_err err = {0};
    TW_ASSERT(tw_st_open(&f, src, &err) == TW_OK);
    tw_st_writer *w = tw_st_writer_init();
    void **bufs = calloc(f->n_tensors + 1, sizeof *bufs);
    static float extra_data[4];
    for (int i = 0; i < f->n_tensors; i++) {
        const tw_st_tensor *t = &f->tensors[i];
        if (skip && !strcmp(t->name, skip)) continue;
        bufs[i] = malloc(t->end - t->begin + 8);
        TW_ASSERT(tw_st_read(f, bufs[i], t, &err) == TW_OK);
        if (reshape && !strcmp(t->name, reshape)) {
            int64_t s[4] = {64, 2, 7, 7};   /* fewer elements than the model's; bytes consistent */
            tw_st_writer_add(w, t->name, t->dtype, 4, s, bufs[i]);
        } else if (retype && !strcmp(t->name, retype)) {
            tw_st_writer_add(w, t->name, t->dtype == TW_I64 ? TW_F32 : TW_I32, t->ndim,
                             t->shape, bufs[i]);
        } else {
            tw_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, bufs[i]);
        }
    }
    if (extra) {
        int64_t s[1] = {4};
        tw_st_writer_add(w, extra, TW_F32, 1, s, extra_data);
    }
    TW_ASSERT(tw_st_writer_save(w, dst, &err) == TW_OK);
    tw_st_writer_free(w);
    for (int i = 0; i < f->n_tensors; i++) free(bufs[i]);
    free(bufs);
    tw_st_close(f);
}

/* 400 corruptions of a valid file (a header byte changed, or the file cut short), each opened
 * and, when it still opens, read in full: an error or a file that reads, never a crash (run
 * under TW_SANITIZE=ON to see memory errors too). */
static void corruptions(void) {
    char src[1024], dst[1024];
    snprintf(src, sizeof src, "%s/pattern.safetensors", work_dir);
    snprintf(dst, sizeof dst, "%s/corrupt.safetensors", work_dir);
    FILE *f = fopen(src, "rb");
    TW_ASSERT(f);
    static unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    unsigned char *copy = malloc(n);
    tw_rng r;
    tw_rng_init(&r, 99, 0, 0, 0);
    int n_open = 0;
    for (int i = 0; i < 400; i++) {
        memcpy(copy, buf, n);
        size_t len = n;
        if (i % 4 == 3) {
            len = tw_rng_below(&r, (uint32_t)n);
        } else {
            size_t at = tw_rng_below(&r, (uint32_t)(n < 300 ? n : 300));
            copy[at] = (unsigned char)tw_rng_below(&r, 256);
        }
        f = fopen(dst, "wb");
        fwrite(copy, 1, len, f);
        fclose(f);
        tw_st_file *sf = NULL;
        tw_err err = {0};
        if (tw_st_open(&sf, dst, &err) == TW_OK) {
            n_open++;
            for (int t = 0; t < sf->n_tensors; t++) {
                void *data = malloc(sf->tensors[t].end - sf->tensors[t].begin + 1);
                CHECK(tw_st_read(sf, data, &sf->tensors[t], &err) == TW_OK, "read after open: %s", err.msg);
                free(data);
            }
            tw_st_close(sf);
        } else {
            CHECK(err.code != TW_OK && strstr(err.msg, dst), "error without the file name: %s", err.msg);
        }
    }
    free(copy);
    printf("  ok   400 corrupted files: %d still valid and read in full, the rest refused\n", n_open);
}

static void expect_load(const char *label, tw_params *P, const char *path,
                        const tw_params_load_opts *o, tw_status code, const char *what) {
    tw_st_file *f = NULL;
    tw_err err = {0};
    tw_status st = tw_st_open(&f, path, &err);
    if (st == TW_OK) st = tw_params_load(P, f, o, &err);
    tw_st_close(f);
    int ok = st == code && (code == TW_OK || (strstr(err.msg, path) && (!what || strstr(err.msg, what))));
    printf("%s %-28s -> %s%s%s\n", ok ? "  ok  " : "  FAIL", label, tw_status_str(st),
           st == TW_OK ? "" : ": ", st == TW_OK ? "" : err.msg);
    if (!ok) check_n_fail++;
}

static void model_files(const char *ref_dir, const char *python, const char *script) {
    tw_err err = {0};
    tw_backend *be = NULL;
    TW_ASSERT(tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) == TW_OK);
    char torch_file[1024], ours[1024], bad[1024], cmd[4096];
    snprintf(torch_file, sizeof torch_file, "%s/weights_c3.safetensors", ref_dir);
    snprintf(ours, sizeof ours, "%s/export_c3.safetensors", work_dir);

    /* A model registered under "backbone." (as pretraining does) loads torch's names. */
    tw_params P;
    tw_params_init(&P, be);
    tw_resnet18 m;
    TW_ASSERT(tw_resnet18_init(&m, &P, "backbone.", 3, &err) == TW_OK);
    tw_params_alloc(&P, 0);
    tw_resnet18_init_weights(&m, 5);
    tw_params_load_opts strict = {"", "backbone.", NULL, 0}, import = {"", "backbone.", "fc.", 0};
    expect_load("torch file, fc.* not ignored", &P, torch_file, &strict, TW_E_UNKNOWN, "'fc.");
    expect_load("torch file, fc.* ignored", &P, torch_file, &import, TW_OK, NULL);
    tw_st_writer *w = tw_st_writer_init();
    void *host = NULL;
    tw_params_save(&P, w, "backbone.", "", &host);
    CHECK(tw_st_writer_save(w, ours, &err) == TW_OK, "save: %s", err.msg);
    tw_st_writer_free(w);
    free(host);
    snprintf(cmd, sizeof cmd, "'%s' '%s' export '%s' '%s'", python, script, torch_file, ours);
    CHECK(system(cmd) == 0, "torchvision did not take our file (%s)", cmd);

    /* A model without prefix, loading our file strictly, and each broken copy of it. */
    tw_params Q;
    tw_params_init(&Q, be);
    tw_resnet18 q;
    TW_ASSERT(tw_resnet18_init(&q, &Q, "", 3, &err) == TW_OK);
    tw_params_alloc(&Q, 0);
    tw_params_load_opts plain = {"", "", NULL, 0};
    expect_load("our file, strict", &Q, ours, &plain, TW_OK, NULL);
    snprintf(bad, sizeof bad, "%s/missing.safetensors", work_dir);
    rewrite(bad, ours, "layer1.0.bn1.bias", NULL, NULL, NULL);
    expect_load("missing tensor", &Q, bad, &plain, TW_E_MISSING, "layer1.0.bn1.bias");
    snprintf(bad, sizeof bad, "%s/extra.safetensors", work_dir);
    rewrite(bad, ours, NULL, "layer5.0.conv1.weight", NULL, NULL);
    expect_load("extra tensor", &Q, bad, &plain, TW_E_UNKNOWN, "layer5.0.conv1.weight");
    snprintf(bad, sizeof bad, "%s/reshaped.safetensors", work_dir);
    rewrite(bad, ours, NULL, NULL, "conv1.weight", NULL);
    expect_load("mis-shaped tensor", &Q, bad, &plain, TW_E_SHAPE, "conv1.weight");
    snprintf(bad, sizeof bad, "%s/retyped.safetensors", work_dir);
    rewrite(bad, ours, NULL, NULL, NULL, "layer2.0.conv2.weight");
    expect_load("I32 weights", &Q, bad, &plain, TW_E_DTYPE, "layer2.0.conv2.weight");
    rewrite(bad, ours, NULL, NULL, NULL, "layer3.1.bn2.num_batches_tracked");
    expect_load("F32 num_batches_tracked", &Q, bad, &plain, TW_E_DTYPE, "num_batches_tracked");

    /* What loaded is what torch had: compare one tensor and one counter with the torch file. */
    tw_st_file *tf = NULL;
    TW_ASSERT(tw_st_open(&tf, torch_file, &err) == TW_OK);
    const tw_st_tensor *t = tw_st_find(tf, "layer3.0.downsample.1.running_var");
    float want[256], got[256];
    TW_ASSERT(t && t->n_elems == 256 && tw_st_read(tf, want, t, &err) == TW_OK);
    int i = tw_params_find(&Q, "layer3.0.downsample.1.running_var");
    tw_mem_to_host(be, got, tw_params_ptr(&Q, i), sizeof got);
    CHECK(!memcmp(got, want, sizeof got), "layer3.0.downsample.1.running_var differs from torch's");
    i = tw_params_find(&Q, "bn1.num_batches_tracked");
    CHECK(*tw_params_counter(&Q, i) == 7, "bn1.num_batches_tracked = %lld, torch's is 7",
           (long long)*tw_params_counter(&Q, i));
    tw_st_close(tf);
    tw_params_free(&P);
    tw_params_free(&Q);
    tw_backend_free(be);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: test_safetensors WORK_DIR REF_DIR PYTHON ST_CHECK_PY\n");
        return 1;
    }
    work_dir = argv[1];
    mkdir(work_dir, 0755);
    bad_files();
    writer_round_trip(argv[3], argv[4]);
    corruptions();
    model_files(argv[2], argv[3], argv[4]);
    printf("%s (%d failures)\n", check_n_fail ? "FAIL" : "PASS", check_n_fail);
    return check_exit_code();
}
