/* data.features_h5.write: writes a features file in three row blocks (tw_features_h5_*) for
 * check_features_h5.py to read back with h5py (data.features_h5), and checks the errors: rows out
 * of order, a close before every row is in (no file at the path, no temporary left), a missing
 * folder (message naming the file). Values: feature (i, j) = i + j / 1000, label (i, j) =
 * (i + j) % 3 == 0, name "S2A_patch_<i>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/features_h5.h"
#include "data/shard.h"

#define N 50
#define D 24
#define K 19

static int exists(const char *path) { return access(path, F_OK) == 0; }

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_features_h5 OUT.h5\n");
        return 1;
    }
    static float feats[N * D], labels[N * K];
    static char names[N * TW_SHARD_NAME_BYTES];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++) feats[i * D + j] = (float)i + (float)j / 1000.0f;
        for (int j = 0; j < K; j++) labels[i * K + j] = (i + j) % 3 == 0;
        snprintf(names + i * TW_SHARD_NAME_BYTES, TW_SHARD_NAME_BYTES, "S2A_patch_%d", i);
    }
    const char *path = argv[1];
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    remove(path);
    tw_err err = {0};
    int fails = 0;
    tw_features_h5 *f;
    if (tw_features_h5_open(&f, path, N, D, K, "s1+s2", "runs/x/best.safetensors", "val", &err)) {
        printf("FAIL open: %s\n", err.msg);
        return 1;
    }
    const int cut[4] = {0, 7, 33, N};
    for (int b = 0; b < 3; b++) {
        if (tw_features_h5_write_rows(f, cut[b], cut[b + 1] - cut[b], feats + cut[b] * D, labels + cut[b] * K,
                                      names + cut[b] * TW_SHARD_NAME_BYTES, &err)) {
            printf("FAIL rows %d..%d: %s\n", cut[b], cut[b + 1], err.msg);
            return 1;
        }
        if (b == 0 && (exists(path) || !exists(tmp))) {
            printf("FAIL: while writing, %s should not exist and %s should\n", path, tmp);
            fails++;
        }
        if (b == 1 && tw_features_h5_write_rows(f, 2, 1, feats, labels, names, &err) != TW_E_RANGE) {
            printf("FAIL: rows out of order accepted\n");
            fails++;
        }
    }
    if (tw_features_h5_close(f, &err)) {
        printf("FAIL close: %s\n", err.msg);
        return 1;
    }
    if (!exists(path) || exists(tmp)) {
        printf("FAIL: after close %s is missing or %s left\n", path, tmp);
        fails++;
    }
    /* An incomplete file never reaches its path. */
    char part[4200], part_tmp[4300];
    snprintf(part, sizeof part, "%s.partial.h5", path);
    snprintf(part_tmp, sizeof part_tmp, "%s.tmp", part);
    remove(part);
    if (tw_features_h5_open(&f, part, N, D, K, "s2", "c", "val", &err) ||
        tw_features_h5_write_rows(f, 0, 10, feats, labels, names, &err)) {
        printf("FAIL partial open: %s\n", err.msg);
        return 1;
    }
    if (tw_features_h5_close(f, &err) == TW_OK || exists(part) || exists(part_tmp) || !strstr(err.msg, "10 of 50")) {
        printf("FAIL: closing after 10 of 50 rows: %s\n", err.msg);
        fails++;
    }
    if (tw_features_h5_write("/nonexistent-dir/f.h5", feats, labels, names, N, D, K, "s2", "c", "val", &err) == TW_OK ||
        !strstr(err.msg, "/nonexistent-dir/f.h5")) {
        printf("FAIL: writing into a missing folder: %s\n", err.msg);
        fails++;
    }
    if (fails) return 1;
    printf("ok: %s (%d rows in 3 blocks; out-of-order, incomplete and unwritable files refused)\n", path, N);
    return 0;
}
