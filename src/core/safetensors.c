/* safetensors reading (with full header validation) and atomic writing, JSON through jansson.
 * The format and its validation rules follow huggingface/safetensors (safetensors/src/tensor.rs):
 * contiguous, non-overlapping data_offsets covering the whole data section. */
#include "core/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/log.h"

int tw_st_dtype_parse(tw_dtype *out, const char *name) {
    static const tw_dtype all[] = {TW_F32, TW_BF16, TW_F16, TW_I64, TW_I32, TW_U16, TW_U8};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(name, tw_dtype_name(all[i]))) {
            *out = all[i];
            return 1;
        }
    return 0;
}

/* ---- reading ----------------------------------------------------------------------------- */

void tw_st_close(tw_st_file *f) {
    if (!f) return;
    if (f->fp) fclose(f->fp);
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->tensors);
    free(f->meta);
    free(f->path);
    free(f);
}

static int by_begin(const void *a, const void *b) {
    const tw_st_tensor *x = *(const tw_st_tensor *const *)a, *y = *(const tw_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* A JSON integer that fits in [0, max]. */
static int json_uint(const json_t *v, uint64_t max, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
    *out = (uint64_t)json_integer_value(v);
    return *out <= max;
}

static tw_status parse_tensor(tw_st_tensor *t, const char *path, const char *name,
                              const json_t *v, size_t data_bytes, tw_err *err) {
    if (!json_is_object(v))
        return tw_err_set(err, TW_E_FORMAT, "%s: tensor '%s': header entry is not an object", path, name);
    const json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
                 *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(off) || json_array_size(off) != 2)
        return tw_err_set(err, TW_E_FORMAT,
                          "%s: tensor '%s': needs \"dtype\" (string), \"shape\" (array) and "
                          "\"data_offsets\" ([begin, end])", path, name);
    if (json_object_size(v) != 3)
        return tw_err_set(err, TW_E_FORMAT, "%s: tensor '%s': unexpected keys in header entry", path, name);
    if (!tw_st_dtype_parse(&t->dtype, json_string_value(dt)))
        return tw_err_set(err, TW_E_DTYPE, "%s: tensor '%s': unsupported dtype '%s'", path, name,
                          json_string_value(dt));
    size_t ndim = json_array_size(sh);
    if (ndim > TW_ST_MAX_DIMS)
        return tw_err_set(err, TW_E_SHAPE, "%s: tensor '%s': %zu dimensions (at most %d)", path,
                          name, ndim, TW_ST_MAX_DIMS);
    t->ndim = (int)ndim;
    uint64_t n_elems = 1;
    for (size_t i = 0; i < ndim; i++) {
        uint64_t d;
        if (!json_uint(json_array_get(sh, i), (uint64_t)INT64_MAX, &d))
            return tw_err_set(err, TW_E_SHAPE, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                              path, name, i);
        t->shape[i] = (int64_t)d;
        if (d != 0 && n_elems > SIZE_MAX / 8 / d)
            return tw_err_set(err, TW_E_SHAPE, "%s: tensor '%s': shape too large", path, name);
        n_elems *= d;
    }
    t->n_elems = (size_t)n_elems;
    uint64_t b, e;
    if (!json_uint(json_array_get(off, 0), (uint64_t)SIZE_MAX, &b) ||
        !json_uint(json_array_get(off, 1), (uint64_t)SIZE_MAX, &e) || b > e)
        return tw_err_set(err, TW_E_FORMAT, "%s: tensor '%s': data_offsets are not [begin, end] "
                          "with 0 <= begin <= end", path, name);
    if (e > data_bytes)
        return tw_err_set(err, TW_E_RANGE, "%s: tensor '%s': data_offsets [%llu, %llu] beyond the "
                          "%zu bytes of data (file truncated?)", path, name, (unsigned long long)b,
                          (unsigned long long)e, data_bytes);
    t->begin = (size_t)b;
    t->end = (size_t)e;
    if (t->end - t->begin != t->n_elems * tw_dtype_size(t->dtype))
        return tw_err_set(err, TW_E_SHAPE, "%s: tensor '%s': %zu bytes for %zu %s elements (want %zu)",
                          path, name, t->end - t->begin, t->n_elems, tw_dtype_name(t->dtype),
                          t->n_elems * tw_dtype_size(t->dtype));
    return TW_OK;
}

static tw_status parse_meta(tw_st_file *f, const json_t *m, tw_err *err) {
    if (!json_is_object(m))
        return tw_err_set(err, TW_E_FORMAT, "%s: __metadata__ is not an object", f->path);
    f->meta = calloc(json_object_size(m) + 1, sizeof *f->meta);
    TW_ASSERT(f->meta);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v) {
        if (!json_is_string(v))
            return tw_err_set(err, TW_E_FORMAT, "%s: __metadata__['%s'] is not a string", f->path, k);
        f->meta[f->n_meta].key = strdup(k);
        f->meta[f->n_meta].value = strdup(json_string_value(v));
        f->n_meta++;
    }
    return TW_OK;
}

