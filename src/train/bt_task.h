/* Barlow Twins as a task (task.h): the model of model/bt_model.h and the loss of loss/barlow.h in
 * one arena, the views' upload from a batch and the forward-loss-backward the loop's step runs
 * (train/step.h). `twinfuse pretrain` (pretrain.c) adds the loader's views; tests and benchmarks
 * make the task alone and feed it batches of their own. */
#ifndef TW_BT_TASK_H
#define TW_BT_TASK_H

#include "dist/comm.h"
#include "loss/barlow.h"
#include "model/bt_model.h"
#include "train/task.h"

typedef struct tw_bt_opts {
    tw_bt_model_opts model;
    int sar;                  /* one source: the views come from the batch's S1 planes (else S2) */
    float lambda;             /* loss.lambda */
    float intra;              /* loss.intra: the intra-modal terms' weight (needs model.intra) */
    int common;               /* loss.common_dims: the cross term's dims with diagonal target 1
                               * (0: all) */
    int c_gather;             /* 1: all-gather the embeddings instead of all-reducing C
                               * (loss.c_exchange, tw_barlow_init) */
} tw_bt_opts;

typedef struct tw_bt_task {
    tw_comm *comm;
    tw_bt_opts o;
    tw_params P;
    tw_bt_model m;
    tw_barlow loss;
} tw_bt_task;

/* Makes the task: its arena (the optimizer keeps its own state), model and loss; reset (or a
 * checkpoint) gives the weights. The views' upload: with o->model.cross view 0 is the batch's S1
 * view 0 and view 1 its S2 view 0 (one loader view holds the place's two sources), and with
 * o->model.intra views 2 and 3 the S1 and S2 of its view 1; otherwise views 0 and 1 of the S1 (sar)
 * or S2 planes. The loss: the paper's on views 0 and 1, or with intra DeCUR's three terms
 * (loss/barlow.h). bad: the step's verdict int (train/step.h). */
tw_status tw_bt_task_init(tw_task *t, tw_backend *be, tw_comm *comm, const tw_bt_opts *o, int *bad,
                          tw_err *err);
/* The task's own state (t->self). */
tw_bt_task *tw_bt_task_of(const tw_task *t);

#endif
