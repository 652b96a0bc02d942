/* The prefetching loader (loader.h). A producer thread fills a ring of batch slots in sequence
 * order; the caller takes them in the same order. Slot k holds the batch numbered k from the
 * start position, so the stream of batches is a pure function of the options. */
#include "data/loader.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "data/sampler.h"

typedef struct slot {
    tw_batch b;
    tw_status st;
    tw_err err;
} slot;

struct tw_loader {
    tw_loader_opts o;
    char **paths;               /* [n_shards] one allocation (tw_shard_list) */
    int n_shards;
    int64_t *shard_start;       /* [n_shards + 1] first split index of each shard: the index, O(shards) */
    /* The open shards: at most max_open, least recently used closed first; the producer's (and
     * make_subset's, before it starts). */
    struct open_shard { tw_shard *sh; int idx; uint64_t used; } *open;
    /* Files are opened and closed on the caller's thread only: the Debian HDF5 is the Open MPI
     * build, and a file opened or closed on the loader's thread while the caller is inside an MPI
     * collective (MPI runs FUNNELED) broke 2-rank training runs (pretrain.run). The loader's
     * thread posts a request under mu; tw_loader_next (or init) serves it. */
    int req_idx;                /* the shard to open, -1: none */
    tw_shard *req_close;        /* the shard to close first (the least recently used), or NULL */
    int req_done;
    tw_shard *req_sh;
    tw_status req_st;
    tw_err req_err;
    uint8_t *validated;         /* [n_shards] opened in full once: re-opened with tw_shard_reopen */
    int n_open, max_open, most_open;
    uint64_t clock;
    int64_t *subset;            /* [n_items] split indices of the label-fraction subset, or NULL */
    int64_t n_items;
    tw_sampler sampler;
    tw_shard_norm norm;
    float scale[TW_N_BANDS], shift[TW_N_BANDS];   /* y = x * scale + shift = (x - mean) / std */
    int h, w, out_h, out_w, local_batch, c_s2;
    slot *slots;
    int n_slots;
    /* producer scratch: one raw sample and its normalised planes */
    uint16_t *raw_s2;           /* [12, h, w] */
    float *raw_s1;              /* [2, h, w] */
    float *in_s1, *in_s2;       /* [2, h, w], [c_s2, h, w] */
    int64_t *items;             /* [local_batch] */
    /* shared with the producer, under mu */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t produced;           /* batches 0 .. produced-1 are in their slots */
    int64_t released;           /* batches below this are free to overwrite */
    int stop;
    int64_t filling;            /* the batch the producer is filling (its thread only) */
    tw_fatal_catch caught;      /* its thread's tw_fatal (not on its stack: longjmp's rules) */
    /* the caller's side */
    int64_t next_seq;           /* the batch tw_loader_next returns next */
};

void tw_loader_opts_default(tw_loader_opts *o) {
    *o = (tw_loader_opts){0};
    o->global_batch = 32;
    o->world = 1;
    o->shuffle = 1;
    o->drop_last = 1;
    o->use_s1 = 1;
    o->n_s2_bands = TW_S2_BANDS;
    for (int b = 0; b < TW_S2_BANDS; b++) o->s2_bands[b] = b;
    o->label_fraction = 1.0;
    o->prefetch = 2;
    o->n_views = 1;
    o->n_classes = TW_N_CLASSES;
}

