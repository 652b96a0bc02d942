/* Initialising classifier backbones from files (tw_resnet18_load_backbone): torchvision's
 * 3-channel resnet18 (ref_resnet18.py's weights_c3) into 12-band S2, 2-channel S1 and 14-channel
 * early-fusion stems by the RGB adaptation (B04/B03/B02 take R/G/B, other channels the mean of the
 * three, all scaled by 3 / c_in) with every other tensor and counter copied bit for bit; a
 * checkpoint's "backbone." tensors (other tensors in the file left alone) round trip bit-equal;
 * errors name the file and the tensor (a missing tensor, a stem that cannot be adapted).
 * usage: test_classifier_load MODEL_REF_DIR WORK_DIR; exit 0 pass, 1 fail. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/backend.h"
#include "check.h"
#include "core/log.h"
#include "data/shard.h"
#include "model/classifier.h"
#include "model/resnet18_io.h"

static tw_backend *be;

/* A classifier with one backbone of the given sources, its arena reset from seed. */
static void make(tw_classifier *m, tw_params *P, int c_s1, int c_s2, uint64_t seed) {
    tw_classifier_opts o;
    tw_classifier_opts_default(&o);
    o.c_s1 = c_s1;
    o.c_s2 = c_s2;
    o.fusion = c_s1 && c_s2 ? TW_FUSION_EARLY : TW_FUSION_NONE;
    tw_err err = {0};
    tw_params_init(P, be);
    TW_ASSERT(tw_classifier_init(m, P, &o, &err) == TW_OK);
    tw_params_alloc(P, 0);
    tw_classifier_reset(m, seed);
}

static float *entry_host(const tw_params *P, int i) {
    size_t n = P->entries[i].n_elems;
    float *h = malloc(n * sizeof(float));
    tw_mem_to_host(be, h, tw_params_ptr(P, i), n * sizeof(float));
    return h;
}

/* Every backbone tensor of m but conv1 equals the file's (name = entry name less m's prefix
 * plus file_prefix), bit for bit; counters too. Returns the number of mismatches. */
static int same_as_file(const tw_resnet18 *m, tw_st_file *f, const char *file_prefix, int with_conv1) {
    const tw_params *P = m->P;
    int bad = 0;
    size_t pl = strlen(m->prefix);
    for (int i = 0; i < P->n_entries; i++) {
        const tw_param_entry *e = &P->entries[i];
        if (strncmp(e->name, m->prefix, pl)) continue;
        if (!with_conv1 && !strcmp(e->name + pl, "conv1.weight")) continue;
        char name[256];
        snprintf(name, sizeof name, "%s%s", file_prefix, e->name + pl);
        const tw_st_tensor *t = tw_st_find(f, name);
        tw_err err = {0};
        if (!t) {
            printf("  FAIL %s: no '%s'\n", f->path, name);
            bad++;
            continue;
        }
        if (e->kind == TW_PARAM_COUNTER) {
            int64_t v = -1;
            TW_ASSERT(tw_st_read(f, &v, t, &err) == TW_OK);
            bad += v != *tw_params_counter(P, i);
            continue;
        }
        float *want = check_read_f32(f, name, NULL), *got = entry_host(P, i);
        if (memcmp(want, got, e->n_elems * sizeof(float))) {
            printf("  FAIL %s differs from %s\n", e->name, name);
            bad++;
        }
        free(want);
        free(got);
    }
    return bad;
}

/* The stem of m against the rule, from the file's RGB stem. */
static int check_stem(const tw_resnet18 *m, tw_st_file *f, const char *const *names) {
    float *rgb = check_read_f32(f, "conv1.weight", NULL), *got = entry_host(m->P, m->u[0].w);
    int c = m->c_in;
    size_t n = (size_t)64 * c * 49;
    float *want = malloc(n * sizeof(float));
    static const char *const band[3] = {"B04", "B03", "B02"};
    for (int o = 0; o < 64; o++)
        for (int j = 0; j < c; j++) {
            int from = -1;
            for (int q = 0; q < 3; q++)
                if (names && !strcmp(names[j], band[q])) from = q;
            const float *s = rgb + (size_t)o * 147;
            for (int t = 0; t < 49; t++)
                want[((size_t)o * c + j) * 49 + t] =
                    (float)((from >= 0 ? s[from * 49 + t] : (s[t] + s[49 + t] + s[98 + t]) / 3.0) * 3.0 / c);
        }
    char what[64];
    snprintf(what, sizeof what, "stem of %d channels adapted from RGB", c);
    int ok = check_close(what, got, want, n, 1e-6);
    free(rgb);
    free(got);
    free(want);
    return ok;
}

