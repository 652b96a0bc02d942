/* Directory-level shard operations (shard_dir.h). */
#include "data/shard_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* `<split>-<digits>.h5` with any split name. */
static int any_shard_name(const char *name) {
    size_t n = strlen(name);
    const char *dash = strrchr(name, '-');
    if (n < 4 || strcmp(name + n - 3, ".h5") || !dash || dash == name || dash + 1 >= name + n - 3) return 0;
    for (const char *p = dash + 1; p < name + n - 3; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

int tw_shard_is_complete(const char *path) {
    tw_shard *sh = NULL;
    if (tw_shard_open(&sh, path, NULL)) return 0;
    tw_shard_close(sh);
    return 1;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

tw_status tw_shard_dir_finalize(const char *dir, const char *stats_split, tw_shard_norm *norm, int *used_all, tw_err *err) {
    DIR *d = opendir(dir);
    if (!d) return tw_err_set(err, TW_E_IO, "%s: %s", dir, strerror(errno));
    /* The shards in name order, so that the merge (and the normalisation's last bits) does not
     * depend on the order the directory lists them in. */
    char **names = NULL;
    size_t n = 0, cap = 0;
    tw_status st = TW_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (!any_shard_name(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **g = realloc(names, cap * sizeof *g);
            if (!g) { st = tw_err_set(err, TW_E_NOMEM, "%s", dir); break; }
            names = g;
        }
        if (!(names[n] = strdup(e->d_name))) { st = tw_err_set(err, TW_E_NOMEM, "%s", dir); break; }
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_name);
    tw_shard_moments split_m = {0}, all_m = {0};
    char path[4096];
    size_t ls = strlen(stats_split);
    /* Pass 1: the moments. */
    for (size_t i = 0; i < n && !st; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        tw_shard *sh;
        if ((st = tw_shard_open(&sh, path, err))) break;
        tw_shard_moments_merge(&all_m, tw_shard_moments_of(sh));
        if (!strncmp(names[i], stats_split, ls) && names[i][ls] == '-') tw_shard_moments_merge(&split_m, tw_shard_moments_of(sh));
        tw_shard_close(sh);
    }
    double n_split = 0;
    for (int b = 0; b < TW_N_STATS; b++) n_split += split_m.count[b];
    *used_all = n_split == 0;
    if (!st && (st = tw_shard_norm_from_moments(norm, *used_all ? &all_m : &split_m, err))) tw_err_prefix(err, "%s: ", dir);
    /* Pass 2: the attributes. */
    for (size_t i = 0; i < n && !st; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        st = tw_shard_write_norm(path, norm, err);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}
