/* The fine-tuning configuration (`twinfuse finetune`, and what `twinfuse evaluate` reads back from
 * a checkpoint): the shared sections (sections.h) plus the classifier (model.*) and the
 * validation (eval.*) keys. Keys, defaults and ranges: finetune.c and docs/config.md. */
#ifndef TW_CONFIG_FINETUNE_H
#define TW_CONFIG_FINETUNE_H

#include "config/config.h"
#include "config/sections.h"

/* The enum keys' names in their enum's order (NULL-terminated), for whoever spells a cell. */
extern const char *const tw_cfg_fusion_names[];
extern const char *const tw_cfg_head_names[];
extern const char *const tw_cfg_mode_names[];

typedef enum { TW_CFG_FUSION_NONE, TW_CFG_FUSION_EARLY, TW_CFG_FUSION_FEATURE } tw_cfg_fusion;
typedef enum { TW_CFG_HEAD_CONCAT_LINEAR, TW_CFG_HEAD_CONCAT_MLP, TW_CFG_HEAD_GATED } tw_cfg_head;
typedef enum { TW_CFG_MODE_FINETUNE, TW_CFG_MODE_FROZEN } tw_cfg_mode;
typedef enum { TW_CFG_FT_BN_TRAIN, TW_CFG_FT_BN_FROZEN } tw_cfg_ft_bn;

typedef struct tw_finetune_model_cfg {
    tw_cfg_fusion fusion;              /* none (one source), early, feature */
    tw_cfg_head head;                  /* feature fusion's head; one backbone always has a linear one */
    int mlp_hidden;                    /* concat-mlp's hidden width */
    tw_cfg_mode mode;                  /* frozen: only the head learns (transfer learning, "TL") */
    tw_cfg_ft_bn bn;                   /* finetune mode: backbone BN statistics trained or fixed */
    char init[TW_CFG_STR_MAX];         /* scratch | weights:FILE | ssl:CHECKPOINT, every backbone */
    char init_s1[TW_CFG_STR_MAX];      /* "": model.init; feature fusion's (or s1's) S1 backbone */
    char init_s2[TW_CFG_STR_MAX];      /* "": model.init; the S2 backbone */
    double backbone_lr_scale;          /* the backbones' rate = optim.lr * this */
} tw_finetune_model_cfg;

typedef struct tw_finetune_eval_cfg {
    tw_cfg_split split;                /* scored during training, for best.safetensors */
    int every_epochs;                  /* 0: only at the end */
    int batch;                         /* 0: data.batch */
} tw_finetune_eval_cfg;

typedef struct tw_finetune_cfg {
    tw_run_cfg run;
    tw_data_cfg data;
    tw_finetune_model_cfg model;
    tw_finetune_eval_cfg eval;
    tw_optim_cfg optim;
    tw_backend_cfg backend;
    tw_augment_cfg augment;
} tw_finetune_cfg;

const tw_cfg_schema *tw_finetune_schema(void);

/* The backbone initialisation a model.init* value names: kind and, for weights/ssl, the path. */
typedef enum { TW_INIT_SCRATCH, TW_INIT_WEIGHTS, TW_INIT_SSL } tw_init_kind;
typedef struct tw_init_spec {
    tw_init_kind kind;
    const char *path;                  /* into the config string; NULL for scratch */
} tw_init_spec;
/* Parses "scratch", "weights:FILE" or "ssl:CHECKPOINT"; 0 when value is none of them. */
int tw_init_spec_parse(tw_init_spec *out, const char *value);

#endif
