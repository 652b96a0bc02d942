/* Implementation of tb.h: test backend, host-side layout packing, reference files. */
#include "tb.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"

tw_backend *tb_backend(tw_precision prec) {
    tw_backend *be = NULL;
    tw_err err = {0};
    tw_status st = tw_backend_create(&be, TW_DEVICE_CPU, prec, 0, &err);
    if (st == TW_E_UNSUPPORTED && prec == TW_PREC_BF16) {
        printf("SKIP: no native bf16 on this CPU: %s\n", err.msg);
        exit(TW_TEST_SKIP);
    }
    if (st != TW_OK) {
        printf("FAIL: backend create: %s\n", err.msg);
        exit(TW_TEST_FAIL);
    }
    char line[256];
    tw_backend_describe(be, line, sizeof line);
    printf("# %s\n", line);
    return be;
}

void tb_fill(tw_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = (2.0f * tw_rng_uniform(r) - 1.0f) * scale;
}

float *tb_alloc_rand(tw_rng *r, size_t n, float scale) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x) exit(TW_TEST_FAIL);
    tb_fill(r, x, n, scale);
    return x;
}

size_t tb_offset(const tw_tensor *t, int n, int c, int h, int w) {
    size_t C = t->c, H = t->h, W = t->w;
    switch (t->layout) {
    case TW_LAYOUT_NCHW: return ((n * C + c) * H + h) * W + w;
    case TW_LAYOUT_NHWC: return ((n * H + h) * W + w) * C + c;
    case TW_LAYOUT_NCHW8C:
    case TW_LAYOUT_NCHW16C: {
        size_t B = tw_layout_block(t->layout), nb = (C + B - 1) / B;
        return (((n * nb + c / B) * H + h) * W + w) * B + c % B;
    }
    }
    return 0;
}

tw_tensor tb_tensor(tw_backend *be, int n, int c, int h, int w, tw_dtype dt, tw_layout l) {
    tw_tensor t = {NULL, n, c, h, w, dt, l};
    size_t b = tw_tensor_bytes(&t);
    t.data = tw_mem_alloc(be, b);
    tw_mem_zero(be, t.data, b);
    return t;
}

void tb_tensor_free(tw_backend *be, tw_tensor *t) {
    tw_mem_free(be, t->data);
    t->data = NULL;
}

void tb_put(tw_backend *be, tw_tensor *t, const float *nchw) {
    size_t bytes = tw_tensor_bytes(t);
    unsigned char *h = calloc(1, bytes);
    if (!h) exit(TW_TEST_FAIL);
    size_t i = 0;
    for (int n = 0; n < t->n; n++)
        for (int c = 0; c < t->c; c++)
            for (int y = 0; y < t->h; y++)
                for (int x = 0; x < t->w; x++, i++) {
                    size_t o = tb_offset(t, n, c, y, x);
                    if (t->dtype == TW_F32)
                        ((float *)h)[o] = nchw[i];
                    else
                        ((uint16_t *)h)[o] = tw_f32_to_bf16(nchw[i]);
                }
    tw_mem_from_host(be, t->data, h, bytes);
    free(h);
}

void tb_get(tw_backend *be, float *nchw, const tw_tensor *t) {
    size_t bytes = tw_tensor_bytes(t);
    unsigned char *h = malloc(bytes);
    if (!h) exit(TW_TEST_FAIL);
    tw_mem_to_host(be, h, t->data, bytes);
    size_t i = 0;
    for (int n = 0; n < t->n; n++)
        for (int c = 0; c < t->c; c++)
            for (int y = 0; y < t->h; y++)
                for (int x = 0; x < t->w; x++, i++) {
                    size_t o = tb_offset(t, n, c, y, x);
                    nchw[i] = t->dtype == TW_F32 ? ((float *)h)[o]
                                                 : tw_bf16_to_f32(((uint16_t *)h)[o]);
                }
    free(h);
}

int tb_pad_zero(tw_backend *be, const tw_tensor *t) {
    size_t B = tw_layout_block(t->layout);
    if (B == 1 || t->c % B == 0) return 1;
    size_t bytes = tw_tensor_bytes(t), es = tw_dtype_size(t->dtype);
    unsigned char *h = malloc(bytes);
    if (!h) exit(TW_TEST_FAIL);
    tw_mem_to_host(be, h, t->data, bytes);
    size_t cp = (t->c + B - 1) / B * B;
    int ok = 1;
    tw_tensor big = *t;
    big.c = (int)cp;
    for (int n = 0; n < t->n && ok; n++)
        for (size_t c = t->c; c < cp && ok; c++)
            for (int y = 0; y < t->h && ok; y++)
                for (int x = 0; x < t->w && ok; x++) {
                    size_t o = tb_offset(&big, n, (int)c, y, x) * es;
                    for (size_t k = 0; k < es; k++)
                        if (h[o + k]) ok = 0;
                }
    free(h);
    if (!ok) printf("FAIL: padding channels of a %s tensor are not zero\n", tw_layout_name(t->layout));
    return ok;
}

void tb_round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = tw_bf16_to_f32(tw_f32_to_bf16(x[i]));
}

/* ---- reference files ------------------------------------------------------------------- */

typedef struct tb_rec {
    char name[128];
    size_t n;
    float *data;
} tb_rec;

struct tb_ref {
    char path[512];
    tb_rec *recs;
    int n_recs;
};

tb_ref *tb_ref_open(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("FAIL: cannot open reference file %s (run ref_ops.py first)\n", path);
        exit(TW_TEST_FAIL);
    }
    tb_ref *r = calloc(1, sizeof *r);
    if (!r) exit(TW_TEST_FAIL);
    snprintf(r->path, sizeof r->path, "%s", path);
    for (;;) {
        uint32_t len;
        if (fread(&len, 4, 1, f) != 1) break;
        uint64_t n;
        tb_rec rec = {0};
        if (len >= sizeof rec.name || fread(rec.name, 1, len, f) != len || fread(&n, 8, 1, f) != 1) {
            printf("FAIL: %s: truncated record header\n", path);
            exit(TW_TEST_FAIL);
        }
        rec.n = n;
        rec.data = malloc((n ? n : 1) * sizeof(float));
        if (!rec.data || fread(rec.data, sizeof(float), n, f) != n) {
            printf("FAIL: %s: truncated record %s\n", path, rec.name);
            exit(TW_TEST_FAIL);
        }
        tb_rec *grown = realloc(r->recs, (r->n_recs + 1) * sizeof *grown);
        if (!grown) exit(TW_TEST_FAIL);
        r->recs = grown;
        r->recs[r->n_recs++] = rec;
    }
    fclose(f);
    return r;
}

const float *tb_ref_get(tb_ref *r, const char *name, size_t want_n) {
    for (int i = 0; i < r->n_recs; i++)
        if (strcmp(r->recs[i].name, name) == 0) {
            if (want_n && r->recs[i].n != want_n) {
                printf("FAIL: %s: %s has %zu values, want %zu\n", r->path, name, r->recs[i].n,
                       want_n);
                exit(TW_TEST_FAIL);
            }
            return r->recs[i].data;
        }
    printf("FAIL: %s: no record %s\n", r->path, name);
    exit(TW_TEST_FAIL);
}

void tb_ref_close(tb_ref *r) {
    for (int i = 0; i < r->n_recs; i++) free(r->recs[i].data);
    free(r->recs);
    free(r);
}
