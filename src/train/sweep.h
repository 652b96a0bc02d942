/* The label-efficiency sweep (`twinfuse sweep`): the grid of a sweep configuration as cells —
 * source (and fusion) x initialisation and mode x label fraction x seed — each a fine-tuning run
 * in <run.out_dir>/<run.name>/<cell>/ followed by an evaluation of its best.safetensors on the
 * sweep's splits (eval.json, the cell's "done" mark); and results.csv from the finished cells. */
#ifndef TW_SWEEP_H
#define TW_SWEEP_H

#include <stdint.h>

#include "config/sweep.h"
#include "dist/comm.h"

typedef struct tw_sweep_cell {
    char name[192];                    /* "s1+s2-feature-gated-ssl-finetune-f0.01-s0" */
    tw_cfg_source source;
    tw_cfg_fusion fusion;
    tw_cfg_head head;
    const char *init;                  /* scratch, weights, ssl, ssl-cross (static strings) */
    tw_cfg_mode mode;
    double fraction;
    int64_t seed;
} tw_sweep_cell;

typedef struct tw_sweep {
    const tw_sweep_cfg *cfg;
    char dir[2 * TW_CFG_STR_MAX + 2];  /* run.out_dir/run.name */
    char *base_yaml;                   /* the base fine-tuning configuration */
    tw_sweep_cell *cells;
    int n_cells;
    int n_skipped;                     /* combinations without meaning left out (early x ssl) */
    const char *splits[4];
    char splits_buf[TW_CFG_STR_MAX];
    int n_splits;
} tw_sweep;

/* Parses the grid; an unknown source, fusion, init, mode, fraction or seed, or an initialisation
 * whose checkpoint key is empty, is an error naming the key and the value. Early fusion from ssl
 * or ssl-cross (no pre-training of a stacked backbone exists) is left out and counted. */
tw_status tw_sweep_init(tw_sweep *s, const tw_sweep_cfg *cfg, tw_err *err);
void tw_sweep_free(tw_sweep *s);

/* Whether cell i is finished (its eval.json is there). */
int tw_sweep_cell_done(const tw_sweep *s, int i);

/* Runs cell i on every rank: fine-tuning (resumed if it was interrupted), then evaluation. A
 * finished cell is skipped. Returns 0, or 1 with the message printed. */
int tw_sweep_run_cell(tw_sweep *s, tw_comm *comm, int i);

/* results.csv (atomically) from every finished cell: a row per cell and split. */
tw_status tw_sweep_write_results(const tw_sweep *s, int *n_done, tw_err *err);

#endif
