/* The parameter arena (params.h): registration, the one allocation per buffer, and moving the named
 * tensors to and from safetensors files. */
#include "model/params.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* Each tensor starts on a 64-byte boundary (16 floats), which the backends' kernels prefer. */
#define TW_PARAM_ALIGN 16

void tw_params_init(tw_params *P, tw_backend *be) {
    memset(P, 0, sizeof *P);
    P->be = be;
}

void tw_params_free(tw_params *P) {
    if (P->be) {
        if (P->params) tw_mem_free(P->be, P->params);
        if (P->grads) tw_mem_free(P->be, P->grads);
        if (P->opt) tw_mem_free(P->be, P->opt);
        if (P->buffers) tw_mem_free(P->be, P->buffers);
    }
    free(P->counters);
    free(P->entries);
    free(P->segs);
    memset(P, 0, sizeof *P);
}

int tw_params_find(const tw_params *P, const char *name) {
    for (int i = 0; i < P->n_entries; i++)
        if (!strcmp(P->entries[i].name, name)) return i;
    return -1;
}

int tw_params_add(tw_params *P, const char *name, tw_param_kind kind, int ndim, const int *shape) {
    TW_ASSERT(!P->params && !P->buffers);   /* registration ends at tw_params_alloc */
    TW_ASSERT(strlen(name) < TW_PARAM_NAME_MAX && tw_params_find(P, name) < 0);
    TW_ASSERT(ndim >= 0 && ndim <= TW_PARAM_MAX_DIMS);
    if (P->n_entries == P->cap_entries) {
        P->cap_entries = P->cap_entries ? 2 * P->cap_entries : 128;
        P->entries = realloc(P->entries, P->cap_entries * sizeof *P->entries);
        TW_ASSERT(P->entries);
    }
    tw_param_entry *e = &P->entries[P->n_entries];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->kind = kind;
    e->ndim = ndim;
    e->n_elems = 1;
    for (int d = 0; d < ndim; d++) {
        TW_ASSERT(shape[d] > 0);
        e->shape[d] = shape[d];
        e->n_elems *= (size_t)shape[d];
    }
    e->is_1d = ndim <= 1;
    size_t *next = kind == TW_PARAM_TRAIN ? &P->n_params
                 : kind == TW_PARAM_BUFFER ? &P->n_buffers : &P->n_counters;
    e->offset = *next;
    *next += kind == TW_PARAM_COUNTER ? e->n_elems
                                      : (e->n_elems + TW_PARAM_ALIGN - 1) / TW_PARAM_ALIGN * TW_PARAM_ALIGN;
    return P->n_entries++;
}

void tw_params_alloc(tw_params *P, int n_opt_slots) {
    TW_ASSERT(!P->params && n_opt_slots >= 0);
    size_t np = P->n_params ? P->n_params : 1, nb = P->n_buffers ? P->n_buffers : 1;
    P->n_opt_slots = n_opt_slots;
    P->params = tw_mem_alloc(P->be, np * sizeof(float));
    P->grads = tw_mem_alloc(P->be, np * sizeof(float));
    P->buffers = tw_mem_alloc(P->be, nb * sizeof(float));
    tw_mem_zero(P->be, P->params, np * sizeof(float));
    tw_mem_zero(P->be, P->grads, np * sizeof(float));
    tw_mem_zero(P->be, P->buffers, nb * sizeof(float));
    if (n_opt_slots > 0) {
        P->opt = tw_mem_alloc(P->be, (size_t)n_opt_slots * np * sizeof(float));
        tw_mem_zero(P->be, P->opt, (size_t)n_opt_slots * np * sizeof(float));
    }
    P->counters = calloc(P->n_counters + 1, sizeof *P->counters);
    P->segs = calloc(P->n_entries + 1, sizeof *P->segs);
    TW_ASSERT(P->counters && P->segs);
    P->n_segs = 0;
    for (int i = 0; i < P->n_entries; i++) {
        const tw_param_entry *e = &P->entries[i];
        if (e->kind != TW_PARAM_TRAIN) continue;
        P->segs[P->n_segs++] = (tw_param_seg){e->offset, e->n_elems, e->is_1d};
    }
}

float *tw_params_ptr(const tw_params *P, int i) {
    TW_ASSERT(i >= 0 && i < P->n_entries && P->params);
    const tw_param_entry *e = &P->entries[i];
    TW_ASSERT(e->kind != TW_PARAM_COUNTER);
    return (e->kind == TW_PARAM_TRAIN ? P->params : P->buffers) + e->offset;
}

float *tw_params_grad(const tw_params *P, int i) {
    TW_ASSERT(i >= 0 && i < P->n_entries && P->grads && P->entries[i].kind == TW_PARAM_TRAIN);
    return P->grads + P->entries[i].offset;
}

int64_t *tw_params_counter(const tw_params *P, int i) {
    TW_ASSERT(i >= 0 && i < P->n_entries && P->counters && P->entries[i].kind == TW_PARAM_COUNTER);
    return P->counters + P->entries[i].offset;
}

