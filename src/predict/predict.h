/* Whole scenes through a classifier: `twinfuse predict` (per-pixel class probabilities, the blend
 * of the overlapping windows that cover each pixel) and `twinfuse embed --s2/--s1` (the pooled
 * features of each window, one pixel per window). The model is the classifier of a fine-tuning
 * configuration (train/classifier_run.h) run in evaluation mode; windows are the model's training size,
 * batched through the backend, one row of windows at a time (a scene never sits in memory whole),
 * the windows of a row split over the ranks and rank 0 writing. */
#ifndef TW_PREDICT_H
#define TW_PREDICT_H

#include "config/finetune.h"
#include "data/shard.h"
#include "dist/comm.h"
#include "train/classifier_run.h"

typedef struct tw_predictor {
    tw_backend *be;
    tw_classifier_run c;
    tw_shard_norm norm;        /* the statistics of the shards the model was trained on */
    int batch;                 /* windows per forward on each rank */
    float *h_s1, *h_s2, *h_out;
} tw_predictor;

/* The model of cfg with the weights of ckpt: a classification checkpoint (is_cls = 1) or, for
 * features, a pre-training one whose backbone cfg's model.init names (is_cls = 0). batch: windows
 * per forward and rank (0: eval.batch or data.batch over the ranks). Every rank calls it. */
tw_status tw_predictor_init(tw_predictor *p, tw_comm *comm, const tw_finetune_cfg *cfg, const char *ckpt, int is_cls,
                            int batch, tw_err *err);
void tw_predictor_free(tw_predictor *p);

typedef struct tw_predict_scene_opts {
    const char *s2, *s1, *grid;    /* see predict/scene_input.h */
    int s1_linear;
    int stride;                    /* pixels between windows; 0: half a window (features: a window) */
    const char *out;               /* probabilities, or features with `features` */
    const char *top_label;         /* NULL, or a uint8 map of the most probable class */
    const char *multi_hot;         /* NULL, or uint8 bands: probability >= threshold */
    double threshold;
    int features;                  /* embed: features per window instead of probabilities */
    const char *ckpt;              /* for the files' metadata */
} tw_predict_scene_opts;

/* One scene; every rank calls it. Errors name the file. */
tw_status tw_predict_scene(tw_predictor *p, tw_comm *comm, const tw_predict_scene_opts *o, tw_err *err);

#endif
