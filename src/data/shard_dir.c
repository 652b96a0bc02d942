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

tw_status tw_shard_dir_finalize(const char *dir, const char *stats_split, tw_shard_norm *norm, int *used_all, tw_err *err) {
    DIR *d = opendir(dir);
    if (!d) return tw_err_set(err, TW_E_IO, "%s: %s", dir, strerror(errno));
    tw_shard_moments split_m = {0}, all_m = {0};
    tw_status st = TW_OK;
    char path[4096];
    size_t ls = strlen(stats_split);
    /* Pass 1: the moments. */
    for (struct dirent *e; (e = readdir(d));) {
        if (!any_shard_name(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        tw_shard *sh;
        if ((st = tw_shard_open(&sh, path, err))) goto done;
        tw_shard_moments_merge(&all_m, tw_shard_moments_of(sh));
        if (!strncmp(e->d_name, stats_split, ls) && e->d_name[ls] == '-') tw_shard_moments_merge(&split_m, tw_shard_moments_of(sh));
        tw_shard_close(sh);
    }
    double n_split = 0;
    for (int b = 0; b < TW_N_STATS; b++) n_split += split_m.count[b];
    *used_all = n_split == 0;
    if ((st = tw_shard_norm_from_moments(norm, *used_all ? &all_m : &split_m, err))) {
        tw_err_prefix(err, "%s: ", dir);
        goto done;
    }
    /* Pass 2: the attributes. */
    rewinddir(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (!any_shard_name(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if ((st = tw_shard_write_norm(path, norm, err))) goto done;
    }
done:
    closedir(d);
    return st;
}
