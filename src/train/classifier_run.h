/* A classifier ready to run on ranks (tw_classifier_run): the network a fine-tuning
 * configuration describes (tw_classifier, model/classifier.h; its passes in
 * model/classifier_pass.c) with its arena, plans for this rank's share of a batch, activations and
 * input buffers; its initialisation from scratch, imported weights or pre-training checkpoints;
 * and the scoring of a whole split, gathered over ranks (validation, `twinfuse evaluate`,
 * `twinfuse embed`). */
#ifndef TW_CLASSIFIER_RUN_H
#define TW_CLASSIFIER_RUN_H

#include <stdint.h>

#include "config/finetune.h"
#include "data/loader.h"
#include "dist/comm.h"
#include "model/classifier.h"

typedef struct tw_classifier_run {
    tw_backend *be;
    const tw_finetune_cfg *cfg;
    tw_params P;
    tw_classifier m;
    tw_classifier_plans *plans;
    tw_classifier_acts acts;
    int n_local, size, c_s1, c_s2, k;      /* rows per rank, image side, channels, classes */
    float *x_s1, *x_s2, *targets;          /* backend: [n_local, c, size, size], [n_local, k] */
    const char *sources;                   /* "s1", "s2", "s1+s2" */
    tw_loader_opts lo;                     /* the data section's loader options (bands, sources) */
    const char *s2_names[TW_S2_BANDS + TW_S1_BANDS];   /* the model's channel names, S2 then S1 */
} tw_classifier_run;

/* Builds the model for n_local samples per rank and step (the plans' batch). bn_groups: 1, or g
 * to compute the backbones' BN statistics over g equal slices of the batch (what g ranks do; the
 * tests reproduce 2 ranks on one). for_training = 0: evaluation and embedding only (activations
 * without backward state: less memory). */
tw_status tw_classifier_run_init(tw_classifier_run *c, tw_backend *be, tw_comm *comm, const tw_finetune_cfg *cfg,
                                int n_local, int bn_groups, int for_training, tw_err *err);
/* The optimizer's segments: the trainable tensors (frozen backbones left out), with the
 * backbones' at backbone_lr_scale and the head's at 1. segs and lr_scale hold c->P.n_segs;
 * returns how many were written. */
int tw_classifier_run_trainable(const tw_classifier_run *c, double backbone_lr_scale, tw_param_seg *segs,
                                double *lr_scale);
void tw_classifier_run_free(tw_classifier_run *c);

/* The initial weights: torch's default initialisation from seed, then each backbone from its
 * model.init* (weights: a torchvision-named file; ssl: a barlow-twins checkpoint of the same
 * source). Every rank reads the same files, so every rank holds the same weights. Errors name
 * the key and the file. */
tw_status tw_classifier_run_init_weights(tw_classifier_run *c, uint64_t seed, tw_err *err);

/* The weights of a model to score: a classification checkpoint's whole model (task
 * "classification": path, of those sources), or, for any other task, model.init* as
 * tw_classifier_run_init_weights reads them (seed 0). */
tw_status tw_classifier_run_load_weights(tw_classifier_run *c, const char *path, const char *task, const char *sources,
                                         tw_err *err);

/* Copies the batch's n <= n_local samples into the input buffers (and its labels into targets);
 * the rows after n are zeros (evaluation's last, short batch: eval mode keeps rows independent). */
void tw_classifier_run_upload(tw_classifier_run *c, const tw_batch *b);

/* A split scored by every rank, each its disjoint slice, gathered on every rank: scores (logits)
 * and labels [n, k] by the split's sample index, and (feats != NULL) the pooled features
 * [n, d_feats] (512 per backbone). Every sample is scored exactly once (checked). */
typedef struct tw_classifier_scores {
    int64_t n;
    int k, d_feats;
    float *scores, *labels, *feats;
} tw_classifier_scores;
tw_status tw_classifier_run_score_split(tw_classifier_run *c, tw_comm *comm, const char *split, int global_batch,
                                       int want_feats, tw_classifier_scores *out, tw_err *err);
/* The same on the label-fraction subset of the split (data/loader.h: the nested subset that keeps
 * every class, data.subset_seed's), rows in the subset's order. */
tw_status tw_classifier_run_score_subset(tw_classifier_run *c, tw_comm *comm, const char *split, int global_batch,
                                        double fraction, int want_feats, tw_classifier_scores *out, tw_err *err);
void tw_classifier_scores_free(tw_classifier_scores *s);

#endif
