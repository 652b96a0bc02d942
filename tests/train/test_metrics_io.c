/* train.metrics_io.write: writes a predictions CSV and a two-split JSON report (tw_predictions_write,
 * tw_metrics_write_json) from seeded random scores with ties, for check_predictions.py to read
 * back and recompute with scikit-learn (train.metrics_io). Patch names with a comma and a quote
 * exercise the CSV quoting; a class with no positives the AP = 0 rule. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/labels.h"
#include "train/metrics.h"

#define NAME_BYTES 96

static uint64_t next(uint64_t *x) {   /* splitmix64 */
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_metrics_io OUTDIR\n");
        return 1;
    }
    const int n_split[2] = {300, 57}, k = TW_N_CLASSES;
    const char *splits[2] = {"val", "test"};
    tw_metrics m[2];
    tw_err err = {0};
    uint64_t rng = 7;
    for (int sp = 0; sp < 2; sp++) {
        int n = n_split[sp];
        float *s = malloc((size_t)n * k * sizeof *s), *y = malloc((size_t)n * k * sizeof *y);
        char *names = calloc((size_t)n, NAME_BYTES), path[4096];
        if (!s || !y || !names) return 1;
        for (int i = 0; i < n; i++) {
            snprintf(names + (size_t)i * NAME_BYTES, NAME_BYTES, i == 3 ? "S2B_MSIL2A_%d,\"odd\"" : "S2A_MSIL2A_%05d", i);
            for (int j = 0; j < k; j++) {
                uint64_t r = next(&rng);
                y[i * k + j] = j != 4 && (int)(r & 0xff) < 60 + 6 * j;
                /* quarter-unit logits: many ties, exact zeros */
                s[i * k + j] = (float)((int)((r >> 8) % 17) - 8) * 0.25f + (y[i * k + j] ? 0.5f : 0.0f);
                if (j == 10) s[i * k + j] = (float)(r >> 40) * 1e-7f - 0.83f;
            }
        }
        tw_metrics_compute(&m[sp], s, y, n, k);
        snprintf(path, sizeof path, "%s/predictions-%s.csv", argv[1], splits[sp]);
        if (tw_predictions_write(path, names, NAME_BYTES, s, y, n, k, tw_labels_names19, &err) != TW_OK) {
            printf("FAIL: %s\n", err.msg);
            return 1;
        }
        free(s);
        free(y);
        free(names);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/report.json", argv[1]);
    if (tw_metrics_write_json(path, splits, m, 2, tw_labels_names19, &err) != TW_OK) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    /* A report into a folder that does not exist fails with a message naming the file. */
    snprintf(path, sizeof path, "%s/no-such-dir/report.json", argv[1]);
    if (tw_metrics_write_json(path, splits, m, 2, tw_labels_names19, &err) == TW_OK || !strstr(err.msg, "no-such-dir")) {
        printf("FAIL: writing into a missing folder: %s\n", err.msg);
        return 1;
    }
    for (int sp = 0; sp < 2; sp++) tw_metrics_free(&m[sp]);
    printf("ok: %s/{predictions-val.csv,predictions-test.csv,report.json}\n", argv[1]);
    return 0;
}
