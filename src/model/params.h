/* The parameter arena: every module (backbones, projector, heads) registers its named tensors with
 * one builder, then one allocation gives the flat f32 buffers in backend memory: parameters,
 * gradients (one all-reduce for everything), optimizer state, and the non-trained buffers (BN
 * running statistics). Counters such as num_batches_tracked stay on the host. Checkpoint files
 * (safetensors) are read and written from the table here; what a checkpoint means is train/'s. */
#ifndef TW_PARAMS_H
#define TW_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/safetensors.h"
#include "core/status.h"

#define TW_PARAM_NAME_MAX 96
#define TW_PARAM_MAX_DIMS 4

typedef enum {
    TW_PARAM_TRAIN,    /* f32 in params/grads/optimizer state; has a tw_param_seg */
    TW_PARAM_BUFFER,   /* f32 in buffers (running mean/var): saved, not trained, not all-reduced */
    TW_PARAM_COUNTER,  /* one host int64 (num_batches_tracked), saved as a 0-dim I64 tensor */
} tw_param_kind;

typedef struct tw_param_entry {
    char name[TW_PARAM_NAME_MAX];
    tw_param_kind kind;
    int ndim;
    int shape[TW_PARAM_MAX_DIMS];
    size_t offset;     /* elements into params (TRAIN), buffers (BUFFER) or counters (COUNTER) */
    size_t n_elems;
    int is_1d;         /* biases and BN affine: no weight decay, no LARS adaptation */
} tw_param_entry;

typedef struct tw_params {
    tw_backend *be;
    tw_param_entry *entries;
    int n_entries, cap_entries;
    size_t n_params, n_buffers, n_counters;   /* elements, including 64-byte alignment gaps */
    int n_opt_slots;
    /* backend memory, after tw_params_alloc; the gaps between tensors are zero */
    float *params;     /* [n_params] */
    float *grads;      /* [n_params] */
    float *opt;        /* [n_opt_slots * n_params]: slot s at opt + s * n_params */
    float *buffers;    /* [n_buffers] */
    int64_t *counters; /* host, [n_counters] */
    tw_param_seg *segs;  /* one per TRAIN entry, in registration order */
    int n_segs;
} tw_params;

void tw_params_init(tw_params *P, tw_backend *be);
void tw_params_free(tw_params *P);
/* Registers a tensor (before tw_params_alloc) and returns its index. The name must be unique. */
int tw_params_add(tw_params *P, const char *name, tw_param_kind kind, int ndim, const int *shape);
/* One allocation per buffer; params, grads, optimizer state and buffers start at zero (modules
 * then initialise their own tensors). n_opt_slots: 2 for Adam, 1 for LARS/SGD, 0 for inference. */
void tw_params_alloc(tw_params *P, int n_opt_slots);

/* Backend pointers of entry i (TRAIN: params/grads; BUFFER: buffers). */
float *tw_params_ptr(const tw_params *P, int i);
float *tw_params_grad(const tw_params *P, int i);
int64_t *tw_params_counter(const tw_params *P, int i);
int tw_params_find(const tw_params *P, const char *name);   /* -1 when absent */

/* How tw_params_load matches file tensors to entries. */
typedef struct tw_params_load_opts {
    const char *file_prefix;    /* file name = file_prefix + (entry name without entry_prefix) */
    const char *entry_prefix;   /* only entries whose names start with this are loaded ("" = all) */
    const char *ignore_prefix;  /* file tensors starting with this are skipped (e.g. "fc."); NULL: none */
    int allow_extra;            /* 1: other file tensors outside file_prefix are not an error */
} tw_params_load_opts;

/* Loads the selected entries from an open file: every one must be present with its shape and
 * dtype (F32 for tensors, I64 or any integer for counters; BF16/F16 tensors are widened); a file
 * tensor under file_prefix without an entry is an error unless it matches ignore_prefix. Errors
 * name the file and the tensor. */
tw_status tw_params_load(tw_params *P, tw_st_file *f, const tw_params_load_opts *o, tw_err *err);

/* Adds the selected entries (names rewritten entry_prefix -> file_prefix) to a writer. The host
 * copies live in *host (one malloc, free() it after tw_st_writer_save). */
void tw_params_save(tw_params *P, tw_st_writer *w, const char *entry_prefix, const char *file_prefix,
                    void **host);

#endif