static int starts_with(const char *s, const char *prefix) {
    return !strncmp(s, prefix, strlen(prefix));
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && at < n; d++)
        at += (size_t)snprintf(buf + at, n - at, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

/* Checks one file tensor against its entry and copies it into the arena. host: scratch of at
 * least the entry's f32 size (or 8 bytes for a counter). */
static tw_status load_one(tw_params *P, const tw_param_entry *e, tw_st_file *f,
                          const tw_st_tensor *t, void *host, tw_err *err) {
    int64_t want[TW_PARAM_MAX_DIMS];
    for (int d = 0; d < e->ndim; d++) want[d] = e->shape[d];
    int shape_ok;
    if (e->kind == TW_PARAM_COUNTER)   /* torch saves num_batches_tracked as a 0-dim tensor */
        shape_ok = t->n_elems == 1 && t->ndim <= 1;
    else {
        shape_ok = t->ndim == e->ndim;
        for (int d = 0; shape_ok && d < e->ndim; d++) shape_ok = t->shape[d] == want[d];
    }
    if (!shape_ok) {
        char a[128], b[128];
        shape_str(a, sizeof a, t->ndim, t->shape);
        shape_str(b, sizeof b, e->ndim, want);
        return tw_err_set(err, TW_E_SHAPE, "%s: tensor '%s' has shape %s, the model wants %s",
                          f->path, t->name, a, b);
    }
    if (e->kind == TW_PARAM_COUNTER) {
        if (t->dtype != TW_I64)
            return tw_err_set(err, TW_E_DTYPE, "%s: tensor '%s' is %s, want I64", f->path, t->name,
                              tw_dtype_name(t->dtype));
        tw_status st = tw_st_read(f, host, t, err);
        if (st == TW_OK) memcpy(tw_params_counter(P, (int)(e - P->entries)), host, 8);
        return st;
    }
    if (t->dtype != TW_F32 && t->dtype != TW_BF16)
        return tw_err_set(err, TW_E_DTYPE, "%s: tensor '%s' is %s, want F32 (or BF16)", f->path,
                          t->name, tw_dtype_name(t->dtype));
    tw_status st = tw_st_read(f, host, t, err);
    if (st != TW_OK) return st;
    float *h = host;
    if (t->dtype == TW_BF16) {   /* widen in place, from the end so nothing is overwritten early */
        const uint16_t *b = host;
        for (size_t i = e->n_elems; i-- > 0;) h[i] = tw_bf16_to_f32(b[i]);
    }
    tw_mem_from_host(P->be, tw_params_ptr(P, (int)(e - P->entries)), h, e->n_elems * sizeof(float));
    return TW_OK;
}

tw_status tw_params_load(tw_params *P, tw_st_file *f, const tw_params_load_opts *o, tw_err *err) {
    TW_ASSERT(P->params);
    tw_status st = TW_OK;
    const char *fp = o->file_prefix ? o->file_prefix : "", *ep = o->entry_prefix ? o->entry_prefix : "";
    size_t max_elems = 2;
    for (int i = 0; i < P->n_entries; i++)
        if (P->entries[i].n_elems > max_elems) max_elems = P->entries[i].n_elems;
    float *host = malloc(max_elems * sizeof(float));
    TW_ASSERT(host);
    char name[2 * TW_PARAM_NAME_MAX + 256];
    /* Every selected entry from the file. */
    for (int i = 0; i < P->n_entries; i++) {
        const tw_param_entry *e = &P->entries[i];
        if (!starts_with(e->name, ep)) continue;
        snprintf(name, sizeof name, "%s%s", fp, e->name + strlen(ep));
        const tw_st_tensor *t = tw_st_find(f, name);
        if (!t) {
            st = tw_err_set(err, TW_E_MISSING, "%s: tensor '%s' is missing", f->path, name);
            goto done;
        }
        if ((st = load_one(P, e, f, t, host, err)) != TW_OK) goto done;
    }
    /* Every file tensor has an entry, unless it is ignored. */
    for (int j = 0; j < f->n_tensors; j++) {
        const char *tn = f->tensors[j].name;
        if (o->ignore_prefix && starts_with(tn, o->ignore_prefix)) continue;
        if (!starts_with(tn, fp)) {
            if (o->allow_extra) continue;
            st = tw_err_set(err, TW_E_UNKNOWN, "%s: unexpected tensor '%s' (outside '%s')", f->path, tn, fp);
            goto done;
        }
        snprintf(name, sizeof name, "%s%s", ep, tn + strlen(fp));
        if (tw_params_find(P, name) < 0) {
            st = tw_err_set(err, TW_E_UNKNOWN, "%s: unexpected tensor '%s' (the model has no '%s')",
                            f->path, tn, name);
            goto done;
        }
    }
done:
    free(host);
    return st;
}

void tw_params_save(tw_params *P, tw_st_writer *w, const char *entry_prefix, const char *file_prefix,
                    void **host) {
    TW_ASSERT(P->params);
    const char *ep = entry_prefix ? entry_prefix : "", *fp = file_prefix ? file_prefix : "";
    size_t np = P->n_params, nb = P->n_buffers;
    char *h = malloc((np + nb) * sizeof(float) + (P->n_counters + 1) * sizeof(int64_t));
    TW_ASSERT(h);
    float *hp = (float *)h, *hb = hp + np;
    int64_t *hc = (int64_t *)(hb + nb);
    if (np) tw_mem_to_host(P->be, hp, P->params, np * sizeof(float));
    if (nb) tw_mem_to_host(P->be, hb, P->buffers, nb * sizeof(float));
    memcpy(hc, P->counters, P->n_counters * sizeof(int64_t));
    char name[2 * TW_PARAM_NAME_MAX];
    for (int i = 0; i < P->n_entries; i++) {
        const tw_param_entry *e = &P->entries[i];
        if (!starts_with(e->name, ep)) continue;
        snprintf(name, sizeof name, "%s%s", fp, e->name + strlen(ep));
        int64_t shape[TW_PARAM_MAX_DIMS];
        for (int d = 0; d < e->ndim; d++) shape[d] = e->shape[d];
        if (e->kind == TW_PARAM_COUNTER)
            tw_st_writer_add(w, name, TW_I64, 0, shape, hc + e->offset);
        else
            tw_st_writer_add(w, name, TW_F32, e->ndim, shape,
                             (e->kind == TW_PARAM_TRAIN ? hp : hb) + e->offset);
    }
    *host = h;
}
