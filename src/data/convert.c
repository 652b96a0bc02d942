/* The converter's run (convert.h): shards as jobs for a thread pool, one patch at a time read
 * through GDAL (raster.c) and written under the HDF5 lock, complete shards kept on a rerun,
 * bad patches skipped and counted (or fatal), the normalisation at the end. */
#include "data/convert.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "data/labels.h"
#include "data/labels_v1.h"
#include "data/progress.h"
#include "data/raster.h"
#include "data/shard.h"

const char *tw_skip_str(tw_skip s) {
    switch (s) {
#define TW_SKIP_CASE(name, msg) case name: return msg;
        TW_SKIP_LIST(TW_SKIP_CASE)
#undef TW_SKIP_CASE
    case TW_SKIP_N: break;
    }
    return "unknown reason";
}

/* Native sizes of the 12 bands in shard order: 10 m bands at full size, 20 m at half, 60 m at
 * a sixth (B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12). */
static const int band_div[TW_S2_BANDS] = {6, 1, 1, 1, 2, 2, 2, 1, 2, 6, 2, 2};

typedef struct { int64_t first, n; int split, index; } job;   /* a shard: patches [first, first+n) */

typedef struct {
    const tw_convert_opts *o;
    const tw_scenes *scenes;    /* the scenes layout's manifest and classes */
    const tw_patch_list *list;
    tw_convert_summary *sum;
    job *jobs;
    int64_t n_jobs, next_job;
    pthread_mutex_t mu;         /* guards next_job, sum, st */
    tw_status st;
    tw_err err;
    tw_progress prog;
} pool;

/* Patch folders. v1: <root>/<name>/. v2: S2 <root>/BigEarthNet-S2/<tile>/<name>/ with tile the
 * name less its last two "_" fields; S1 <root>/BigEarthNet-S1/<product>/<name>/ with product
 * the name less its last three (the reBEN layout, see the sample's README). */
static void patch_dir(char *out, size_t n, const tw_convert_opts *o, const char *name, int s1) {
    if (o->layout == TW_LAYOUT_V1) {
        snprintf(out, n, "%s/%s", s1 ? o->s1_root : o->s2_root, name);
        return;
    }
    size_t len = strlen(name);
    int cut = s1 ? 3 : 2;
    while (len > 0 && cut > 0)
        if (name[--len] == '_') cut--;
    snprintf(out, n, "%s/BigEarthNet-%s/%.*s/%s", o->root, s1 ? "S1" : "S2", (int)len, name, name);
}

/* Reads one patch; returns TW_SKIP_N when it is good, else the reason (message in err). */
static tw_skip read_patch(tw_convert_buf *b, const tw_convert_opts *o, const tw_patch *p, tw_err *err) {
    uint16_t *s2 = b->s2;
    float *s1 = b->s1;
    uint8_t *l19 = b->l19, *l43 = b->l43;
    b->n_times = 1;
    char dir2[4096], dir1[4096], path[8192];
    const int S = TW_CONVERT_SIZE;
    size_t n_px = (size_t)S * S;
    patch_dir(dir2, sizeof dir2, o, p->s2, 0);
    patch_dir(dir1, sizeof dir1, o, p->s1, 1);
    memset(l19, 0, TW_N_CLASSES);
    memset(l43, 0, TW_N_CLASSES43);
    if (p->has_labels) memcpy(l19, p->labels19, TW_N_CLASSES);
    else {
        snprintf(path, sizeof path, "%s/%s_labels_metadata.json", dir2, p->s2);
        if (tw_labels_v1_read(l19, l43, path, err)) return TW_SKIP_LABEL;
    }
    for (int b = 0; b < TW_S2_BANDS; b++) {
        snprintf(path, sizeof path, "%s/%s_%s.tif", dir2, p->s2, tw_shard_s2_bands[b]);
        int nat = S / band_div[b];
        if (tw_raster_read(s2 + b * n_px, path, "UInt16", nat, nat, S, S, err)) return TW_SKIP_RASTER;
    }
    for (int b = 0; b < TW_S1_BANDS; b++) {
        snprintf(path, sizeof path, "%s/%s_%s.tif", dir1, p->s1, tw_shard_s1_bands[b]);
        if (tw_raster_read(s1 + b * n_px, path, "Float32", S, S, S, S, err)) return TW_SKIP_RASTER;
        for (size_t i = 0; i < n_px; i++)
            if (!isfinite(s1[b * n_px + i])) {
                tw_err_set(err, TW_E_NONFINITE, "%s: non-finite value at pixel (%zu, %zu)", path, i / S, i % S);
                return TW_SKIP_NONFINITE;
            }
    }
    return TW_SKIP_N;
}

/* The shard layout of a conversion: BigEarthNet S2 + S1 with labels, no time axis; SSL4EO-S12
 * the products asked for on a time axis of 4, georeferenced, unlabelled; scenes: tw_scenes_layout. */
