/* libFuzzer harness: the shard validator and reader (data/shard_read.c). Fuzzing HDF5's own file
 * parser would test libhdf5, not twinfuse, so this harness is structure-aware: the input sizes a
 * valid shard (N, H, W, its pixels and normalisation, NaN and Inf included), then edits it with
 * HDF5 calls (4 bytes an edit: delete a dataset or attribute, re-create one with another dtype,
 * rank, shape or chunking, re-create an attribute with another type or length); then the shard is
 * opened and, if accepted, every sample and the labels are read. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/labels.h"
#include "data/shard.h"
#include "data/shard_h5.h"
#include "fuzz.h"

static const char *const g_dsets[] = {"s2", "s1", "labels", "labels43", "name", "s1_name", "flags"};
static const char *const g_attrs[] = {"format_version", "s2_bands", "s1_bands", "classes", "has_labels43",
                                      "n_skipped", "moment_count", "moment_mean", "moment_m2", "s2_mean",
                                      "s2_std", "s1_mean", "s1_std"};
enum { N_FUZZ_DSETS = sizeof g_dsets / sizeof *g_dsets, N_ATTRS = sizeof g_attrs / sizeof *g_attrs };

typedef struct input { const uint8_t *p; size_t n; } input;

static unsigned take(input *in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}

/* A double from one byte: small values, 0, negatives, NaN and the infinities. */
static double take_f64(input *in) {
    unsigned b = take(in);
    return b == 255 ? NAN : b == 254 ? INFINITY : b == 253 ? -INFINITY : ((double)b - 64.0) / 8.0;
}

static hid_t type_of(unsigned k) {
    static const hid_t *const types[] = {&H5T_NATIVE_UINT8_g, &H5T_NATIVE_UINT16_g, &H5T_NATIVE_INT16_g,
                                         &H5T_NATIVE_FLOAT_g, &H5T_NATIVE_DOUBLE_g, &H5T_NATIVE_INT64_g};
    if (k < 6) return H5Tcopy(*types[k]);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, k == 6 ? TW_SHARD_NAME_BYTES : k == 7 ? 8 : H5T_VARIABLE);
    return t;
}

/* Deletes dataset d and makes one of type, rank and dims from the input, chunked per sample or
 * not, filled with zeros. */
static void recreate_dset(hid_t f, const char *name, input *in) {
    unsigned type = take(in) % 9, rank = 1 + take(in) % 4, shape = take(in);
    hsize_t dims[4], chunk[4];
    for (unsigned k = 0; k < rank; k++) {
        dims[k] = (shape >> (2 * k)) & 3;
        chunk[k] = k == 0 ? 1 : dims[k] ? dims[k] : 1;
    }
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) H5Ldelete(f, name, H5P_DEFAULT);
    hid_t t = type_of(type), s = H5Screate_simple((int)rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (!(shape & 0x80) && dims[0] > 0) H5Pset_chunk(dcpl, (int)rank, chunk);
    hid_t d = H5Dcreate2(f, name, t, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d >= 0) H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(s);
    H5Tclose(t);
}

/* Deletes attribute a and writes one of a type and length from the input. */
static void recreate_attr(hid_t f, const char *name, input *in) {
    unsigned kind = take(in) % 4, n = take(in) % 45;
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    if (kind == 0 && n > 0) {
        double v[64];
        for (unsigned i = 0; i < n; i++) v[i] = take_f64(in);
        tw_h5_attr_f64(f, name, v, (int)n);
    } else if (kind == 1) {
        tw_h5_attr_i64(f, name, (int64_t)take(in) - 2);
    } else if (kind == 2) {
        const char *names[64];
        for (unsigned i = 0; i < n; i++) names[i] = tw_labels_names43[(i + take(in)) % TW_N_CLASSES43];
        if (n) tw_h5_attr_strs(f, name, names, (int)n);
    } else {
        tw_h5_attr_str(f, name, "fuzz");
    }
}

