/* Checkpoint save and load (checkpoint.h). The checksum is FNV-1a 64 over the state as it sits in
 * memory (parameters, buffers, counters, then each optimizer tensor), so it is checked against
 * what was actually loaded, whatever the tensors' order in the file. */
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/safetensors.h"

static uint64_t fnv1a(uint64_t h, const void *data, size_t n_bytes) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n_bytes; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The checksum of the model and optimizer state in m (host copies made here). */
static uint64_t state_checksum(tw_bt_model *m) {
    tw_params *P = &m->P;
    size_t n = P->n_params > P->n_buffers ? P->n_params : P->n_buffers;
    float *host = malloc((n ? n : 1) * sizeof(float));
    TW_ASSERT(host);
    uint64_t h = 0xcbf29ce484222325ull;
    tw_mem_to_host(P->be, host, P->params, P->n_params * sizeof(float));
    h = fnv1a(h, host, P->n_params * sizeof(float));
    if (P->n_buffers) {
        tw_mem_to_host(P->be, host, P->buffers, P->n_buffers * sizeof(float));
        h = fnv1a(h, host, P->n_buffers * sizeof(float));
    }
    h = fnv1a(h, P->counters, P->n_counters * sizeof(int64_t));
    for (int i = 0; i < tw_optim_state_count(m->optim); i++) {
        TW_ASSERT(tw_optim_state_elems(m->optim, i) <= n);
        tw_optim_state_to_host(m->optim, i, host);
        h = fnv1a(h, host, tw_optim_state_elems(m->optim, i) * sizeof(float));
    }
    free(host);
    return h;
}

void tw_ckpt_path(char *buf, size_t n_bytes, const char *dir, int64_t step) {
    snprintf(buf, n_bytes, "%s/ckpt-%08" PRId64 ".safetensors", dir, step);
}

tw_status tw_ckpt_save(const char *path, tw_bt_model *m, const tw_ckpt_state *s,
                       const char *config_yaml, tw_err *err) {
    tw_st_writer *w = tw_st_writer_init();
    void *host = NULL;
    int n_opt = tw_optim_state_count(m->optim);
    float *opt_host[4] = {0};
    TW_ASSERT(n_opt <= 4);
    tw_params_save(&m->P, w, "", "", &host);
    for (int i = 0; i < n_opt; i++) {
        size_t n = tw_optim_state_elems(m->optim, i);
        opt_host[i] = malloc(n * sizeof(float));
        TW_ASSERT(opt_host[i]);
        tw_optim_state_to_host(m->optim, i, opt_host[i]);
        int64_t shape[1] = {(int64_t)n};
        tw_st_writer_add(w, tw_optim_state_name(m->optim, i), TW_F32, 1, shape, opt_host[i]);
    }
    char buf[64];
    tw_st_writer_meta(w, "format", TW_CKPT_FORMAT);
    snprintf(buf, sizeof buf, "%" PRId64, s->step);
    tw_st_writer_meta(w, "step", buf);
    snprintf(buf, sizeof buf, "%" PRId64, s->loader_epoch);
    tw_st_writer_meta(w, "loader_epoch", buf);
    snprintf(buf, sizeof buf, "%" PRId64, s->loader_step);
    tw_st_writer_meta(w, "loader_step", buf);
    snprintf(buf, sizeof buf, "%" PRIu64, s->seed);
    tw_st_writer_meta(w, "seed", buf);
    tw_st_writer_meta(w, "rng", "philox4x32-10, key = seed, counter = (epoch, sample, view | transform << 8)");
    snprintf(buf, sizeof buf, "%.9g", s->loss);
    tw_st_writer_meta(w, "loss", buf);
    snprintf(buf, sizeof buf, "%016" PRIx64, state_checksum(m));
    tw_st_writer_meta(w, "checksum_fnv1a64", buf);
    tw_st_writer_meta(w, "config", config_yaml ? config_yaml : "");
    tw_status st = tw_st_writer_save(w, path, err);
    tw_st_writer_free(w);
    free(host);
    for (int i = 0; i < n_opt; i++) free(opt_host[i]);
    return st;
}

