/* The one training step (tw_loop_step) of every task and every caller: `twinfuse pretrain` and
 * `twinfuse finetune` (loop.c), the tests and the benchmarks. Batch in -> forward, loss, backward
 * with the bucketed gradient all-reduce overlapped -> the checked update -> verdict out, and a
 * rejected step rolled back. On a backend that records (CUDA) the step from the second on is
 * one recorded graph replayed (backend.graph); elsewhere the same calls run eagerly. */
#ifndef TW_STEP_H
#define TW_STEP_H

#include "dist/comm.h"
#include "optim/optim.h"
#include "train/task.h"

/* backend.graph: AUTO records on a backend that can (CUDA) when the ranks' gradients go through
 * NCCL (or there is one rank), ON requires it where the backend records (several ranks without
 * NCCL are an error), OFF runs every step eagerly. The CPU backend records nothing: it runs
 * every step eagerly whatever the mode. */
typedef enum { TW_GRAPH_AUTO, TW_GRAPH_ON, TW_GRAPH_OFF } tw_graph_mode;

typedef struct tw_step_opts {
    tw_optim_hparams optim;   /* the optimizer and its peak rates (optim/optim.h) */
    tw_schedule sched;        /* warm-up + cosine or constant, per step */
    size_t bucket_elems;      /* gradient bucket size (dist/buckets.h); 0: one bucket */
    tw_graph_mode graph;
} tw_step_opts;

/* The span of P's flat buffers that segs cover: all-reducing it is all-reducing every trained
 * gradient (frozen tensors outside it are never reduced). */
typedef struct tw_grad_span {
    size_t offset, n_elems;
} tw_grad_span;
tw_grad_span tw_grad_span_of(const tw_param_seg *segs, int n_segs);

typedef struct tw_step tw_step;

/* The step's state, in two halves around the task's making: init allocates the verdict int `bad`
 * (tw_step_bad: a backend int the task's layers may raise, cleared at each step's start) that
 * the task is made with; bind takes the task (which stays the caller's) and makes the optimizer
 * over its segments, the gradient buckets and the rollback's copies. */
tw_status tw_step_init(tw_step **out, tw_backend *be, tw_comm *comm, tw_err *err);
int *tw_step_bad(const tw_step *s);
tw_status tw_step_bind(tw_step *s, tw_task *t, const tw_step_opts *o, tw_err *err);
void tw_step_free(tw_step *s);
tw_optim *tw_step_optim(const tw_step *s);
/* 1 once the step runs as a recorded graph (from the second step, on a backend that records). */
int tw_step_recorded(const tw_step *s);
/* For benchmarks: the gradient buckets, and the seconds the host spent waiting for them in the
 * last eager step (the communication backward did not hide; 0 for a replay). */
struct tw_buckets *tw_step_buckets(const tw_step *s);
double tw_step_wait_s(const tw_step *s);

/* One training step on batch b (this rank's share):
 *   upload   the batch into the task's buffers (outside the recording)
 *   keep     BN buffers and counters, for the rollback
 *   advance  the optimizer's per-step values (host, into its upload table)
 *   -- recorded from the second step on a backend that records, replayed after --
 *   clear    bad, the verdict
 *   task     forward, loss, backward; each gradient bucket's all-reduce starts as backward
 *            finishes its range
 *   wait     every bucket: the gradients hold the ranks' sum
 *   update   scale (MEAN: 1/ranks), check (a non-finite gradient raises bad), the
 *            optimizer's update, skipped on the device when bad is raised
 *   verdict  bad's value: with the loss, the step's one host read
 *   --
 *   rollback a rejected step (bad raised, or the loss not finite): BN buffers and counters put
 *            back, the optimizer's step given back (its parameters and state never moved: a
 *            task whose loss is not finite raises bad or makes its gradients so, task.h)
 * A MEAN task's loss is averaged over the ranks after the read. Returns the loss (the same on
 * every rank), NaN for a rejected step; *lr (may be NULL) gets the weights' rate. Every rank
 * must call it with a batch; every rank reaches the same verdict. */
double tw_loop_step(tw_step *s, const tw_batch *b, double *lr);

#endif