/* A valid shard at path: N samples of H x W from the input, normalised with values from it. */
static int write_shard(const char *path, input *in) {
    int n = 1 + (int)take(in) % 3, h = 1 + (int)take(in) % 4, w = 1 + (int)take(in) % 4;
    tw_shard_writer *wr;
    tw_err err;
    if (tw_shard_writer_open(&wr, path, "train", "fuzz", h, w, &err) != TW_OK) return -1;
    uint16_t s2[TW_S2_BANDS * 16];
    float s1[TW_S1_BANDS * 16];
    uint8_t labels[TW_N_CLASSES], labels43[TW_N_CLASSES43];
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < TW_S2_BANDS * h * w; p++) s2[p] = (uint16_t)(take(in) * 40);
        for (int p = 0; p < TW_S1_BANDS * h * w; p++) s1[p] = (float)take_f64(in);
        for (int c = 0; c < TW_N_CLASSES; c++) labels[c] = take(in) & 1;
        for (int c = 0; c < TW_N_CLASSES43; c++) labels43[c] = (uint8_t)(c == i);
        tw_shard_sample s = {.s2 = s2, .s1 = s1, .labels = labels, .labels43 = labels43, .name = "patch",
                             .s1_name = "patch_s1", .flags = (uint8_t)(take(in) & 3)};
        if (tw_shard_writer_add(wr, &s, &err) != TW_OK) {
            tw_shard_writer_abort(wr);
            return -1;
        }
    }
    if (tw_shard_writer_close(wr, 0, &err) != TW_OK) return -1;
    tw_shard_norm norm;
    for (int b = 0; b < TW_N_BANDS; b++) {
        norm.mean[b] = take_f64(in);
        norm.std[b] = take(in) ? 1.0 + take(in) : take_f64(in);
    }
    return tw_shard_write_norm(path, &norm, &err) == TW_OK ? 0 : -1;
}

static void edit(const char *path, input *in) {
    tw_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    while (f >= 0 && in->n >= 4) {
        unsigned op = take(in) % 4, target = take(in);
        if (op == 0) {
            if (H5Lexists(f, g_dsets[target % N_FUZZ_DSETS], H5P_DEFAULT) > 0) H5Ldelete(f, g_dsets[target % N_FUZZ_DSETS], H5P_DEFAULT);
        } else if (op == 1) {
            if (H5Aexists(f, g_attrs[target % N_ATTRS]) > 0) H5Adelete(f, g_attrs[target % N_ATTRS]);
        } else if (op == 2) {
            recreate_dset(f, g_dsets[target % N_FUZZ_DSETS], in);
        } else {
            recreate_attr(f, g_attrs[target % N_ATTRS], in);
        }
    }
    if (f >= 0) H5Fclose(f);
    tw_h5_unlock();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    input in = {data, size};
    char path[600];
    snprintf(path, sizeof path, "%s.h5", tw_fuzz_file_write(NULL, 0));
    if (write_shard(path, &in) != 0) {
        remove(path);
        return 0;
    }
    edit(path, &in);
    tw_shard *sh;
    tw_err err;
    if (tw_shard_open(&sh, path, &err) == TW_OK) {
        tw_shard_norm norm;
        (void)tw_shard_norm_get(sh, &norm, &err);
        int64_t n = tw_shard_n(sh);
        size_t px = (size_t)tw_shard_h(sh) * (size_t)tw_shard_w(sh);
        uint16_t *s2 = malloc(TW_S2_BANDS * px * sizeof *s2);
        float *s1 = malloc(TW_S1_BANDS * px * sizeof *s1);
        uint8_t labels[TW_N_CLASSES], labels43[TW_N_CLASSES43], flags, *all = malloc((size_t)n * TW_N_CLASSES43);
        char name[TW_SHARD_NAME_BYTES], s1_name[TW_SHARD_NAME_BYTES];
        for (int64_t i = 0; s2 && s1 && i < n; i++)
            (void)tw_shard_read(sh, i, s2, s1, labels, labels43, name, s1_name, &flags, &err);
        if (all) {
            (void)tw_shard_read_labels(sh, all, TW_N_CLASSES, &err);
            if (tw_shard_has_labels43(sh)) (void)tw_shard_read_labels(sh, all, TW_N_CLASSES43, &err);
        }
        free(s2);
        free(s1);
        free(all);
        tw_shard_close(sh);
    }
    remove(path);
    return 0;
}
