/* A training task: what differs between `twinfuse pretrain` (Barlow Twins) and `twinfuse
 * finetune` (classification). The task brings its parameters, its step on a batch (forward, loss,
 * backward into the flat gradient buffer), how the gradients are reduced over ranks, what it
 * validates and what its checkpoints are called; the loop (loop.h) owns the rest. */
#ifndef TW_TASK_H
#define TW_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/grad_ready.h"
#include "data/loader.h"
#include "model/params.h"

/* How the gradient all-reduce combines the ranks' gradients. SUM: each rank holds its share of one
 * global loss (Barlow Twins: the cross-correlation is global), so the sum is the whole gradient.
 * MEAN: each rank's loss is the mean over its own samples (classification), so the 1-rank
 * gradient of the global mean is the mean of the ranks'. */
typedef enum { TW_GRAD_SUM, TW_GRAD_MEAN } tw_grad_reduce;

/* What a monitor check reports: the "monitor" object of metrics.jsonl, its log line, and a short
 * figure the progress line carries until the next check (the online kNN mAP; "" for none). */
typedef struct tw_check_report {
    char json[2048];
    char line[512];
    char note[48];
} tw_check_report;

#define TW_TASK_MAX_VALUES 4

typedef struct tw_task tw_task;
struct tw_task {
    const char *kind;             /* the checkpoint's task: "barlow-twins", "classification" */
    const char *sources;          /* the checkpoint's sources: "s1", "s2", "s1+s2" */
    const char *unit;             /* what a sample is in the progress lines: "pairs", "images" */
    tw_params *P;
    tw_grad_reduce reduce;
    /* What the optimizer updates: a subset of P->segs (frozen tensors are left out), and each
     * segment's learning-rate factor (NULL: all 1). Owned by the task. */
    const tw_param_seg *segs;
    const double *lr_scale;
    int n_segs;
    /* The training loader's views, augmentation hook and output size (lo has the data section's
     * options already). NULL for a task run without the loop's loader (tests, benchmarks). */
    void (*loader_opts)(tw_task *t, tw_loader_opts *lo);
    /* The initial parameters and buffers, the same on every rank (from seed, or from the files
     * the task was configured with). A bad file is a status naming it. */
    tw_status (*reset)(tw_task *t, uint64_t seed, tw_err *err);
    /* The batch (this rank's share) from the host into the task's input buffers: the part of a
     * step a recorded step (train/step.h) leaves out, so each replay reads the new batch. */
    void (*upload)(tw_task *t, const tw_batch *b);
    /* Forward, loss and backward on the uploaded batch: every trained gradient (=) in P->grads.
     * Returns the loss (SUM: the global loss, equal on every rank; MEAN: this rank's mean) as the
     * sum of n_values value ops (backend.h: NaN while a step is recorded), and decides nothing on
     * the host: a loss or statistic that is not finite makes the gradients so, or raises the
     * step's verdict int (bad) the task was made with, and the loop's step rejects the step. ready:
     * what backward tells, as soon as a range of P->grads is final, so its all-reduce starts
     * while backward goes on (core/grad_ready.h). */
    double (*step)(tw_task *t, const tw_grad_ready *ready);
    int n_values;                 /* the step's value ops, 1..TW_TASK_MAX_VALUES (0: 1) */
    /* Optional (NULL: none): scores the validation split in global batches of batch (the loop's
     * eval batch, a multiple of the ranks and at most data.batch); *score is higher-better
     * (mAP), the same on every rank; summary is a short line for the log. */
    tw_status (*validate)(tw_task *t, int batch, double *score, char *summary, size_t n_summary, tw_err *err);
    /* Optional (NULL: none): the task's monitors after an accepted step (pretrain:
     * train/monitor_run.h), on every rank; step: steps done, steps_per_epoch: the loader's; out
     * (zeroed by the caller): what a check reports, json left "" when nothing ran at this step. A
     * status other than TW_OK stops the run after a checkpoint (a collapse with
     * monitor.on_collapse stop). */
    tw_status (*after_step)(tw_task *t, int64_t step, int64_t steps_per_epoch, tw_check_report *out, tw_err *err);
    void (*free)(tw_task *t);
    void *self;
};

#endif
