/* Checkpoint save and load (checkpoint.h). The checksum is FNV-1a 64 over the state as it sits in
 * memory (parameters, buffers, counters, then each optimizer tensor), so it is checked against
 * what was actually loaded, whatever the tensors' order in the file, and then (format 3) over
 * every metadata pair but its own, sorted by key: an edited step, loader position or config fails. */
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* The checksum of the model state in P, then of each optimizer tensor (host copies made here):
 * from the live optimizer, or (optim NULL, a weights-only load) from the file itself. */
static uint64_t state_checksum(tw_params *P, tw_optim *optim, tw_st_file *f, tw_status *st, tw_err *err) {
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
    if (optim) {
        for (int i = 0; i < tw_optim_state_count(optim); i++) {
            TW_ASSERT(tw_optim_state_elems(optim, i) <= n);
            tw_optim_state_to_host(optim, i, host);
            h = fnv1a(h, host, tw_optim_state_elems(optim, i) * sizeof(float));
        }
    } else if (f) {
        /* The optimizer's tensors in the order the optimizer names them. */
        static const char *const names[] = {"optim.exp_avg", "optim.exp_avg_sq", "optim.momentum_buffer"};
        for (int i = 0; i < 3 && *st == TW_OK; i++) {
            const tw_st_tensor *t = tw_st_find(f, names[i]);
            if (!t) continue;
            float *buf = malloc(t->n_elems * sizeof(float) + 1);
            TW_ASSERT(buf);
            *st = tw_st_read(f, buf, t, err);
            if (*st == TW_OK) h = fnv1a(h, buf, t->n_elems * sizeof(float));
            free(buf);
        }
    }
    free(host);
    return h;
}

#define CHECKSUM_KEY "checksum_fnv1a64"

static int meta_by_key(const void *a, const void *b) {
    return strcmp(((const tw_st_meta *)a)->key, ((const tw_st_meta *)b)->key);
}

/* h continued over the metadata pairs (key and value, each with its NUL) in key order, the
 * checksum's own pair left out. Sorts pairs. */
static uint64_t meta_checksum(uint64_t h, tw_st_meta *pairs, int n) {
    qsort(pairs, (size_t)n, sizeof *pairs, meta_by_key);
    for (int i = 0; i < n; i++) {
        if (!strcmp(pairs[i].key, CHECKSUM_KEY)) continue;
        h = fnv1a(h, pairs[i].key, strlen(pairs[i].key) + 1);
        h = fnv1a(h, pairs[i].value, strlen(pairs[i].value) + 1);
    }
    return h;
}

void tw_ckpt_path(char *buf, size_t n_bytes, const char *dir, int64_t step) {
    snprintf(buf, n_bytes, "%s/ckpt-%08" PRId64 ".safetensors", dir, step);
}