static tw_shard_layout layout_of(const tw_convert_opts *o, const tw_scenes *scenes) {
    tw_shard_layout l = {.h = TW_CONVERT_SIZE, .w = TW_CONVERT_SIZE, .products = TW_PROD_S2 | TW_PROD_S1, .has_labels = 1};
    if (o->layout == TW_LAYOUT_SCENES) {
        l = tw_scenes_layout(scenes, o);
    } else if (o->layout == TW_LAYOUT_SSL4EO) {
        int S = o->size ? o->size : TW_SSL4EO_SIZE;
        l = (tw_shard_layout){.h = S, .w = S, .n_times = TW_SHARD_MAX_TIMES, .products = o->products, .has_georef = 1};
    }
    l.compress = o->compress;
    return l;
}

static tw_status run_job(pool *pl, const job *jb, tw_convert_buf *buf, tw_err *err) {
    const tw_convert_opts *o = pl->o;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%05d.h5", o->out, pl->sum->split_names[jb->split], jb->index);
    tw_shard *done_sh = NULL;
    if (tw_shard_open(&done_sh, path, NULL) == TW_OK) {   /* complete from an earlier run: keep it */
        pthread_mutex_lock(&pl->mu);
        pl->sum->written[jb->split] += tw_shard_n(done_sh);
        pl->sum->shards[jb->split]++;
        pl->sum->resumed_shards++;
        pl->sum->skipped_resumed += tw_shard_n_skipped(done_sh);
        pthread_mutex_unlock(&pl->mu);
        tw_shard_close(done_sh);
        tw_progress_add(&pl->prog, jb->n);
        return TW_OK;
    }
    static const char *const sources[] = {"", "ben-v1", "ben-v2", "ssl4eo-s12", "scenes"};
    tw_shard_layout lay = layout_of(o, pl->scenes);
    tw_shard_writer *wr = NULL;
    int64_t n_skipped = 0;
    tw_status st = tw_shard_writer_create(&wr, path, pl->sum->split_names[jb->split], sources[o->layout], &lay, err);
    for (int64_t i = jb->first; i < jb->first + jb->n && !st; i++) {
        const tw_patch *p = &pl->list->p[i];
        tw_err perr = {0};
        buf->flags = 0;
        buf->has_labels43 = 0;
        tw_skip why = o->layout == TW_LAYOUT_SSL4EO ? tw_ssl4eo_read(buf, o, p, &perr)
                    : o->layout == TW_LAYOUT_SCENES ? tw_scenes_read(buf, o, pl->scenes, p, &perr)
                                                    : read_patch(buf, o, p, &perr);
        if (why != TW_SKIP_N) {
            if (o->stop_on_error) {
                st = tw_err_set(err, perr.code, "%s %s: %s", o->layout == TW_LAYOUT_SSL4EO ? "location" : "patch", p->s2,
                                perr.msg);
                break;
            }
            tw_warn("twinfuse convert: skipped %s %s: %s\n", o->layout == TW_LAYOUT_SSL4EO ? "location" : "patch", p->s2,
                    perr.msg);
            n_skipped++;
            pthread_mutex_lock(&pl->mu);
            pl->sum->skipped[why]++;
            pthread_mutex_unlock(&pl->mu);
        } else {
            tw_shard_sample smp = {.s2 = buf->s2, .s1 = buf->s1, .s2c = buf->s2c, .labels = buf->l19,
                                   .labels43 = (o->layout <= TW_LAYOUT_V2 && !p->has_labels) || buf->has_labels43 ? buf->l43
                                                                                                             : NULL,
                                   .name = p->s2, .s1_name = p->s1, .flags = p->flags | buf->flags, .n_times = buf->n_times,
                                   .s2_date = buf->dates[0], .s1_date = buf->dates[1], .s2c_date = buf->dates[2],
                                   .crs_wkt = buf->grid.crs_wkt, .epsg = buf->grid.epsg, .transform = buf->grid.transform};
            st = tw_shard_writer_add(wr, &smp, err);
        }
        tw_progress_add(&pl->prog, 1);
    }
    if (st) {
        tw_shard_writer_abort(wr);
        return st;
    }
    int64_t n = tw_shard_writer_count(wr);
    if (n == 0) {   /* every patch of this shard was skipped: no empty shard on disk */
        tw_shard_writer_abort(wr);
    } else if ((st = tw_shard_writer_close(wr, n_skipped, err))) {
        return st;
    }
    pthread_mutex_lock(&pl->mu);
    pl->sum->written[jb->split] += n;
    pl->sum->shards[jb->split] += n > 0;
    pthread_mutex_unlock(&pl->mu);
    return TW_OK;
}