tw_status tw_loader_bands_parse(tw_loader_opts *o, const char *spec, tw_err *err) {
    if (!strcmp(spec, "all")) {
        o->n_s2_bands = TW_S2_BANDS;
        for (int b = 0; b < TW_S2_BANDS; b++) o->s2_bands[b] = b;
        return TW_OK;
    }
    if (!strcmp(spec, "rgb")) spec = "B04,B03,B02";
    if (!strcmp(spec, "none")) {
        o->n_s2_bands = 0;
        return TW_OK;
    }
    int n = 0;
    for (const char *p = spec; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int found = -1;
        for (int b = 0; b < TW_S2_BANDS; b++)
            if (strlen(tw_shard_s2_bands[b]) == len && !strncmp(p, tw_shard_s2_bands[b], len)) found = b;
        if (found < 0 || n == TW_S2_BANDS)
            return tw_err_set(err, TW_E_UNKNOWN, "S2 band list '%s': '%.*s' is not one of B01..B12, B8A (or too many)",
                              spec, (int)len, p);
        o->s2_bands[n++] = found;
        p += len + (end != NULL);
    }
    if (n == 0) return tw_err_set(err, TW_E_USAGE, "S2 band list '%s' is empty", spec);
    o->n_s2_bands = n;
    return TW_OK;
}

static void seq_position(const tw_loader *ld, int64_t seq, int64_t *epoch, int64_t *step) {
    int64_t spe = ld->sampler.steps_per_epoch;
    int64_t abs = ld->o.start_epoch * spe + ld->o.start_step + seq;
    *epoch = abs / spe;
    *step = abs % spe;
}

/* Normalises one plane into out and returns the first non-finite pixel, or -1. */
static int64_t norm_plane(float *out, const uint16_t *u16, const float *f32, size_t n_px, float scale, float shift) {
    float sum = 0;
    for (size_t i = 0; i < n_px; i++) {
        float y = (u16 ? (float)u16[i] : f32[i]) * scale + shift;
        out[i] = y;
        sum += y;
    }
    if (isfinite(sum)) return -1;
    for (size_t i = 0; i < n_px; i++)
        if (!isfinite(out[i])) return (int64_t)i;
    return -1;   /* the sum overflowed though every pixel is finite */
}

/* Opens shard idx (closing `evict` first), on the caller's thread. */
static tw_status open_now(tw_loader *ld, int idx, tw_shard *evict, tw_shard **out, tw_err *err) {
    if (evict) tw_shard_close(evict);
    tw_status st = ld->validated[idx] ? tw_shard_reopen(out, ld->paths[idx], err) : tw_shard_open(out, ld->paths[idx], err);
    if (st) return st;
    ld->validated[idx] = 1;
    int64_t want = ld->shard_start[idx + 1] - ld->shard_start[idx];
    if (tw_shard_n(*out) != want) {
        st = tw_err_set(err, TW_E_FORMAT, "%s: %lld samples, but its attribute 'n_samples' said %lld when the loader "
                        "started (rewritten since?)", ld->paths[idx], (long long)tw_shard_n(*out), (long long)want);
        tw_shard_close(*out);
        *out = NULL;
    }
    return st;
}

/* The caller's side of an open request (under mu): serve it with mu released. */
static void serve_open(tw_loader *ld) {
    int idx = ld->req_idx;
    tw_shard *evict = ld->req_close;
    pthread_mutex_unlock(&ld->mu);
    tw_shard *sh = NULL;
    tw_err e = {0};
    tw_status st = open_now(ld, idx, evict, &sh, &e);
    pthread_mutex_lock(&ld->mu);
    ld->req_sh = sh;
    ld->req_st = st;
    ld->req_err = e;
    ld->req_done = 1;
    ld->req_idx = -1;
    pthread_cond_broadcast(&ld->cv);
}

/* Shard idx, opened (and validated) on first use; the least recently used one is closed when
 * max_open are open. on_caller: called from the caller's thread (init); else from the loader's,
 * which asks the caller's thread to do the opening and closing. */
