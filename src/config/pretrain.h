/* The pre-training configuration: the typed struct that `twinfuse pretrain` reads and its schema
 * (pretrain.c): the shared sections (sections.h) plus pre-training's own model and loss keys.
 * Every key, its default, range and meaning is in sections.c, pretrain.c and docs/config.md. */
#ifndef TW_CONFIG_PRETRAIN_H
#define TW_CONFIG_PRETRAIN_H

#include <stdint.h>

#include "config/config.h"
#include "config/sections.h"

typedef enum { TW_BN_LOCAL, TW_BN_SYNC } tw_cfg_bn;

typedef struct tw_pretrain_model_cfg {
    int projector_dim;
    tw_cfg_bn backbone_bn;
} tw_pretrain_model_cfg;

/* What the two sides of the cross-correlation are: two augmented views of one source, or the S1
 * and the S2 patch of the same places (cross-modal, data.source s1+s2). */
typedef enum { TW_PAIRING_VIEWS, TW_PAIRING_CROSS } tw_cfg_pairing;

/* How the ranks form the global cross-correlation (docs/scaling.md): each its share of C, then one
 * all-reduce of C; or one all-gather of the normalised embeddings, then all of C on every rank. */
typedef enum { TW_C_ALLREDUCE, TW_C_ALLGATHER } tw_cfg_c_exchange;

typedef struct tw_pretrain_loss_cfg {
    double lambda;                     /* off-diagonal weight of the Barlow Twins loss */
    tw_cfg_pairing pairing;
    double intra;                      /* cross: weight of the intra-modal terms (0: none) */
    int common_dims;                   /* cross: dims with diagonal target 1 (0: all) */
    tw_cfg_c_exchange c_exchange;
} tw_pretrain_loss_cfg;

/* The monitors of a pre-training (docs/monitor.md): what a check measures, how often, and what a
 * collapse does. */
typedef enum { TW_COLLAPSE_WARN, TW_COLLAPSE_STOP } tw_cfg_on_collapse;
typedef enum { TW_KNN_NONE, TW_KNN_VAL, TW_KNN_TEST, TW_KNN_CLOUDS } tw_cfg_knn_split;

typedef struct tw_pretrain_monitor_cfg {
    int64_t every_steps;               /* 0: once an epoch; -1: no monitors */
    tw_cfg_knn_split knn_split;        /* the online kNN's queries; none: no kNN */
    int64_t knn_memory, knn_queries;   /* at most this many train / query patches */
    int erank_rows;                    /* the effective rank's sample, over all ranks */
    int patience;                      /* consecutive bad checks before the alarm */
    tw_cfg_on_collapse on_collapse;
} tw_pretrain_monitor_cfg;

typedef struct tw_pretrain_cfg {
    tw_run_cfg run;
    tw_data_cfg data;
    tw_pretrain_model_cfg model;
    tw_pretrain_loss_cfg loss;
    tw_optim_cfg optim;
    tw_backend_cfg backend;
    tw_augment_cfg augment;
    tw_pretrain_monitor_cfg monitor;
} tw_pretrain_cfg;

/* The kNN split's name ("val", ...), NULL for none. */
const char *tw_cfg_knn_split_name(tw_cfg_knn_split s);

const tw_cfg_schema *tw_pretrain_schema(void);

#endif
