/* The configuration sections every command shares: run, data, optim, backend and augment, each
 * one struct and one key table (sections.c), so `twinfuse pretrain` and `twinfuse finetune` read
 * the same keys the same way. A command's schema is these parts plus its own (model, loss, eval),
 * joined by tw_cfg_schema_build (config.h); docs/config.md documents every key. */
#ifndef TW_CONFIG_SECTIONS_H
#define TW_CONFIG_SECTIONS_H

#include <stdint.h>

#include "config/config.h"

typedef enum { TW_SPLIT_TRAIN, TW_SPLIT_VAL, TW_SPLIT_TEST, TW_SPLIT_CLOUDS } tw_cfg_split;
typedef enum { TW_SOURCE_S1, TW_SOURCE_S2, TW_SOURCE_S1S2 } tw_cfg_source;
typedef enum { TW_BANDS_RGB, TW_BANDS_ALL } tw_cfg_bands;
/* Barlow Twins' two views (pre-training): augmentations of one acquisition, two acquisitions of
 * one location (shards with a time axis), or S1 with S2 (the loader's tw_loader_views). */
typedef enum { TW_CFG_VIEWS_AUGMENT, TW_CFG_VIEWS_SEASONAL, TW_CFG_VIEWS_CROSS } tw_cfg_views;
typedef enum { TW_OPTIM_ADAM, TW_OPTIM_ADAMW, TW_OPTIM_LARS, TW_OPTIM_SGD } tw_cfg_optim;
typedef enum { TW_SCHED_COSINE, TW_SCHED_CONSTANT } tw_cfg_sched;
typedef enum { TW_CFG_DEV_CPU, TW_CFG_DEV_CUDA } tw_cfg_device;
typedef enum { TW_CFG_PREC_AUTO, TW_CFG_PREC_FP32, TW_CFG_PREC_BF16 } tw_cfg_precision;
typedef enum { TW_CFG_COMM_AUTO, TW_CFG_COMM_SINGLE, TW_CFG_COMM_MPI, TW_CFG_COMM_NCCL } tw_cfg_comm;
typedef enum { TW_CFG_GRAPH_AUTO, TW_CFG_GRAPH_ON, TW_CFG_GRAPH_OFF } tw_cfg_graph;

/* The split names in tw_cfg_split order, and the source names in tw_cfg_source order. */
extern const char *const tw_cfg_split_names[];
extern const char *const tw_cfg_source_names[];

typedef struct tw_run_cfg {
    char name[TW_CFG_STR_MAX];
    char out_dir[TW_CFG_STR_MAX];      /* the run writes to out_dir/name/ */
    int64_t seed;
    char resume[TW_CFG_STR_MAX];       /* "auto", "never" or a checkpoint path */
    int log_every;                     /* steps between log lines */
    int ckpt_every_steps;              /* 0: only at the end */
    int64_t max_steps;                 /* TW_CFG_UNSET: optim.epochs worth of steps */
} tw_run_cfg;

typedef struct tw_data_cfg {
    char shards[TW_CFG_STR_MAX];       /* directory of <split>-<index>.h5 */
    tw_cfg_split split;                /* the split trained on */
    tw_cfg_source source;
    tw_cfg_bands s2_bands;
    int size;                          /* square crop side, pixels */
    int batch;                         /* global batch: samples (pairs) per step over all ranks */
    int prefetch;                      /* batches prepared ahead per rank */
    double label_fraction;             /* (0, 1]: the nested labelled subset trained on */
    int64_t subset_seed;               /* the subsets' own seed (they do not move with run.seed) */
    int classes;                       /* 19 (BigEarthNet-19) or 43 (the v1 nomenclature) */
    tw_cfg_views views;                /* pre-training's pairs */
    int max_open;                      /* shards a rank keeps open at once (the loader's bound) */
} tw_data_cfg;

typedef struct tw_optim_cfg {
    tw_cfg_optim name;
    double lr;                         /* peak learning rate of the weights */
    double lr_bias_scale;              /* 1-D params (biases, BN) use lr * lr_bias_scale */
    int lr_batch_scale;                /* multiply lr by data.batch / 256 (official recipe) */
    double weight_decay;
    double momentum;
    int nesterov;
    double betas[2];
    double eps;
    double eta;                        /* LARS trust coefficient */
    int warmup_epochs;
    int epochs;
    tw_cfg_sched schedule;
    double final_lr_ratio;             /* cosine ends at lr * final_lr_ratio */
} tw_optim_cfg;

typedef struct tw_backend_cfg {
    tw_cfg_device device;
    tw_cfg_precision precision;
    int threads;                       /* 0: cores / local ranks */
    tw_cfg_comm comm;
    int bucket_kib;                    /* gradient all-reduce bucket; 0: one bucket */
    tw_cfg_graph graph;                /* the training step recorded once and replayed */
} tw_backend_cfg;

/* Probability that each augmentation is applied to a view (augment.view1.*, augment.view2.*).
 * Pre-training's two views differ as in Barlow Twins' asymmetric recipe (blur 1.0 vs 0.1; the
 * second view gets the rarer, stronger transforms); fine-tuning uses view1 only. */
typedef struct tw_aug_probs {
    double crop;           /* random resized crop back to data.size */
    double flip;           /* horizontal, then (independently) vertical flip, each with p */
    double rot90;          /* rotation by a uniform multiple of 90 degrees */
    double jitter;         /* per-band brightness and contrast jitter */
    double blur;           /* Gaussian blur, sigma uniform in [blur_sigma_min, blur_sigma_max] */
    double noise;          /* additive Gaussian noise, std noise_std (normalised units) */
    double speckle;        /* multiplicative Gamma speckle with speckle_looks looks (SAR) */
    double band_dropout;   /* zero a band_dropout_frac fraction of the bands */
} tw_aug_probs;

typedef struct tw_augment_cfg {
    tw_aug_probs view1, view2;
    double crop_min_scale;             /* area fraction, as RandomResizedCrop's scale[0] */
    double jitter_brightness;          /* additive shift, uniform in [-b, b] std units */
    double jitter_contrast;            /* factor uniform in [1 - c, 1 + c] */
    double blur_sigma_min, blur_sigma_max;   /* pixels */
    double noise_std;
    int speckle_looks;
    double band_dropout_frac;
} tw_augment_cfg;

/* The parts, with offsets relative to their own struct (place them with tw_cfg_part.base). */
extern const tw_cfg_key tw_cfg_run_keys[], tw_cfg_data_keys[], tw_cfg_optim_keys[],
    tw_cfg_backend_keys[], tw_cfg_augment_keys[];
extern const int tw_cfg_n_run_keys, tw_cfg_n_data_keys, tw_cfg_n_optim_keys, tw_cfg_n_backend_keys,
    tw_cfg_n_augment_keys;

/* The rules across keys of the shared sections (warm-up below the epochs, blur range, the
 * class count); NULL when fine, else the key to blame with the reason in why. */
const char *tw_cfg_sections_check(const tw_data_cfg *data, const tw_optim_cfg *optim,
                                  const tw_augment_cfg *augment, char *why, size_t n_why);

#endif