static tw_status get_shard(tw_loader *ld, int idx, tw_shard **out, int on_caller, tw_err *err) {
    int lru = 0;
    for (int k = 0; k < ld->n_open; k++) {
        if (ld->open[k].idx == idx) {
            ld->open[k].used = ++ld->clock;
            *out = ld->open[k].sh;
            return TW_OK;
        }
        if (ld->open[k].used < ld->open[lru].used) lru = k;
    }
    int k = ld->n_open < ld->max_open ? ld->n_open : lru;
    tw_shard *evict = k < ld->n_open ? ld->open[k].sh : NULL, *sh = NULL;
    tw_status st;
    if (on_caller) {
        st = open_now(ld, idx, evict, &sh, err);
    } else {
        pthread_mutex_lock(&ld->mu);
        ld->req_idx = idx;
        ld->req_close = evict;
        ld->req_done = 0;
        pthread_cond_broadcast(&ld->cv);
        while (!ld->req_done && !ld->stop) pthread_cond_wait(&ld->cv, &ld->mu);
        int done = ld->req_done;
        st = done ? ld->req_st : tw_err_set(err, TW_E_INTERNAL, "loader: stopped while shard %s was being opened",
                                            ld->paths[idx]);
        if (done) {
            sh = ld->req_sh;
            if (st && err) *err = ld->req_err;
        }
        ld->req_idx = -1;
        pthread_mutex_unlock(&ld->mu);
        if (!done) return st;   /* the evicted shard stays in the cache: tw_loader_free closes it */
    }
    /* The evicted shard is closed (even when the open failed): its slot is free either way. */
    if (evict) {
        ld->open[k] = ld->open[--ld->n_open];
        k = ld->n_open;
    }
    if (st) return st;
    ld->open[k] = (struct open_shard){sh, idx, ++ld->clock};
    ld->n_open++;
    if (ld->n_open > ld->most_open) ld->most_open = ld->n_open;
    *out = sh;
    return TW_OK;
}

/* The counter word that keeps the seasonal draw's Philox stream apart from the augmentations'
 * (which use view 0 and 1). */
#define SEASON_STREAM 0x5EA5u

void tw_loader_seasons(int t[2], int n_times, uint64_t seed, int64_t epoch, int64_t sample) {
    t[0] = t[1] = 0;
    if (n_times < 2) return;
    tw_rng r;
    tw_rng_init(&r, seed, (uint32_t)epoch, (uint32_t)sample, SEASON_STREAM);
    t[0] = (int)tw_rng_below(&r, (uint32_t)n_times);
    t[1] = (t[0] + 1 + (int)tw_rng_below(&r, (uint32_t)n_times - 1)) % n_times;   /* another one */
}

/* Normalises the raw planes of one acquisition into in; a non-finite S1 value is named. */
static tw_status normalise(tw_loader *ld, const tw_view *in, tw_shard *sh, int64_t row, int t, tw_err *err) {
    size_t n_px = (size_t)ld->h * ld->w;
    for (int c = 0; c < in->c_s1; c++) {
        int64_t bad = norm_plane(in->s1 + c * n_px, NULL, ld->raw_s1 + c * n_px, n_px, ld->scale[TW_S2_BANDS + c],
                                 ld->shift[TW_S2_BANDS + c]);
        if (bad >= 0) {
            char name[TW_SHARD_NAME_BYTES] = "?";
            tw_shard_read(sh, row, NULL, NULL, NULL, NULL, name, NULL, NULL, NULL);
            return tw_err_set(err, TW_E_NONFINITE, "%s: sample %lld (%s)%s: non-finite s1 %s at pixel (%lld, %lld)",
                              tw_shard_path(sh), (long long)row, name, t ? ", a later acquisition" : "",
                              tw_shard_s1_bands[c], (long long)(bad / ld->w), (long long)(bad % ld->w));
        }
    }
    for (int c = 0; c < in->c_s2; c++) {
        int band = ld->o.s2_bands[c];
        norm_plane(in->s2 + c * n_px, ld->raw_s2 + band * n_px, NULL, n_px, ld->scale[band], ld->shift[band]);
    }
    return TW_OK;
}