static void buf_free(tw_convert_buf *b) {
    tw_scenes_cache_free(b->cache);
    free(b->s2);
    free(b->s2c);
    free(b->s1);
    free(b);
}

/* One patch's (location's) buffers for the conversion's layout. */
static tw_convert_buf *buf_alloc(const tw_convert_opts *o, const tw_scenes *scenes) {
    tw_shard_layout lay = layout_of(o, scenes);
    size_t n = (size_t)lay.h * lay.w * (size_t)(lay.n_times ? lay.n_times : 1);
    tw_convert_buf *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->s2 = malloc(TW_S2_BANDS * n * sizeof *b->s2);
    b->s2c = malloc(TW_S2C_BANDS * n * sizeof *b->s2c);
    b->s1 = malloc(TW_S1_BANDS * n * sizeof *b->s1);
    if (!b->s2 || !b->s2c || !b->s1) {
        buf_free(b);
        return NULL;
    }
    return b;
}

static void *worker(void *arg) {
    pool *pl = arg;
    tw_convert_buf *buf = buf_alloc(pl->o, pl->scenes);
    for (;;) {
        pthread_mutex_lock(&pl->mu);
        int64_t j = pl->st ? pl->n_jobs : pl->next_job++;
        pthread_mutex_unlock(&pl->mu);
        if (j >= pl->n_jobs) break;
        tw_err err = {0};
        tw_status st = !buf ? tw_err_set(&err, TW_E_NOMEM, "converter buffers") : run_job(pl, &pl->jobs[j], buf, &err);
        if (st) {
            pthread_mutex_lock(&pl->mu);
            if (!pl->st) {
                pl->st = st;
                pl->err = err;
            }
            pthread_mutex_unlock(&pl->mu);
        }
    }
    if (buf) buf_free(buf);
    return NULL;
}

