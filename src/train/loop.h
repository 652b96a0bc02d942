/* The one training loop of every task (task.h): set-up, resume, then step after step until
 * run.max_steps or optim.epochs — loader -> the one step (train/step.h: task forward-backward,
 * gradient all-reduce, checked update) -> progress and metrics.jsonl -> checkpoints ->
 * validation and best.safetensors —
 * stopping on a non-finite loss or gradient with the last good checkpoint kept. Every rank runs
 * the same code; rank 0 prints, writes metrics and checkpoints. `twinfuse pretrain` and
 * `twinfuse finetune` are thin commands on it. */
#ifndef TW_LOOP_H
#define TW_LOOP_H

#include "config/sections.h"
#include "data/augment.h"
#include "dist/comm.h"
#include "train/task.h"

/* What every task's augmentation hook needs, made once by the loop: the augment section as the
 * augmentations' parameters (view 0 from augment.view1, view 1 from augment.view2), S1's with
 * the dB scale of the shards' normalisation (speckle), and one scratch buffer of
 * tw_augment_scratch_floats(data.size) floats — the loader's thread is the hook's only caller
 * (data/loader.h), so one is enough. */
typedef struct tw_loop_aug {
    tw_aug_params p;                   /* S2 (no dB scale) */
    tw_aug_params p_s1;                /* S1 */
    float db_per_unit[TW_S1_BANDS];
    float *scratch;
} tw_loop_aug;

typedef struct tw_loop_cfg {
    const char *command;                /* "pretrain", "finetune": the header and messages */
    const tw_run_cfg *run;
    const tw_data_cfg *data;
    const tw_optim_cfg *optim;
    const tw_backend_cfg *backend;
    const tw_augment_cfg *augment;
    const tw_cfg_schema *schema;        /* the command's, with cfg: printed once in the header */
    const void *cfg;
    const char *yaml;                   /* the effective configuration: run dir and checkpoints */
    const char *config_path;            /* NULL: defaults */
    int validate_every_epochs;          /* 0: at the end only (tasks with a validate) */
    int eval_batch;                     /* the validation's global batch; 0: data.batch */
    /* Makes the task once the backend exists. bad: the step's verdict int (train/step.h) for
     * the task's layers to raise; aug: the loop's, for the task's loader hook (valid while the
     * loop runs). */
    tw_status (*make_task)(tw_task *t, tw_backend *be, tw_comm *comm, int *bad, const tw_loop_aug *aug,
                           void *user, tw_err *err);
    void *user;
} tw_loop_cfg;

/* Runs the whole job; returns the process exit code (0 done, 1 failure: bad input, a non-finite
 * loss, an I/O error; the message has been printed). */
int tw_loop_run(tw_comm *comm, const tw_loop_cfg *lc);

#endif