/* Reads, normalises and augments sample `item` into position i of slot s. */
static tw_status fill_sample(tw_loader *ld, slot *s, int i, int64_t idx, int64_t epoch, tw_err *err) {
    tw_batch *b = &s->b;
    int lo = 0, hi = ld->n_shards;   /* the shard holding split index idx: binary search */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (ld->shard_start[mid] <= idx) lo = mid; else hi = mid;
    }
    tw_shard *sh;
    tw_status st = get_shard(ld, lo, &sh, 0, err);
    if (st) return st;
    int64_t row = idx - ld->shard_start[lo];
    uint8_t labels[TW_N_CLASSES43];
    int k = ld->o.n_classes, l43 = k == TW_N_CLASSES43;
    st = tw_shard_read(sh, row, ld->c_s2 ? ld->raw_s2 : NULL, ld->o.use_s1 ? ld->raw_s1 : NULL,
                       l43 ? NULL : labels, l43 ? labels : NULL, NULL, NULL, &b->flags[i], err);
    if (st) return st;
    size_t n_px = (size_t)ld->h * ld->w, n_out = (size_t)ld->out_h * ld->out_w;
    int direct = !ld->o.augment && ld->o.n_views == 1;   /* normalise straight into the batch */
    tw_view in = {.c_s1 = b->c_s1, .c_s2 = b->c_s2, .h = ld->h, .w = ld->w};
    in.s1 = !b->c_s1 ? NULL : direct ? b->s1[0] + (size_t)i * b->c_s1 * n_px : ld->in_s1;
    in.s2 = !b->c_s2 ? NULL : direct ? b->s2[0] + (size_t)i * b->c_s2 * n_px : ld->in_s2;
    if ((st = normalise(ld, &in, sh, row, 0, err))) return st;
    int seasons[2] = {0, 0};
    if (ld->o.views == TW_VIEWS_SEASONAL) {
        tw_shard_geo g;
        if ((st = tw_shard_read_geo(sh, row, &g, err))) return st;
        tw_loader_seasons(seasons, g.n_times, ld->o.seed, epoch, idx);
    }
    if (!direct) {
        for (int v = 0; v < b->n_views; v++) {
            int t = seasons[v < 2 ? v : 1], prev = v ? seasons[v - 1] : 0;
            if (t != prev) {   /* this view's acquisition: read and normalise it in place of the last */
                if ((st = tw_shard_read_time(sh, row, t, ld->c_s2 ? ld->raw_s2 : NULL, NULL,
                                             ld->o.use_s1 ? ld->raw_s1 : NULL, err)) ||
                    (st = normalise(ld, &in, sh, row, t, err)))
                    return st;
            }
            tw_view out = {.c_s1 = b->c_s1, .c_s2 = b->c_s2, .h = ld->out_h, .w = ld->out_w};
            out.s1 = b->c_s1 ? b->s1[v] + (size_t)i * b->c_s1 * n_out : NULL;
            out.s2 = b->c_s2 ? b->s2[v] + (size_t)i * b->c_s2 * n_out : NULL;
            if (ld->o.augment) {
                st = ld->o.augment(ld->o.augment_user, &out, &in, ld->o.seed, epoch, idx, v, err);
                if (st) return tw_err_prefix(err, "augmentation of sample %lld, view %d: ", (long long)idx, v);
            } else {
                if (out.s1) memcpy(out.s1, in.s1, (size_t)b->c_s1 * n_px * sizeof(float));
                if (out.s2) memcpy(out.s2, in.s2, (size_t)b->c_s2 * n_px * sizeof(float));
            }
        }
    }
    for (int j = 0; j < k; j++) b->labels[(size_t)i * k + j] = labels[j] ? 1.0f : 0.0f;
    b->index[i] = idx;
    return TW_OK;
}

static void fill_slot(tw_loader *ld, slot *s, int64_t seq) {
    tw_batch *b = &s->b;
    seq_position(ld, seq, &b->epoch, &b->step);
    b->n = (int)tw_sampler_slice(&ld->sampler, ld->items, b->epoch, b->step);
    s->st = TW_OK;
    for (int i = 0; i < b->n && !s->st; i++) {
        int64_t idx = ld->subset ? ld->subset[ld->items[i]] : ld->items[i];
        s->st = fill_sample(ld, s, i, idx, b->epoch, &s->err);
    }
}

