/* The distributed, prefetching loader: one split of a shard directory, this rank's slice of each
 * global batch (sampler.h), decoded to normalised f32 NCHW planes on a background thread, with
 * an augmentation hook that can make one or two views per sample. The training loops copy a
 * batch into backend memory; nothing here touches a backend. */
#ifndef TW_LOADER_H
#define TW_LOADER_H

#include <stdint.h>

#include "core/status.h"
#include "data/shard.h"

#define TW_LOADER_MAX_VIEWS 2
/* Shards a loader keeps open by default: each costs HDF5 about 0.7 MB, and re-opening one that was
 * closed about 0.3 ms (docs/shards.md, "Index and open files at scale"). */
#define TW_LOADER_MAX_OPEN 256

/* One sample's (or one view's) planes, each plain CHW f32. */
typedef struct tw_view {
    float *s1;        /* [c_s1, h, w], NULL when the loader does not load S1 */
    float *s2;        /* [c_s2, h, w], NULL when the loader does not load S2 */
    int c_s1, c_s2;   /* 2 (VV, VH) or 0; the number of selected S2 bands or 0 */
    int h, w;
} tw_view;

/* The augmentation hook (the pre-training loop plugs src/data/augment.c in here).
 * - Called on the loader's thread, once per (sample, view), view = 0 .. n_views-1; it must
 *   depend on its arguments only (no shared mutable state), so that the same sample gets the
 *   same view on any rank count and after a resume. Draw randomness from Philox:
 *   tw_rng_init(&r, seed, epoch, sample, view) (core/rng.h).
 * - in: the sample, already normalised per band (x - mean) / std, at the shard's size; the
 *   hook must not modify it (both views start from it).
 * - out: where the view goes (a slot of the batch), same channels, size out->h x out->w
 *   (the loader's out_h x out_w, which may be smaller than in: a crop). Write every element.
 * - sample: the global index of the sample in its split (stable across ranks and fractions).
 * - user is only ever used from the loader's thread, so it may hold the hook's scratch memory.
 * - Returns TW_OK, or a status with a message in err; the loader reports it from next_batch. */
typedef tw_status (*tw_loader_augment_fn)(void *user, tw_view *out, const tw_view *in, uint64_t seed,
                                          int64_t epoch, int64_t sample, int view, tw_err *err);

/* Where a sample's views come from (data.views): its one acquisition each time (augment, and
 * cross, where the hook pairs S1 with S2), or two acquisitions of its location (seasonal: shards
 * with a time axis; views 0 and 1 from two different acquisitions drawn by Philox from (seed,
 * epoch, sample) alone, each then given to the hook; a location with one acquisition gives it
 * to both). */
typedef enum { TW_VIEWS_AUGMENT, TW_VIEWS_SEASONAL, TW_VIEWS_CROSS } tw_loader_views;

/* The acquisitions views 0 and 1 of a location with n_times of them come from (seasonal). */
void tw_loader_seasons(int t[2], int n_times, uint64_t seed, int64_t epoch, int64_t sample);

typedef struct tw_loader_opts {
    const char *dir;            /* shard directory */
    const char *split;          /* "train", "val", "test", "clouds", ... */
    int64_t global_batch;       /* over all ranks; a multiple of world */
    int rank, world;
    uint64_t seed;              /* the epoch order and the augmentations */
    int shuffle;                /* 0: the split's order (evaluation) */
    int drop_last;              /* 0: a last, smaller batch (evaluation) */
    int use_s1;                 /* load VV, VH */
    int n_s2_bands;             /* 0: no S2; else s2_bands[0..n) are indices into tw_shard_s2_bands */
    int s2_bands[TW_S2_BANDS];
    double label_fraction;      /* (0, 1]: the nested subset of the split that keeps every class
                                 * (tw_sampler_subset_labeled over the n_classes labels) */
    uint64_t subset_seed;       /* the subset's own seed, so it does not move with `seed` */
    int prefetch;               /* batches prepared ahead, >= 1 */
    int n_views;                /* 1 or 2 */
    tw_loader_views views;      /* TW_VIEWS_SEASONAL: each view from its own acquisition */
    tw_loader_augment_fn augment;   /* NULL: each view is the normalised sample */
    void *augment_user;
    int out_h, out_w;           /* 0: the shard's size; smaller only with an augment hook */
    int64_t start_epoch, start_step;  /* where to begin: a checkpoint's loader state */
    int n_classes;              /* 19 (the default: `labels`) or 43 (`labels43`; every shard must
                                 * have them, has_labels43 = 1) */
    int max_open;               /* shards open at once (least recently used closed first);
                                 * 0: TW_LOADER_MAX_OPEN */
} tw_loader_opts;

/* Defaults: shuffle, drop-last, S1 and all 12 S2 bands, fraction 1, prefetch 2, one view,
 * 19 classes. */
void tw_loader_opts_default(tw_loader_opts *o);

/* Parses "all", "rgb" (B04, B03, B02), "none" or a comma list of band names ("B08,B04,B03"). */
tw_status tw_loader_bands_parse(tw_loader_opts *o, const char *spec, tw_err *err);

/* A batch: this rank's samples of one global batch. Valid until the next tw_loader_next. */
typedef struct tw_batch {
    int n;                                   /* samples on this rank (the last one may be short) */
    int n_views, c_s1, c_s2, h, w;
    float *s1[TW_LOADER_MAX_VIEWS];          /* per view: [n, c_s1, h, w] f32 NCHW, or NULL */
    float *s2[TW_LOADER_MAX_VIEWS];          /* per view: [n, c_s2, h, w] f32 NCHW, or NULL */
    int n_classes;                           /* 19 or 43 (the options') */
    float *labels;                           /* [n, n_classes] f32, 0 or 1 */
    uint8_t *flags;                          /* [n] TW_FLAG_* */
    int64_t *index;                          /* [n] global sample index in the split */
    int64_t epoch, step;                     /* which global batch this is */
} tw_batch;

typedef struct tw_loader tw_loader;

/* Lists the split, reads every shard's attributes (tw_shard_peek: the index, the normalisation,
 * the patch size, the products) and starts the prefetch thread. Each shard is opened and
 * validated in full when it is first read; at most max_open are open at once. */
tw_status tw_loader_init(tw_loader **out, const tw_loader_opts *opts, tw_err *err);
/* The next batch; epochs follow one another without end. A bad shard, a failed hook, or a
 * TW_ASSERT or library failure on the loader's thread (TW_E_INTERNAL, with its file:line) ends
 * the stream: this and every later call return its status and message; nothing aborts there. */
tw_status tw_loader_next(tw_loader *ld, const tw_batch **out, tw_err *err);
void tw_loader_free(tw_loader *ld);

int64_t tw_loader_steps_per_epoch(const tw_loader *ld);
int64_t tw_loader_n_samples(const tw_loader *ld);    /* in the (subset of the) split */
/* The position of the batch the next tw_loader_next returns: save it in a checkpoint and pass
 * it back as start_epoch / start_step. */
void tw_loader_state(const tw_loader *ld, int64_t *epoch, int64_t *step);
const tw_shard_norm *tw_loader_norm(const tw_loader *ld);
/* The most shards that were open at once so far (bounded by max_open). Call it between batches. */
int tw_loader_most_open(const tw_loader *ld);

#endif
