/* `twinfuse pretrain`: Barlow Twins pre-training of one modality from a configuration, on one
 * process or every rank of an MPI job: loader with the EO augmentations, the Barlow Twins task
 * (bt_task.h) through the loop's one step (loop.h, step.h), checkpoints and resume
 * (checkpoint.h), progress and metrics (report.h). */
#ifndef TW_PRETRAIN_H
#define TW_PRETRAIN_H

#include "config/pretrain.h"
#include "dist/comm.h"

/* Runs the whole job; returns the process exit code (0 done, 1 failure: bad input, a non-finite
 * loss, an I/O error; the message has been printed). yaml: the effective configuration as YAML,
 * stored in the run directory and in every checkpoint. */
int tw_pretrain_run(tw_comm *comm, const tw_pretrain_cfg *cfg, const char *yaml, const char *config_path);

#endif