/* Publishes batch seq (filled, or failed) to the caller. */
static void publish(tw_loader *ld, int64_t seq) {
    pthread_mutex_lock(&ld->mu);
    ld->produced = seq + 1;
    pthread_cond_broadcast(&ld->cv);
    pthread_mutex_unlock(&ld->mu);
}

static void produce(tw_loader *ld) {
    for (int64_t seq = 0;; seq++) {
        pthread_mutex_lock(&ld->mu);
        while (!ld->stop && seq - ld->released >= ld->n_slots) pthread_cond_wait(&ld->cv, &ld->mu);
        int stop = ld->stop;
        pthread_mutex_unlock(&ld->mu);
        if (stop) break;
        slot *s = &ld->slots[seq % ld->n_slots];
        ld->filling = seq;
        fill_slot(ld, s, seq);
        publish(ld, seq);
        if (s->st) break;   /* the stream ends at its first error */
    }
}

/* The thread. A TW_ASSERT or library failure while filling a batch (a bug, or a file that HDF5
 * cannot read) must not abort from here: it becomes that batch's status, which the main thread
 * gets from tw_loader_next and ends the job with, on every rank. (Nothing that can reach
 * tw_fatal runs under tw_h5_lock or mu, so the jump leaves no lock held.) */
static void *producer(void *arg) {
    tw_loader *ld = arg;
    if (setjmp(ld->caught.jb) == 0) {
        tw_fatal_catch_set(&ld->caught);
        produce(ld);
    } else {
        slot *s = &ld->slots[ld->filling % ld->n_slots];
        s->st = tw_err_set(&s->err, TW_E_INTERNAL, "%s split '%s', loader thread: %s", ld->o.dir, ld->o.split,
                           ld->caught.msg);
        publish(ld, ld->filling);
    }
    tw_fatal_catch_set(NULL);
    return NULL;
}

/* Lists the split and peeks at every shard (tw_shard_peek: attributes and sizes, no handle kept):
 * the index, the normalisation and the checks every shard must pass before any is read. */
static tw_status open_shards(tw_loader *ld, tw_err *err) {
    int n = 0;
    tw_status st = tw_shard_list(&ld->paths, &n, ld->o.dir, ld->o.split, err);
    if (st) return st;
    char **paths = ld->paths;
    if (n == 0)
        return tw_err_set(err, TW_E_MISSING, "%s: no shards of split '%s' (%s-NNNNN.h5)", ld->o.dir, ld->o.split, ld->o.split);
    ld->max_open = ld->o.max_open > 0 ? ld->o.max_open : TW_LOADER_MAX_OPEN;
    ld->open = calloc((size_t)ld->max_open, sizeof *ld->open);
    ld->shard_start = calloc((size_t)n + 1, sizeof *ld->shard_start);
    ld->validated = calloc((size_t)n, 1);
    if (!ld->open || !ld->shard_start || !ld->validated) return tw_err_set(err, TW_E_NOMEM, "%s: %d shards", ld->o.dir, n);
    for (int i = 0; i < n; i++) {
        tw_shard_info info;
        if ((st = tw_shard_peek(&info, paths[i], err))) return st;
        ld->n_shards = i + 1;
        if (!info.has_norm)
            return tw_err_set(err, TW_E_MISSING,
                              "%s: no normalisation attributes (s2_mean, ...): the conversion did not finish", paths[i]);
        if (i == 0) {
            ld->h = info.layout.h;
            ld->w = info.layout.w;
            ld->norm = info.norm;
        } else if (info.layout.h != ld->h || info.layout.w != ld->w) {
            return tw_err_set(err, TW_E_SHAPE, "%s: patches are %dx%d, but %dx%d in %s", paths[i], info.layout.h,
                              info.layout.w, ld->h, ld->w, paths[0]);
        } else if (memcmp(&info.norm, &ld->norm, sizeof info.norm)) {
            return tw_err_set(err, TW_E_FORMAT,
                              "%s: normalisation attributes differ from those of %s (shards of two conversions?)", paths[i],
                              paths[0]);
        }
        const tw_shard_layout *lay = &info.layout;
        if ((ld->o.use_s1 && !(lay->products & TW_PROD_S1)) || (ld->o.n_s2_bands && !(lay->products & TW_PROD_S2)))
            return tw_err_set(err, TW_E_MISSING, "%s: the shard holds no %s (attribute 'products'), but the run reads it",
                              paths[i], ld->o.use_s1 && !(lay->products & TW_PROD_S1) ? "s1" : "s2 (L2A)");
        if (ld->o.views == TW_VIEWS_SEASONAL && lay->n_times == 0)
            return tw_err_set(err, TW_E_FORMAT, "%s: seasonal views need shards with a time axis (a location's "
                              "acquisitions: --layout ssl4eo), this one has none (attribute 'n_times' 0)", paths[i]);
        if (ld->o.n_classes == TW_N_CLASSES43 && !info.has_labels43)
            return tw_err_set(err, TW_E_MISSING, "%s: no 43-class labels (has_labels43 = 0: BigEarthNet v2 and synthetic "
                              "shards carry the 19 classes only), but 43 classes were asked for", paths[i]);
        if (info.n < 1) return tw_err_set(err, TW_E_SHAPE, "%s: shard holds no samples (attribute 'n_samples')", paths[i]);
        ld->shard_start[i + 1] = ld->shard_start[i] + info.n;
    }
    /* The first max_open shards opened here, on the caller's thread: the loader's thread then
     * waits for the caller only when a rank touches more shards than that. */
    for (int i = 0; i < n && i < ld->max_open; i++) {
        tw_shard *sh;
        if ((st = get_shard(ld, i, &sh, 1, err))) return st;
    }
    return TW_OK;
}

