/* The end of a conversion (convert.h): every shard's moments gathered across ranks and merged in
 * shard order, so the normalisation is bit for bit the same on any rank count; each rank then
 * stores it in the shards it wrote. */
#include "data/convert.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

void tw_convert_warn(const tw_convert_opts *o, const char *fmt, ...) {
    if (o->rank != 0) return;
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tw_warn("%s", msg);
}

enum { ROW = 3 * TW_N_STATS };   /* count, mean, m2 per band */

tw_status tw_convert_finish(const tw_convert_opts *o, char *const *paths, const uint8_t *is_stats, const uint8_t *mine,
                            int64_t n_jobs, tw_shard_norm *norm, tw_err *err) {
    double *table = calloc((size_t)n_jobs * ROW + 1, sizeof *table);   /* +1: never 0 bytes */
    if (!table) return tw_err_set(err, TW_E_NOMEM, "moments of %lld shards", (long long)n_jobs);
    tw_status st = TW_OK;
    /* This rank's shards; a shard that exists nowhere (every patch skipped) stays zeros, as do
     * the other ranks' rows here: the sum over the ranks is then every shard's own moments,
     * exactly (x + 0 = x). */
    for (int64_t j = 0; j < n_jobs && !st; j++) {
        if (!mine[j]) continue;
        tw_shard *sh;
        if (tw_shard_open(&sh, paths[j], NULL) != TW_OK) continue;
        const tw_shard_moments *m = tw_shard_moments_of(sh);
        memcpy(table + j * ROW, m->count, sizeof m->count);
        memcpy(table + j * ROW + TW_N_STATS, m->mean, sizeof m->mean);
        memcpy(table + j * ROW + 2 * TW_N_STATS, m->m2, sizeof m->m2);
        tw_shard_close(sh);
    }
    if (o->ranks) tw_reducer_sum(o->ranks, table, (size_t)n_jobs * ROW);
    tw_shard_moments stats = {0}, all = {0};
    for (int64_t j = 0; j < n_jobs; j++) {
        tw_shard_moments m;
        memcpy(m.count, table + j * ROW, sizeof m.count);
        memcpy(m.mean, table + j * ROW + TW_N_STATS, sizeof m.mean);
        memcpy(m.m2, table + j * ROW + 2 * TW_N_STATS, sizeof m.m2);
        tw_shard_moments_merge(&all, &m);
        if (is_stats[j]) tw_shard_moments_merge(&stats, &m);
    }
    double n_stats = 0;
    for (int b = 0; b < TW_N_STATS; b++) n_stats += stats.count[b];
    st = tw_shard_norm_from_moments(norm, n_stats > 0 ? &stats : &all, err);
    for (int64_t j = 0; j < n_jobs && !st; j++) {
        double n_px = 0;
        for (int b = 0; b < TW_N_STATS; b++) n_px += table[j * ROW + b];
        if (mine[j] && n_px > 0) st = tw_shard_write_norm(paths[j], norm, err);
    }
    /* Every rank passes here: one more sum says whether any failed to store its part. */
    double failed = st != TW_OK;
    if (o->ranks) tw_reducer_sum(o->ranks, &failed, 1);
    if (!st && failed > 0) st = tw_err_set(err, TW_E_IO, "another rank failed to store the normalisation");
    free(table);
    return st;
}
