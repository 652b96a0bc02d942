/* `twinfuse finetune`: multi-label classification (BigEarthNet, BCE with logits over 19 or 43
 * classes) as a task of the generic loop (loop.h): one source, early or feature fusion, from
 * scratch, imported weights or Barlow Twins checkpoints, frozen (TL) or fine-tuned (FT), on the
 * nested label-fraction subset of the training split, validated every eval.every_epochs by mAP
 * with the best kept as best.safetensors. Gradients are averaged over ranks. */
#ifndef TW_FINETUNE_H
#define TW_FINETUNE_H

#include "config/finetune.h"
#include "dist/comm.h"
#include "train/classifier_run.h"
#include "train/loop.h"
#include "train/task.h"

/* Runs the whole job; returns the process exit code (0 done, 1 failure; the message has been
 * printed). yaml: the effective configuration, stored in the run directory and checkpoints. */
int tw_finetune_run(tw_comm *comm, const tw_finetune_cfg *cfg, const char *yaml, const char *config_path);

/* The classification task alone (tests and benchmarks feed it batches through tw_loop_step):
 * cfg's model for data.batch / ranks samples per rank, its backbones' BN over bn_groups slices of
 * them (1; g reproduces g ranks on one), the optimizer's segments at model.backbone_lr_scale.
 * bad: the step's verdict int (train/step.h); aug: the loop's, for the loader hook (NULL: the
 * task is fed batches of its own, loader_opts unused). */
tw_status tw_finetune_task_init(tw_task *t, tw_backend *be, tw_comm *comm, const tw_finetune_cfg *cfg,
                                int bn_groups, int *bad, const tw_loop_aug *aug, tw_err *err);
tw_classifier_run *tw_finetune_task_classifier(const tw_task *t);

#endif