/* The label-fraction subset: the labels of the whole split are read once (one read per shard)
 * so that the subset keeps every class the split has (sampler.h). */
static tw_status make_subset(tw_loader *ld, int64_t n_split, tw_err *err) {
    int k = ld->o.n_classes;
    uint8_t *labels = malloc((size_t)n_split * (size_t)k);
    if (!labels) return tw_err_set(err, TW_E_NOMEM, "loader: labels of %lld samples", (long long)n_split);
    tw_status st = TW_OK;
    for (int s = 0; s < ld->n_shards && !st; s++) {
        tw_shard *sh;
        if (!(st = get_shard(ld, s, &sh, 1, err)))
            st = tw_shard_read_labels(sh, labels + (size_t)ld->shard_start[s] * (size_t)k, k, err);
    }
    if (!st)
        st = tw_sampler_subset_labeled(&ld->subset, &ld->n_items, n_split, labels, k, ld->o.label_fraction,
                                       ld->o.subset_seed, err);
    free(labels);
    return st;
}

static tw_status check_opts(const tw_loader_opts *o, tw_err *err) {
    if (!o->dir || !o->split) return tw_err_set(err, TW_E_USAGE, "loader: no shard directory or split");
    if (o->n_views < 1 || o->n_views > TW_LOADER_MAX_VIEWS)
        return tw_err_set(err, TW_E_RANGE, "loader: %d views, want 1 or 2", o->n_views);
    if (o->views == TW_VIEWS_SEASONAL && o->n_views != 2)
        return tw_err_set(err, TW_E_USAGE, "loader: seasonal views need 2 views, have %d", o->n_views);
    if (o->prefetch < 1) return tw_err_set(err, TW_E_RANGE, "loader: prefetch %d, want >= 1", o->prefetch);
    if (!o->use_s1 && o->n_s2_bands == 0) return tw_err_set(err, TW_E_USAGE, "loader: neither S1 nor S2 selected");
    if (o->n_s2_bands < 0 || o->n_s2_bands > TW_S2_BANDS) return tw_err_set(err, TW_E_RANGE, "loader: %d S2 bands", o->n_s2_bands);
    for (int c = 0; c < o->n_s2_bands; c++)
        if (o->s2_bands[c] < 0 || o->s2_bands[c] >= TW_S2_BANDS)
            return tw_err_set(err, TW_E_RANGE, "loader: S2 band index %d", o->s2_bands[c]);
    if (o->n_classes != TW_N_CLASSES && o->n_classes != TW_N_CLASSES43)
        return tw_err_set(err, TW_E_RANGE, "loader: %d classes, want %d or %d", o->n_classes, TW_N_CLASSES,
                          TW_N_CLASSES43);
    if (o->start_epoch < 0 || o->start_step < 0)
        return tw_err_set(err, TW_E_RANGE, "loader: start at epoch %lld step %lld", (long long)o->start_epoch,
                          (long long)o->start_step);
    return TW_OK;
}