tw_status tw_st_open(tw_st_file **out, const char *path, tw_err *err) {
    *out = NULL;
    tw_status st = TW_OK;
    char *hdr = NULL;
    json_t *root = NULL;
    tw_st_tensor **order = NULL;
    tw_st_file *f = calloc(1, sizeof *f);
    TW_ASSERT(f);
    f->path = strdup(path);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        st = tw_err_set(err, TW_E_IO, "%s: %s", path, strerror(errno));
        goto done;
    }
    f->fp = fp;
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = tw_err_set(err, TW_E_IO, "%s: not a regular file", path);
        goto done;
    }
    size_t file_bytes = (size_t)sb.st_size;
    unsigned char len8[8];
    if (file_bytes < 8 || fread(len8, 1, 8, fp) != 8) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: %zu bytes, too short for a safetensors header", path,
                        file_bytes);
        goto done;
    }
    uint64_t n_hdr = 0;
    for (int i = 7; i >= 0; i--) n_hdr = (n_hdr << 8) | len8[i];
    if (n_hdr > TW_ST_MAX_HEADER_BYTES || n_hdr > file_bytes - 8) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: header length %llu exceeds %s (%zu bytes)", path,
                        (unsigned long long)n_hdr,
                        n_hdr > TW_ST_MAX_HEADER_BYTES ? "the 100 MB limit" : "the file",
                        file_bytes - 8);
        goto done;
    }
    hdr = malloc(n_hdr + 1);
    TW_ASSERT(hdr);
    if (fread(hdr, 1, n_hdr, fp) != n_hdr) {
        st = tw_err_set(err, TW_E_IO, "%s: short read of the %llu-byte header", path,
                        (unsigned long long)n_hdr);
        goto done;
    }
    f->data_start = 8 + (size_t)n_hdr;
    f->data_bytes = file_bytes - f->data_start;
    json_error_t jerr;
    root = json_loadb(hdr, n_hdr, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: header is not a JSON object%s%s", path,
                        root ? "" : ": ", root ? "" : jerr.text);
        goto done;
    }
    f->tensors = calloc(json_object_size(root) + 1, sizeof *f->tensors);
    TW_ASSERT(f->tensors);
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if ((st = parse_meta(f, val, err)) != TW_OK) goto done;
            continue;
        }
        tw_st_tensor *t = &f->tensors[f->n_tensors];
        if ((st = parse_tensor(t, path, key, val, f->data_bytes, err)) != TW_OK) goto done;
        t->name = strdup(key);
        f->n_tensors++;
    }
    /* Sorted by offset, each tensor must start where the previous one ended and the last must end
     * at the end of the file: no overlap, no gap, no trailing bytes. */
    order = malloc((f->n_tensors + 1) * sizeof *order);
    TW_ASSERT(order);
    for (int i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, f->n_tensors, sizeof *order, by_begin);
    size_t at = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        if (order[i]->begin != at) {
            st = tw_err_set(err, TW_E_FORMAT, "%s: tensor '%s': data_offsets begin at %zu, expected %zu "
                            "(%s)", path, order[i]->name, order[i]->begin, at,
                            order[i]->begin < at ? "overlaps the previous tensor" : "gap before it");
            goto done;
        }
        at = order[i]->end;
    }
    if (at != f->data_bytes) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: tensors cover %zu bytes of data, the file holds %zu",
                        path, at, f->data_bytes);
        goto done;
    }
    *out = f;
    f = NULL;
done:
    free(order);
    json_decref(root);
    free(hdr);
    tw_st_close(f);
    return st;
}

