/* The sweep configuration (`twinfuse sweep`): a fine-tuning configuration (finetune.h), the base
 * every cell starts from, plus the grid (sweep.*): sources and fusions, initialisations and
 * modes, label fractions, seeds, the splits each cell is evaluated on and the checkpoints the
 * initialisations read. Lists are comma-separated strings. Keys: sweep.c and docs/config.md. */
#ifndef TW_CONFIG_SWEEP_H
#define TW_CONFIG_SWEEP_H

#include "config/finetune.h"

typedef struct tw_sweep_grid_cfg {
    char sources[TW_CFG_STR_MAX];      /* "s1,s2,s1+s2" */
    char fusions[TW_CFG_STR_MAX];      /* for s1+s2: "early,feature:gated,feature:concat-linear" */
    char experiments[TW_CFG_STR_MAX];  /* init:mode pairs, "scratch:finetune,ssl:frozen,ssl:finetune" */
    char fractions[TW_CFG_STR_MAX];    /* "0.01,0.05,0.1,0.2,0.5,1" */
    char seeds[TW_CFG_STR_MAX];        /* "0,1,2" */
    char splits[TW_CFG_STR_MAX];       /* "val,test,clouds" */
    char weights[TW_CFG_STR_MAX];      /* init weights: a torchvision-named file */
    char ssl_s1[TW_CFG_STR_MAX];       /* init ssl: the S1 and S2 pre-training checkpoints */
    char ssl_s2[TW_CFG_STR_MAX];
    char ssl_cross[TW_CFG_STR_MAX];    /* init ssl-cross: a cross-modal (S1+S2) pre-training checkpoint */
    double epoch_scale_max;            /* a fraction f trains min(1/f, this) times optim.epochs */
} tw_sweep_grid_cfg;

typedef struct tw_sweep_cfg {
    tw_finetune_cfg ft;                /* the base of every cell */
    tw_sweep_grid_cfg sweep;
} tw_sweep_cfg;

const tw_cfg_schema *tw_sweep_schema(void);

#endif