tw_status tw_loader_init(tw_loader **out, const tw_loader_opts *opts, tw_err *err) {
    *out = NULL;
    tw_status st = check_opts(opts, err);
    if (st) return st;
    tw_loader *ld = calloc(1, sizeof *ld);
    if (!ld) return tw_err_set(err, TW_E_NOMEM, "loader");
    ld->o = *opts;
    pthread_mutex_init(&ld->mu, NULL);
    ld->req_idx = -1;   /* no open request */
    pthread_cond_init(&ld->cv, NULL);
    if ((st = open_shards(ld, err))) goto done;
    ld->out_h = opts->out_h ? opts->out_h : ld->h;
    ld->out_w = opts->out_w ? opts->out_w : ld->w;
    if (!opts->augment && (ld->out_h != ld->h || ld->out_w != ld->w)) {
        st = tw_err_set(err, TW_E_USAGE, "loader: output size %dx%d differs from the shards' %dx%d but there is no augmentation to crop",
                        ld->out_h, ld->out_w, ld->h, ld->w);
        goto done;
    }
    int64_t n_split = ld->shard_start[ld->n_shards];
    ld->n_items = n_split;
    if (opts->label_fraction != 1.0 && (st = make_subset(ld, n_split, err))) goto done;
    if ((st = tw_sampler_init(&ld->sampler, ld->n_items, opts->global_batch, opts->rank, opts->world, opts->seed,
                              opts->shuffle, opts->drop_last, err))) {
        tw_err_prefix(err, "%s split '%s': ", opts->dir, opts->split);
        goto done;
    }
    if (opts->start_step >= ld->sampler.steps_per_epoch) {
        st = tw_err_set(err, TW_E_RANGE, "loader: start step %lld, but an epoch has %lld steps", (long long)opts->start_step,
                        (long long)ld->sampler.steps_per_epoch);
        goto done;
    }
    for (int b = 0; b < TW_N_BANDS; b++) {
        ld->scale[b] = (float)(1.0 / ld->norm.std[b]);
        ld->shift[b] = (float)(-ld->norm.mean[b] / ld->norm.std[b]);
    }
    ld->c_s2 = opts->n_s2_bands;
    ld->local_batch = (int)(opts->global_batch / opts->world);
    size_t n_px = (size_t)ld->h * ld->w, n_out = (size_t)ld->out_h * ld->out_w, lb = (size_t)ld->local_batch;
    int c_s1 = opts->use_s1 ? TW_S1_BANDS : 0;
    ld->n_slots = opts->prefetch + 1;   /* the caller holds one while the producer fills the rest */
    ld->slots = calloc((size_t)ld->n_slots, sizeof *ld->slots);
    ld->raw_s2 = malloc(TW_S2_BANDS * n_px * sizeof *ld->raw_s2);
    ld->raw_s1 = malloc(TW_S1_BANDS * n_px * sizeof *ld->raw_s1);
    ld->in_s1 = malloc(TW_S1_BANDS * n_px * sizeof(float));
    ld->in_s2 = malloc(TW_S2_BANDS * n_px * sizeof(float));
    ld->items = malloc(lb * sizeof *ld->items);
    int ok = ld->slots && ld->raw_s2 && ld->raw_s1 && ld->in_s1 && ld->in_s2 && ld->items;
    for (int k = 0; ok && k < ld->n_slots; k++) {
        tw_batch *b = &ld->slots[k].b;
        *b = (tw_batch){.n_views = opts->n_views, .c_s1 = c_s1, .c_s2 = ld->c_s2, .h = ld->out_h, .w = ld->out_w,
                        .n_classes = opts->n_classes};
        for (int v = 0; v < opts->n_views; v++) {
            if (c_s1) ok = ok && (b->s1[v] = malloc(lb * c_s1 * n_out * sizeof(float)));
            if (ld->c_s2) ok = ok && (b->s2[v] = malloc(lb * ld->c_s2 * n_out * sizeof(float)));
        }
        ok = ok && (b->labels = malloc(lb * (size_t)opts->n_classes * sizeof(float))) && (b->flags = malloc(lb)) &&
             (b->index = malloc(lb * sizeof(int64_t)));
    }
    if (!ok) {
        st = tw_err_set(err, TW_E_NOMEM, "loader: %d batch slots of %zu samples at %dx%d", ld->n_slots, lb, ld->out_h, ld->out_w);
        goto done;
    }
    if (pthread_create(&ld->thread, NULL, producer, ld) != 0) {
        st = tw_err_set(err, TW_E_NOMEM, "loader: cannot start the prefetch thread");
        goto done;
    }
    ld->thread_started = 1;
done:
    if (st) {
        tw_loader_free(ld);
        return st;
    }
    *out = ld;
    return TW_OK;
}

