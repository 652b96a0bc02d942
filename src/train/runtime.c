/* The shared set-up of the commands that run models on ranks (runtime.h). */
#include "train/runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_file.h"

tw_status tw_run_make_dirs(const char *path, tw_err *err) {
    char buf[4 * TW_CFG_STR_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return tw_err_set(err, TW_E_RANGE, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        int end = *p == 0;
        if (*p == '/' || end) {
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST)
                return tw_err_set(err, TW_E_IO, "%s: cannot create: %s", buf, strerror(errno));
            if (end) break;
            *p = '/';
        }
    }
    return TW_OK;
}

tw_status tw_run_write_text(const char *path, const char *text, tw_err *err) {
    return tw_atomic_write_text(path, text, err);
}

void tw_run_set_threads(tw_comm *comm, int threads) {
    int64_t local = tw_comm_local_rank(comm) + 1;
    tw_comm_allreduce(comm, &local, 1, TW_I64, TW_REDUCE_MAX);
    if (threads <= 0 && (local <= 1 || getenv("OMP_NUM_THREADS"))) return;
    if (threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)(cores / local > 0 ? cores / local : 1);
    }
    char buf[16];
    snprintf(buf, sizeof buf, "%d", threads);
    setenv("OMP_NUM_THREADS", buf, 1);
}

tw_status tw_run_backend_create(tw_backend **be, tw_comm *comm, const tw_backend_cfg *c, tw_err *err) {
    tw_run_set_threads(comm, c->threads);
    tw_precision prec = c->precision == TW_CFG_PREC_FP32 ? TW_PREC_FP32
                      : c->precision == TW_CFG_PREC_BF16 ? TW_PREC_BF16 : TW_PREC_AUTO;
    tw_device dev = c->device == TW_CFG_DEV_CUDA ? TW_DEVICE_CUDA : TW_DEVICE_CPU;
    *be = NULL;
    tw_status st = tw_backend_create(be, dev, prec, tw_comm_local_rank(comm), err);
    /* NCCL orders its collectives against the backend's stream by events (no device-wide sync). */
    if (st == TW_OK && dev == TW_DEVICE_CUDA) tw_comm_set_stream(comm, tw_backend_stream(*be));
    return tw_comm_agree(comm, st, err);
}

tw_status tw_run_loader_opts(tw_loader_opts *lo, tw_comm *comm, const tw_data_cfg *d, const char *split,
                             tw_err *err) {
    tw_loader_opts_default(lo);
    lo->dir = d->shards;
    lo->split = split;
    lo->global_batch = d->batch;
    lo->rank = tw_comm_rank(comm);
    lo->world = tw_comm_size(comm);
    lo->use_s1 = d->source != TW_SOURCE_S2;
    lo->label_fraction = d->label_fraction;
    lo->subset_seed = (uint64_t)d->subset_seed;
    lo->n_classes = d->classes;   /* also what keeps the rare classes in a label-fraction subset */
    lo->prefetch = d->prefetch > 0 ? d->prefetch : 1;
    lo->max_open = d->max_open;
    if (d->source == TW_SOURCE_S1) {
        lo->n_s2_bands = 0;
        return TW_OK;
    }
    return tw_loader_bands_parse(lo, d->s2_bands == TW_BANDS_RGB ? "rgb" : "all", err);
}

tw_status tw_run_shard_meta(tw_shard_meta *m, const char *dir, const char *split, tw_err *err) {
    memset(m, 0, sizeof *m);
    char **paths = NULL;
    int n = 0;
    tw_status st = tw_shard_list(&paths, &n, dir, split, err);
    if (st != TW_OK) return st;
    tw_shard *sh = NULL;
    if (n == 0) st = tw_err_set(err, TW_E_MISSING, "%s: no shards of split '%s'", dir, split);
    if (st == TW_OK) st = tw_shard_open(&sh, paths[0], err);
    if (st == TW_OK) st = tw_shard_norm_get(sh, &m->norm, err);
    if (st == TW_OK) {
        m->h = tw_shard_h(sh);
        m->w = tw_shard_w(sh);
        snprintf(m->path, sizeof m->path, "%s", paths[0]);
    }
    if (sh) tw_shard_close(sh);
    free(paths);
    return st;
}
