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
#include "dist/comm.h"
#include "train/task.h"

typedef struct tw_loop_cfg {
    const char *command;                /* "pretrain", "finetune": the header and messages */
    const tw_run_cfg *run;
    const tw_data_cfg *data;
    const tw_optim_cfg *optim;
    const tw_backend_cfg *backend;
    const tw_cfg_schema *schema;        /* the command's, with cfg: printed once in the header */
    const void *cfg;
    const char *yaml;                   /* the effective configuration: run dir and checkpoints */
    const char *config_path;            /* NULL: defaults */
    int validate_every_epochs;          /* 0: at the end only (tasks with a validate) */
    /* Makes the task once the backend exists. bad: the step's verdict flag (train/step.h) for
     * the task's layers to raise; norm: the training split's normalisation (valid during the
     * call only). */
    tw_status (*make_task)(tw_task *t, tw_backend *be, tw_comm *comm, int *bad, const tw_shard_norm *norm,
                           void *user, tw_err *err);
    void *user;
} tw_loop_cfg;

/* Runs the whole job; returns the process exit code (0 done, 1 failure: bad input, a non-finite
 * loss, an I/O error; the message has been printed). */
int tw_loop_run(tw_comm *comm, const tw_loop_cfg *lc);

#endif
