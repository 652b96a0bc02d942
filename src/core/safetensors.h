/* safetensors files (https://github.com/huggingface/safetensors): an 8-byte little-endian header
 * length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the
 * raw tensors. Reading validates the whole header before any data is touched; writing is atomic
 * (temp file in the same directory, fsync, rename, fsync of the directory). Host memory only:
 * moving tensors to and from a backend is the caller's (model/params.c). */
#ifndef TW_SAFETENSORS_H
#define TW_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

#define TW_ST_MAX_DIMS 8
/* safetensors' own reader refuses headers above 100 MB; so do we, before allocating. */
#define TW_ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)

typedef struct tw_st_tensor {
    char *name;
    tw_dtype dtype;
    int ndim;
    int64_t shape[TW_ST_MAX_DIMS];
    size_t n_elems;
    size_t begin, end;        /* byte offsets relative to the start of the data section */
} tw_st_tensor;

typedef struct tw_st_meta {
    char *key, *value;
} tw_st_meta;

/* An open file whose header has been read and validated. */
typedef struct tw_st_file {
    char *path;
    void *fp;                 /* FILE * */
    size_t data_start;        /* 8 + header length */
    size_t data_bytes;
    tw_st_tensor *tensors;
    int n_tensors;
    tw_st_meta *meta;
    int n_meta;
} tw_st_file;

/* Opens path and validates: header length within the file and TW_ST_MAX_HEADER_BYTES, JSON
 * object, every entry with a known dtype, a non-negative shape and data_offsets whose size matches
 * the shape; offsets in range, non-overlapping and covering the data section exactly; metadata a
 * string map. Any failure names the file (and the tensor). */
tw_status tw_st_open(tw_st_file **out, const char *path, tw_err *err);
void tw_st_close(tw_st_file *f);
/* NULL when absent. */
const tw_st_tensor *tw_st_find(const tw_st_file *f, const char *name);
const char *tw_st_meta_get(const tw_st_file *f, const char *key);
/* Copies the tensor's bytes (exactly t->end - t->begin of them) into dst. */
tw_status tw_st_read(tw_st_file *f, void *dst, const tw_st_tensor *t, tw_err *err);

/* A file being assembled: tensors refer to caller-owned host memory, which must stay valid until
 * tw_st_writer_save returns. Names must be unique (checked at save). */
typedef struct tw_st_writer tw_st_writer;

tw_st_writer *tw_st_writer_init(void);
void tw_st_writer_free(tw_st_writer *w);
void tw_st_writer_add(tw_st_writer *w, const char *name, tw_dtype dtype, int ndim,
                      const int64_t *shape, const void *data);
void tw_st_writer_meta(tw_st_writer *w, const char *key, const char *value);
/* Writes path atomically: the previous file (if any) survives any failure. */
tw_status tw_st_writer_save(tw_st_writer *w, const char *path, tw_err *err);

/* "F32" -> TW_F32 etc.; returns 0 for names twinfuse does not know. */
int tw_st_dtype_parse(tw_dtype *out, const char *name);

#endif