tw_status tw_convert_run(tw_convert_summary *sum, const tw_convert_opts *o, tw_err *err) {
    *sum = (tw_convert_summary){0};
    double t0 = tw_progress_now();
    if (!o->out) return tw_err_set(err, TW_E_USAGE, "--out DIR is required");
    if (o->shard_size < 1) return tw_err_set(err, TW_E_RANGE, "shard size %lld", (long long)o->shard_size);
    if (o->threads < 1 || o->threads > 256) return tw_err_set(err, TW_E_RANGE, "%d threads, want 1..256", o->threads);
    if (o->layout == TW_LAYOUT_SSL4EO && (o->size < 0 || o->size > TW_SSL4EO_SIZE))
        return tw_err_set(err, TW_E_USAGE, "--size %d, want 1..%d (the SSL4EO-S12 grid)", o->size, TW_SSL4EO_SIZE);
    if (o->size < 0 || o->size > 4096 || o->stride < 0 || !(o->max_nodata >= 0 && o->max_nodata <= 1) ||
        !(o->max_cloud >= 0 && o->max_cloud <= 1) || !(o->label_min_fraction >= 0 && o->label_min_fraction < 1))
        return tw_err_set(err, TW_E_RANGE, "--size %d --stride %d --max-nodata %g --max-cloud %g --label-min-fraction %g: "
                          "out of range", o->size, o->stride, o->max_nodata, o->max_cloud, o->label_min_fraction);
    tw_status cst = tw_compress_check(o->compress, err);
    if (cst) return cst;
    if (mkdir(o->out, 0777) != 0 && errno != EEXIST) return tw_err_set(err, TW_E_IO, "%s: %s", o->out, strerror(errno));
    tw_raster_init();
    tw_patch_list list;
    tw_scenes *scenes = NULL;
    tw_status st = TW_OK;
    if (o->layout == TW_LAYOUT_SCENES) {
        list = (tw_patch_list){0};
        if ((st = tw_scenes_list(&scenes, &list, sum, o, err))) {
            tw_patch_list_free(&list);
            return st;
        }
    } else if ((st = tw_convert_list(&list, sum, o, err))) {
        return st;
    }
    pool pl = {.o = o, .scenes = scenes, .list = &list, .sum = sum};
    pthread_mutex_init(&pl.mu, NULL);
    /* Shards: consecutive runs of shard_size patches of one split (the list is sorted by split);
     * this rank converts those j with j % world == rank. */
    int world = o->ranks ? o->ranks->n_ranks : 1;
    size_t cap_jobs = (size_t)list.n / (size_t)o->shard_size + (size_t)sum->n_splits + 1;
    job *all = malloc(cap_jobs * sizeof *all);
    char **paths = calloc(cap_jobs, sizeof *paths);
    uint8_t *is_stats = calloc(cap_jobs, 1), *mine = calloc(cap_jobs, 1);
    pl.jobs = malloc(cap_jobs * sizeof *pl.jobs);
    int64_t n_all = 0;
    if (!all || !paths || !is_stats || !mine || !pl.jobs) {
        st = tw_err_set(err, TW_E_NOMEM, "jobs");
        goto done;
    }
    int64_t my_patches = 0;
    for (int64_t i = 0; i < list.n;) {
        int64_t j = i;
        while (j < list.n && list.p[j].split == list.p[i].split && j - i < o->shard_size) j++;
        int index = n_all > 0 && all[n_all - 1].split == list.p[i].split ? all[n_all - 1].index + 1 : 0;
        all[n_all] = (job){.first = i, .n = j - i, .split = list.p[i].split, .index = index};
        if (n_all % world == o->rank) {
            pl.jobs[pl.n_jobs++] = all[n_all];
            mine[n_all] = 1;
            my_patches += j - i;
        }
        n_all++;
        i = j;
    }
    /* The listing's skips are every rank's alike: counted once, the run's summed over the ranks. */
    int64_t listed_skips[TW_SKIP_N];
    memcpy(listed_skips, sum->skipped, sizeof listed_skips);
    memset(sum->skipped, 0, sizeof sum->skipped);
    tw_progress_init(&pl.prog, world > 1 ? "patches (rank 0's share)" : "patches", my_patches);
    pl.prog.tty = pl.prog.tty && o->progress && o->rank == 0;
    pthread_t th[256];
    int n_started = 0;
    for (int t = 0; t < o->threads; t++)
        if (pthread_create(&th[t], NULL, worker, &pl) == 0) n_started++;
    if (n_started == 0) worker(&pl);
    for (int t = 0; t < n_started; t++) pthread_join(th[t], NULL);
    tw_progress_end(&pl.prog);
    /* One sum carries the run's counters and the number of ranks that failed. */
    enum { N_CNT = 2 * TW_CONVERT_MAX_SPLITS + TW_SKIP_N + 3 };
    double cnt[N_CNT] = {0};
    for (int k = 0; k < TW_CONVERT_MAX_SPLITS; k++) {
        cnt[k] = (double)sum->written[k];
        cnt[TW_CONVERT_MAX_SPLITS + k] = (double)sum->shards[k];
    }
    for (int k = 0; k < TW_SKIP_N; k++) cnt[2 * TW_CONVERT_MAX_SPLITS + k] = (double)sum->skipped[k];
    cnt[N_CNT - 3] = (double)sum->resumed_shards;
    cnt[N_CNT - 2] = (double)sum->skipped_resumed;
    cnt[N_CNT - 1] = pl.st != TW_OK;
    if (o->ranks) tw_reducer_sum(o->ranks, cnt, N_CNT);
    for (int k = 0; k < TW_CONVERT_MAX_SPLITS; k++) {
        sum->written[k] = (int64_t)cnt[k];
        sum->shards[k] = (int64_t)cnt[TW_CONVERT_MAX_SPLITS + k];
    }
    for (int k = 0; k < TW_SKIP_N; k++) sum->skipped[k] = (int64_t)cnt[2 * TW_CONVERT_MAX_SPLITS + k] + listed_skips[k];
    sum->resumed_shards = (int64_t)cnt[N_CNT - 3];
    sum->skipped_resumed = (int64_t)cnt[N_CNT - 2];
    if ((st = pl.st)) {
        if (err) *err = pl.err;
        goto done;
    }
    if (cnt[N_CNT - 1] > 0) {
        st = tw_err_set(err, TW_E_IO, "%.0f of %d ranks failed (their messages are above)", cnt[N_CNT - 1], world);
        goto done;
    }
    int64_t total = 0;
    for (int s = 0; s < sum->n_splits; s++) total += sum->written[s];
    if (total == 0) {
        st = tw_err_set(err, TW_E_MISSING, "no patch was converted (see the skips above)");
        goto done;
    }
    /* The normalisation: over the train split, or every split when there is none. */
    int train = -1;
    for (int s = 0; s < sum->n_splits; s++)
        if (!strcmp(sum->split_names[s], "train") && sum->written[s] > 0) train = s;
    sum->stats_from_all = train < 0;
    for (int64_t j = 0; j < n_all; j++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s-%05d.h5", o->out, sum->split_names[all[j].split], all[j].index);
        if (!(paths[j] = strdup(path))) {
            st = tw_err_set(err, TW_E_NOMEM, "shard paths");
            break;
        }
        is_stats[j] = train < 0 || all[j].split == train;
    }
    tw_shard_norm norm;
    if (!st) st = tw_convert_finish(o, paths, is_stats, mine, n_all, &norm, err);
done:
    sum->seconds = tw_progress_now() - t0;
    for (int64_t j = 0; paths && j < n_all; j++) free(paths[j]);
    free(paths);
    free(all);
    free(is_stats);
    free(mine);
    free(pl.jobs);
    pthread_mutex_destroy(&pl.mu);
    tw_patch_list_free(&list);
    tw_scenes_free(scenes);
    return st;
}
