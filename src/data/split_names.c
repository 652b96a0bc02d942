/* Reading a split's patch names (split_names.h): every shard of the split in order, the name of
 * each sample. */
#include "data/split_names.h"

#include <stdlib.h>
#include <string.h>

tw_status tw_split_names_read(char **names, int64_t *n, const char *dir, const char *split, tw_err *err) {
    *names = NULL;
    *n = 0;
    char **paths = NULL;
    int n_shards = 0;
    tw_status st = tw_shard_list(&paths, &n_shards, dir, split, err);
    if (st != TW_OK) return st;
    if (n_shards == 0) {
        free(paths);
        return tw_err_set(err, TW_E_MISSING, "%s: no shards of split '%s'", dir, split);
    }
    char *out = NULL;
    int64_t total = 0;
    for (int s = 0; s < n_shards && st == TW_OK; s++) {
        tw_shard *sh = NULL;
        if ((st = tw_shard_open(&sh, paths[s], err)) != TW_OK) break;
        int64_t k = tw_shard_n(sh);
        char *grown = realloc(out, (size_t)(total + k) * TW_SHARD_NAME_BYTES + 1);
        if (!grown) st = tw_err_set(err, TW_E_NOMEM, "%s: names of %lld patches", paths[s], (long long)(total + k));
        else out = grown;
        for (int64_t i = 0; i < k && st == TW_OK; i++)
            st = tw_shard_read(sh, i, NULL, NULL, NULL, NULL, out + (size_t)(total + i) * TW_SHARD_NAME_BYTES, NULL,
                               NULL, err);
        total += k;
        tw_shard_close(sh);
    }
    free(paths);
    if (st != TW_OK) {
        free(out);
        return st;
    }
    *names = out;
    *n = total;
    return TW_OK;
}