tw_status tw_ckpt_save(const char *path, const tw_ckpt_content *c, const tw_ckpt_state *s,
                       const char *config_yaml, tw_err *err) {
    tw_st_writer *w = tw_st_writer_init();
    void *host = NULL;
    int n_opt = c->optim ? tw_optim_state_count(c->optim) : 0;
    float *opt_host[4] = {0};
    TW_ASSERT(n_opt <= 4);
    tw_params_save(c->P, w, "", "", &host);
    for (int i = 0; i < n_opt; i++) {
        size_t n = tw_optim_state_elems(c->optim, i);
        opt_host[i] = malloc(n * sizeof(float));
        TW_ASSERT(opt_host[i]);
        tw_optim_state_to_host(c->optim, i, opt_host[i]);
        int64_t shape[1] = {(int64_t)n};
        tw_st_writer_add(w, tw_optim_state_name(c->optim, i), TW_F32, 1, shape, opt_host[i]);
    }
    enum { N_NUM = 7 };
    char num[N_NUM][32];
    snprintf(num[0], sizeof num[0], "%" PRId64, s->step);
    snprintf(num[1], sizeof num[1], "%" PRId64, s->loader_epoch);
    snprintf(num[2], sizeof num[2], "%" PRId64, s->loader_step);
    snprintf(num[3], sizeof num[3], "%" PRIu64, s->seed);
    snprintf(num[4], sizeof num[4], "%.9g", s->loss);
    snprintf(num[5], sizeof num[5], "%.17g", s->best_score);
    snprintf(num[6], sizeof num[6], "%" PRId64, s->best_step);
    tw_st_meta meta[] = {
        {"format", TW_CKPT_FORMAT}, {"task", (char *)c->task}, {"sources", (char *)c->sources},
        {"step", num[0]}, {"loader_epoch", num[1]}, {"loader_step", num[2]}, {"seed", num[3]},
        {"rng", "philox4x32-10, key = seed, counter = (epoch, sample, view | transform << 8)"},
        {"loss", num[4]}, {"best_score", num[5]}, {"best_step", num[6]},
        {"config", (char *)(config_yaml ? config_yaml : "")},
    };
    int n_meta = (int)(sizeof meta / sizeof meta[0]);
    tw_status st = TW_OK;
    uint64_t h = meta_checksum(state_checksum(c->P, c->optim, NULL, &st, err), meta, n_meta);
    char sum[32];
    snprintf(sum, sizeof sum, "%016" PRIx64, h);
    for (int i = 0; i < n_meta; i++) tw_st_writer_meta(w, meta[i].key, meta[i].value);
    tw_st_writer_meta(w, CHECKSUM_KEY, sum);
    st = tw_st_writer_save(w, path, err);
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

/* The file's format, task and sources (a version-1 pre-training file is task barlow-twins, its
 * source in its configuration). *meta_summed: whether the checksum covers the metadata (format 3). */
static tw_status read_identity(const tw_st_file *f, char *task, size_t n_task, char *sources, size_t n_sources,
                               int *meta_summed, tw_err *err) {
    const char *fmt = tw_st_meta_get(f, "format");
    *meta_summed = fmt && !strcmp(fmt, TW_CKPT_FORMAT);
    if (fmt && !strcmp(fmt, TW_CKPT_FORMAT_2)) fmt = TW_CKPT_FORMAT;
    if (fmt && !strcmp(fmt, TW_CKPT_FORMAT_PRETRAIN_1)) {
        const char *cfg = tw_st_meta_get(f, "config"), *src = cfg ? strstr(cfg, "\n  source: ") : NULL;
        snprintf(task, n_task, "barlow-twins");
        snprintf(sources, n_sources, "%s", src && !strncmp(src + 11, "s1", 2) ? "s1" : "s2");
        return TW_OK;
    }
    if (!fmt || strcmp(fmt, TW_CKPT_FORMAT))
        return tw_err_set(err, TW_E_FORMAT, "%s: format '%s', want '%s' (not a twinfuse checkpoint?)", f->path,
                          fmt ? fmt : "(none)", TW_CKPT_FORMAT);
    const char *t = tw_st_meta_get(f, "task"), *s = tw_st_meta_get(f, "sources");
    if (!t || !s) return tw_err_set(err, TW_E_MISSING, "%s: no '%s' in the metadata", f->path, t ? "sources" : "task");
    snprintf(task, n_task, "%s", t);
    snprintf(sources, n_sources, "%s", s);
    return TW_OK;
}

tw_status tw_ckpt_info_read(tw_ckpt_info *out, const char *path, tw_err *err) {
    memset(out, 0, sizeof *out);
    tw_st_file *f = NULL;
    tw_status st = tw_st_open(&f, path, err);
    int meta_summed;
    if (st == TW_OK)
        st = read_identity(f, out->task, sizeof out->task, out->sources, sizeof out->sources, &meta_summed, err);
    if (st == TW_OK) st = meta_i64(&out->step, f, "step", err);
    if (st == TW_OK) {
        const char *cfg = tw_st_meta_get(f, "config");
        if (!cfg || !*cfg) st = tw_err_set(err, TW_E_MISSING, "%s: no configuration in the metadata", path);
        else out->config = strdup(cfg);
    }
    if (f) tw_st_close(f);
    return st;
}

void tw_ckpt_info_free(tw_ckpt_info *i) {
    free(i->config);
    i->config = NULL;
}

tw_status tw_ckpt_load(const char *path, const tw_ckpt_content *c, tw_ckpt_state *s, tw_err *err) {
    tw_st_file *f = NULL;
    float *host = NULL;
    tw_status st = tw_st_open(&f, path, err);
    if (st != TW_OK) goto done;
    char task[64], sources[32];
    int meta_summed;
    if ((st = read_identity(f, task, sizeof task, sources, sizeof sources, &meta_summed, err)) != TW_OK) goto done;
    if (strcmp(task, c->task) || strcmp(sources, c->sources)) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: a %s checkpoint of %s, this run is %s of %s", path, task, sources,
                        c->task, c->sources);
        goto done;
    }
    int64_t seed = 0;
    if ((st = meta_i64(&s->step, f, "step", err)) != TW_OK) goto done;
    if ((st = meta_i64(&s->loader_epoch, f, "loader_epoch", err)) != TW_OK) goto done;
    if ((st = meta_i64(&s->loader_step, f, "loader_step", err)) != TW_OK) goto done;
    if ((st = meta_i64(&seed, f, "seed", err)) != TW_OK) goto done;
    s->seed = (uint64_t)seed;
    const char *loss = tw_st_meta_get(f, "loss"), *best = tw_st_meta_get(f, "best_score");
    s->loss = loss ? strtod(loss, NULL) : 0.0;
    s->best_score = best ? strtod(best, NULL) : -1.0;
    s->best_step = 0;
    if (tw_st_meta_get(f, "best_step") && (st = meta_i64(&s->best_step, f, "best_step", err)) != TW_OK) goto done;
    tw_params_load_opts lo = {.file_prefix = "", .entry_prefix = "", .ignore_prefix = "optim.",
                              .allow_extra = 0};
    if ((st = tw_params_load(c->P, f, &lo, err)) != TW_OK) goto done;
    for (int i = 0; c->optim && i < tw_optim_state_count(c->optim); i++) {
        const char *name = tw_optim_state_name(c->optim, i);
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
        if ((st = tw_optim_state_from_host(c->optim, name, host, t->n_elems, err)) != TW_OK) {
            tw_err_prefix(err, "%s: ", path);
            goto done;
        }
    }
    if (c->optim) tw_optim_set_step_count(c->optim, s->step);
    const char *sum = tw_st_meta_get(f, CHECKSUM_KEY);
    char got[32];
    uint64_t h = state_checksum(c->P, c->optim, f, &st, err);
    if (st != TW_OK) goto done;
    if (meta_summed) h = meta_checksum(h, f->meta, f->n_meta);
    snprintf(got, sizeof got, "%016" PRIx64, h);
    if (!sum || strcmp(sum, got)) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: checksum %s, the loaded %s gives %s (corrupt or edited file)",
                        path, sum ? sum : "(none)", meta_summed ? "state and metadata" : "state", got);
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
    if (n > 1) qsort(list, n, sizeof *list, by_name_desc);   /* list is NULL when n is 0 */
    *paths = list;
    return n;
}

void tw_ckpt_list_free(char **paths, int n) {
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

int tw_ckpt_torn_remove(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        /* ckpt-<8 digits>.safetensors.tmp.<6 characters of mkstemp> */
        if (strlen(e->d_name) != 25 + 5 + 6 || strncmp(e->d_name, "ckpt-", 5) ||
            strncmp(e->d_name + 13, ".safetensors.tmp.", 17))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        n += unlink(path) == 0;
    }
    closedir(d);
    return n;
}