tw_status tw_loader_next(tw_loader *ld, const tw_batch **out, tw_err *err) {
    *out = NULL;
    pthread_mutex_lock(&ld->mu);
    ld->released = ld->next_seq;   /* the batch returned last time is done with */
    pthread_cond_broadcast(&ld->cv);
    while (ld->produced <= ld->next_seq) {
        if (ld->req_idx >= 0 && !ld->req_done) serve_open(ld);
        else pthread_cond_wait(&ld->cv, &ld->mu);
    }
    pthread_mutex_unlock(&ld->mu);
    slot *s = &ld->slots[ld->next_seq % ld->n_slots];
    if (s->st) {
        if (err) *err = s->err;
        return s->st;
    }
    *out = &s->b;
    ld->next_seq++;
    return TW_OK;
}

void tw_loader_free(tw_loader *ld) {
    if (!ld) return;
    if (ld->thread_started) {
        pthread_mutex_lock(&ld->mu);
        ld->stop = 1;
        pthread_cond_broadcast(&ld->cv);
        pthread_mutex_unlock(&ld->mu);
        pthread_join(ld->thread, NULL);
    }
    for (int k = 0; ld->slots && k < ld->n_slots; k++) {
        tw_batch *b = &ld->slots[k].b;
        for (int v = 0; v < TW_LOADER_MAX_VIEWS; v++) {
            free(b->s1[v]);
            free(b->s2[v]);
        }
        free(b->labels);
        free(b->flags);
        free(b->index);
    }
    free(ld->slots);
    for (int i = 0; i < ld->n_open; i++) tw_shard_close(ld->open[i].sh);
    free(ld->open);
    free(ld->validated);
    free(ld->paths);
    free(ld->shard_start);
    free(ld->subset);
    tw_sampler_free(&ld->sampler);
    free(ld->raw_s2);
    free(ld->raw_s1);
    free(ld->in_s1);
    free(ld->in_s2);
    free(ld->items);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->cv);
    free(ld);
}

int64_t tw_loader_steps_per_epoch(const tw_loader *ld) { return ld->sampler.steps_per_epoch; }
int64_t tw_loader_n_samples(const tw_loader *ld) { return ld->n_items; }
const tw_shard_norm *tw_loader_norm(const tw_loader *ld) { return &ld->norm; }
int tw_loader_most_open(const tw_loader *ld) { return ld->most_open; }

void tw_loader_state(const tw_loader *ld, int64_t *epoch, int64_t *step) {
    seq_position(ld, ld->next_seq, epoch, step);
}