const tw_st_tensor *tw_st_find(const tw_st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *tw_st_meta_get(const tw_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
    return NULL;
}

tw_status tw_st_read(tw_st_file *f, void *dst, const tw_st_tensor *t, tw_err *err) {
    size_t n = t->end - t->begin;
    if (n == 0) return TW_OK;
    if (fseeko(f->fp, (off_t)(f->data_start + t->begin), SEEK_SET) != 0 || fread(dst, 1, n, f->fp) != n)
        return tw_err_set(err, TW_E_IO, "%s: tensor '%s': short read of %zu bytes", f->path, t->name, n);
    return TW_OK;
}

/* ---- writing ----------------------------------------------------------------------------- */

typedef struct {
    char *name;
    tw_dtype dtype;
    int ndim;
    int64_t shape[TW_ST_MAX_DIMS];
    const void *data;
    size_t n_bytes;
} st_item;

struct tw_st_writer {
    st_item *items;
    int n_items, cap_items;
    json_t *meta;
};

tw_st_writer *tw_st_writer_init(void) {
    tw_st_writer *w = calloc(1, sizeof *w);
    TW_ASSERT(w);
    w->meta = json_object();
    TW_ASSERT(w->meta);
    return w;
}

void tw_st_writer_free(tw_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_items; i++) free(w->items[i].name);
    free(w->items);
    json_decref(w->meta);
    free(w);
}

void tw_st_writer_add(tw_st_writer *w, const char *name, tw_dtype dtype, int ndim,
                      const int64_t *shape, const void *data) {
    TW_ASSERT(ndim >= 0 && ndim <= TW_ST_MAX_DIMS);
    if (w->n_items == w->cap_items) {
        w->cap_items = w->cap_items ? 2 * w->cap_items : 64;
        w->items = realloc(w->items, w->cap_items * sizeof *w->items);
        TW_ASSERT(w->items);
    }
    st_item *it = &w->items[w->n_items++];
    it->name = strdup(name);
    it->dtype = dtype;
    it->ndim = ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        TW_ASSERT(shape[i] >= 0);
        it->shape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    it->data = data;
    it->n_bytes = n * tw_dtype_size(dtype);
}

void tw_st_writer_meta(tw_st_writer *w, const char *key, const char *value) {
    TW_ASSERT(json_object_set_new(w->meta, key, json_string(value)) == 0);
}

tw_status tw_st_writer_save(tw_st_writer *w, const char *path, tw_err *err) {
    tw_status st = TW_OK;
    char *text = NULL;
    json_t *root = json_object();
    TW_ASSERT(root);
    if (json_object_size(w->meta) > 0) json_object_set(root, "__metadata__", w->meta);
    size_t at = 0;
    for (int i = 0; i < w->n_items; i++) {
        const st_item *it = &w->items[i];
        if (!strcmp(it->name, "__metadata__") || json_object_get(root, it->name)) {
            st = tw_err_set(err, TW_E_FORMAT, "%s: tensor name '%s' used twice or reserved", path, it->name);
            goto done;
        }
        json_t *shape = json_array();
        for (int d = 0; d < it->ndim; d++) json_array_append_new(shape, json_integer(it->shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", tw_dtype_name(it->dtype), "shape", shape,
                              "data_offsets", (json_int_t)at, (json_int_t)(at + it->n_bytes));
        TW_ASSERT(e);
        json_object_set_new(root, it->name, e);
        at += it->n_bytes;
    }
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    TW_ASSERT(text);
    /* Pad the header with spaces so the data starts 8-byte aligned, as safetensors does. */
    size_t n_text = strlen(text), n_hdr = (n_text + 7) / 8 * 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)n_hdr >> (8 * i));

    static const char spaces[8] = "        ";
    int n_chunks = 3 + w->n_items;
    const void **chunks = malloc(sizeof *chunks * (size_t)n_chunks);
    size_t *sizes = malloc(sizeof *sizes * (size_t)n_chunks);
    TW_ASSERT(chunks && sizes);
    chunks[0] = len8, sizes[0] = 8;
    chunks[1] = text, sizes[1] = n_text;
    chunks[2] = spaces, sizes[2] = n_hdr - n_text;
    for (int i = 0; i < w->n_items; i++) chunks[3 + i] = w->items[i].data, sizes[3 + i] = w->items[i].n_bytes;
    st = tw_atomic_write(path, chunks, sizes, n_chunks, err);
    free(chunks);
    free(sizes);
done:
    free(text);
    json_decref(root);
    return st;
}
