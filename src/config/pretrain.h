/* The pre-training configuration: the typed struct that `twinfuse pretrain` reads and its schema
 * table (pretrain.c). Every key, its default, range and meaning is in pretrain.c and
 * docs/config.md; the enum values below are indexes into the names listed there. */
#ifndef TW_CONFIG_PRETRAIN_H
#define TW_CONFIG_PRETRAIN_H

#include <stdint.h>

#include "config/config.h"

typedef enum { TW_SPLIT_TRAIN, TW_SPLIT_VAL, TW_SPLIT_TEST, TW_SPLIT_CLOUDS } tw_cfg_split;
typedef enum { TW_SOURCE_S1, TW_SOURCE_S2 } tw_cfg_source;
typedef enum { TW_BANDS_RGB, TW_BANDS_ALL } tw_cfg_bands;
typedef enum { TW_BN_LOCAL, TW_BN_SYNC } tw_cfg_bn;
typedef enum { TW_OPTIM_ADAM, TW_OPTIM_ADAMW, TW_OPTIM_LARS, TW_OPTIM_SGD } tw_cfg_optim;
typedef enum { TW_SCHED_COSINE, TW_SCHED_CONSTANT } tw_cfg_sched;
typedef enum { TW_CFG_DEV_CPU, TW_CFG_DEV_CUDA } tw_cfg_device;
typedef enum { TW_CFG_PREC_AUTO, TW_CFG_PREC_FP32, TW_CFG_PREC_BF16 } tw_cfg_precision;
typedef enum { TW_CFG_COMM_AUTO, TW_CFG_COMM_SINGLE, TW_CFG_COMM_MPI, TW_CFG_COMM_NCCL } tw_cfg_comm;

/* Probability that each augmentation is applied to a view (augment.view1.*, augment.view2.*).
 * The two views differ as in Barlow Twins' asymmetric recipe (blur 1.0 vs 0.1; the second view
 * gets the rarer, stronger transforms). */
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

typedef struct tw_pretrain_cfg {
    struct {
        char name[TW_CFG_STR_MAX];
        char out_dir[TW_CFG_STR_MAX];      /* the run writes to out_dir/name/ */
        int64_t seed;
        char resume[TW_CFG_STR_MAX];       /* "auto", "never" or a checkpoint path */
        int log_every;                     /* steps between log lines */
        int ckpt_every_steps;              /* 0: only at the end */
        int64_t max_steps;                 /* TW_CFG_UNSET: optim.epochs worth of steps */
    } run;
    struct {
        char shards[TW_CFG_STR_MAX];       /* directory of <split>-<index>.h5 */
        tw_cfg_split split;
        tw_cfg_source source;
        tw_cfg_bands s2_bands;
        int size;                          /* square crop side, pixels */
        int batch;                         /* global batch: pairs per step over all ranks */
        int prefetch;                      /* batches prepared ahead per rank */
    } data;
    struct {
        int projector_dim;
        tw_cfg_bn backbone_bn;
    } model;
    struct {
        double lambda;                     /* off-diagonal weight of the Barlow Twins loss */
    } loss;
    struct {
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
    } optim;
    struct {
        tw_cfg_device device;
        tw_cfg_precision precision;
        int threads;                       /* 0: cores / local ranks */
        tw_cfg_comm comm;
    } backend;
    struct {
        tw_aug_probs view1, view2;
        double crop_min_scale;             /* area fraction, as RandomResizedCrop's scale[0] */
        double jitter_brightness;          /* additive shift, uniform in [-b, b] std units */
        double jitter_contrast;            /* factor uniform in [1 - c, 1 + c] */
        double blur_sigma_min, blur_sigma_max;   /* pixels */
        double noise_std;
        int speckle_looks;
        double band_dropout_frac;
    } augment;
} tw_pretrain_cfg;

const tw_cfg_schema *tw_pretrain_schema(void);

#endif