static int test_rgb(const char *c3_path) {
    int ok = 1;
    tw_err err = {0};
    tw_st_file *f = NULL;
    TW_ASSERT(tw_st_open(&f, c3_path, &err) == TW_OK);
    const char *s2[TW_S2_BANDS + 2], *s1[2] = {"VV", "VH"};
    for (int b = 0; b < TW_S2_BANDS; b++) s2[b] = tw_shard_s2_bands[b];
    s2[TW_S2_BANDS] = "VV";
    s2[TW_S2_BANDS + 1] = "VH";
    struct { int c_s1, c_s2; const char *const *names; } cases[3] = {{0, 12, s2}, {2, 0, s1}, {2, 12, s2}};
    for (int k = 0; k < 3; k++) {
        tw_params P;
        tw_classifier m;
        make(&m, &P, cases[k].c_s1, cases[k].c_s2, 5);
        if (tw_resnet18_load_backbone(&m.net[0], c3_path, "", cases[k].names, &err) != TW_OK) {
            printf("  FAIL load: %s\n", err.msg);
            ok = 0;
        } else {
            int bad = same_as_file(&m.net[0], f, "", 0);
            printf("%s %d-channel backbone: every other tensor and counter as in the file\n",
                   bad ? "  FAIL" : "  ok  ", m.net[0].c_in);
            ok &= !bad && check_stem(&m.net[0], f, cases[k].names);
        }
        tw_params_free(&P);
    }
    tw_st_close(f);
    return ok;
}

/* Writes the backbone of m as a checkpoint would ("backbone." names) plus a foreign tensor. */
static void write_checkpoint(tw_classifier *m, const char *path) {
    tw_st_writer *w = tw_st_writer_init();
    void *host = NULL;
    tw_params_save(m->P, w, "backbone.", "backbone.", &host);
    static const float extra[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    tw_st_writer_add(w, "projector.0.weight", TW_F32, 1, shape, extra);
    tw_err err = {0};
    TW_ASSERT(tw_st_writer_save(w, path, &err) == TW_OK);
    tw_st_writer_free(w);
    free(host);
}

/* The RGB file less one tensor. */
static void write_truncated(const char *dst, const char *src, const char *skip) {
    tw_err err = {0};
    tw_st_file *f = NULL;
    TW_ASSERT(tw_st_open(&f, src, &err) == TW_OK);
    tw_st_writer *w = tw_st_writer_init();
    void **bufs = calloc(f->n_tensors, sizeof *bufs);
    for (int i = 0; i < f->n_tensors; i++) {
        const tw_st_tensor *t = &f->tensors[i];
        if (!strcmp(t->name, skip)) continue;
        bufs[i] = malloc(t->end - t->begin + 1);
        TW_ASSERT(tw_st_read(f, bufs[i], t, &err) == TW_OK);
        tw_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, bufs[i]);
    }
    TW_ASSERT(tw_st_writer_save(w, dst, &err) == TW_OK);
    tw_st_writer_free(w);
    for (int i = 0; i < f->n_tensors; i++) free(bufs[i]);
    free(bufs);
    tw_st_close(f);
}

static int expect_error(tw_resnet18 *m, const char *path, const char *prefix, const char *const *names,
                        tw_status want, const char *needle) {
    tw_err err = {0};
    tw_status st = tw_resnet18_load_backbone(m, path, prefix, names, &err);
    int ok = st == want && strstr(err.msg, path) && strstr(err.msg, needle);
    printf("%s error names file and tensor: %s\n", ok ? "  ok  " : "  FAIL", err.msg);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_classifier_load MODEL_REF_DIR WORK_DIR\n");
        return 1;
    }
    tw_err err = {0};
    if (tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) != TW_OK) {
        printf("FAIL: backend: %s\n", err.msg);
        return 1;
    }
    mkdir(argv[2], 0755);
    char c3[1024], c12[1024], ckpt[1024], trunc[1024];
    snprintf(c3, sizeof c3, "%s/weights_c3.safetensors", argv[1]);
    snprintf(c12, sizeof c12, "%s/weights_c12.safetensors", argv[1]);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", argv[2]);
    snprintf(trunc, sizeof trunc, "%s/truncated.safetensors", argv[2]);
    int ok = test_rgb(c3);

    /* checkpoint round trip: a model loaded from weights_c12, written as "backbone.", read into a
     * differently initialised model */
    tw_params P1, P2;
    tw_classifier a, b;
    make(&a, &P1, 0, 12, 1);
    make(&b, &P2, 0, 12, 2);
    const char **names = NULL;
    TW_ASSERT(tw_resnet18_load_backbone(&a.net[0], c12, "", names, &err) == TW_OK);
    write_checkpoint(&a, ckpt);
    tw_st_file *f = NULL;
    if (tw_resnet18_load_backbone(&b.net[0], ckpt, "backbone.", NULL, &err) != TW_OK) {
        printf("  FAIL checkpoint load: %s\n", err.msg);
        ok = 0;
    } else {
        TW_ASSERT(tw_st_open(&f, ckpt, &err) == TW_OK);
        int bad = same_as_file(&b.net[0], f, "backbone.", 1);
        printf("%s checkpoint backbone round trip bit-equal, foreign tensors left\n", bad ? "  FAIL" : "  ok  ");
        ok &= !bad;
        tw_st_close(f);
    }
    /* errors */
    tw_params P3;
    tw_classifier s1;
    make(&s1, &P3, 2, 0, 3);
    ok &= expect_error(&s1.net[0], c12, "", NULL, TW_E_SHAPE, "conv1.weight");
    ok &= expect_error(&b.net[0], ckpt, "", NULL, TW_E_MISSING, "conv1.weight");
    write_truncated(trunc, c3, "layer2.1.bn2.running_var");
    ok &= expect_error(&b.net[0], trunc, "", NULL, TW_E_MISSING, "layer2.1.bn2.running_var");
    tw_params_free(&P1);
    tw_params_free(&P2);
    tw_params_free(&P3);
    tw_backend_free(be);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