/* An integer metadata value, or a status naming the file and the key. */
static tw_status meta_i64(int64_t *out, const tw_st_file *f, const char *key, tw_err *err) {
    const char *v = tw_st_meta_get(f, key);
    char *end = NULL;
    if (!v) return tw_err_set(err, TW_E_MISSING, "%s: no '%s' in the metadata", f->path, key);
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < 0)
        return tw_err_set(err, TW_E_FORMAT, "%s: metadata '%s' is '%s', not a count", f->path, key, v);
    *out = x;
    return TW_OK;
}

tw_status tw_ckpt_load(const char *path, tw_bt_model *m, tw_ckpt_state *s, tw_err *err) {
    tw_st_file *f = NULL;
    float *host = NULL;
    tw_status st = tw_st_open(&f, path, err);
    if (st != TW_OK) goto done;
    const char *fmt = tw_st_meta_get(f, "format");
    if (!fmt || strcmp(fmt, TW_CKPT_FORMAT)) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: format '%s', want '%s'", path, fmt ? fmt : "(none)",
                        TW_CKPT_FORMAT);
        goto done;
    }
    int64_t seed = 0;
    if ((st = meta_i64(&s->step, f, "step", err)) != TW_OK) goto done;
    if ((st = meta_i64(&s->loader_epoch, f, "loader_epoch", err)) != TW_OK) goto done;
    if ((st = meta_i64(&s->loader_step, f, "loader_step", err)) != TW_OK) goto done;
    if ((st = meta_i64(&seed, f, "seed", err)) != TW_OK) goto done;
    s->seed = (uint64_t)seed;
    const char *loss = tw_st_meta_get(f, "loss");
    s->loss = loss ? strtod(loss, NULL) : 0.0;
    tw_params_load_opts lo = {.file_prefix = "", .entry_prefix = "", .ignore_prefix = "optim.",
                              .allow_extra = 0};
    if ((st = tw_params_load(&m->P, f, &lo, err)) != TW_OK) goto done;
    for (int i = 0; i < tw_optim_state_count(m->optim); i++) {
        const char *name = tw_optim_state_name(m->optim, i);
        const tw_st_tensor *t = tw_st_find(f, name);
        if (!t || t->dtype != TW_F32) {
            st = tw_err_set(err, TW_E_MISSING, "%s: no F32 optimizer state '%s' (another optimizer?)",
                            path, name);
            goto done;
        }
        free(host);
        host = malloc(t->n_elems * sizeof(float) + 1);
        TW_ASSERT(host);
        if ((st = tw_st_read(f, host, t, err)) != TW_OK) goto done;
        if ((st = tw_optim_state_from_host(m->optim, name, host, t->n_elems, err)) != TW_OK) {
            tw_err_prefix(err, "%s: ", path);
            goto done;
        }
    }
    tw_optim_set_step_count(m->optim, s->step);
    const char *sum = tw_st_meta_get(f, "checksum_fnv1a64");
    char got[32];
    snprintf(got, sizeof got, "%016" PRIx64, state_checksum(m));
    if (!sum || strcmp(sum, got)) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: checksum %s, the loaded state gives %s (corrupt file)",
                        path, sum ? sum : "(none)", got);
        goto done;
    }
done:
    free(host);
    if (f) tw_st_close(f);
    return st;
}

static int by_name_desc(const void *a, const void *b) {
    return strcmp(*(char *const *)b, *(char *const *)a);
}

int tw_ckpt_list(char ***paths, const char *dir) {
    *paths = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    char **list = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        /* ckpt-<8 digits>.safetensors: the fixed width makes name order step order. */
        if (len != 5 + 8 + 12 || strncmp(e->d_name, "ckpt-", 5) || strcmp(e->d_name + 13, ".safetensors"))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            list = realloc(list, cap * sizeof *list);
            TW_ASSERT(list);
        }
        size_t sz = strlen(dir) + len + 2;
        list[n] = malloc(sz);
        TW_ASSERT(list[n]);
        snprintf(list[n], sz, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    qsort(list, n, sizeof *list, by_name_desc);
    *paths = list;
    return n;
}

void tw_ckpt_list_free(char **paths, int n) {
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}
