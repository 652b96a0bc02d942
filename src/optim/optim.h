/* The optimizer over the flat parameter buffer: Adam, AdamW, LARS (official Barlow Twins) and SGD
 * with momentum; its hyper-parameters, the schedule, the state (moments, one buffer in backend
 * memory) and that state as named f32 tensors for checkpoints. The per-element updates are the
 * backend's (tw_adam_update, tw_lars_update, tw_sgd_update in backend.h). */
#ifndef TW_OPTIM_H
#define TW_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "optim/schedule.h"

typedef enum { TW_OPTIM_KIND_ADAM, TW_OPTIM_KIND_ADAMW, TW_OPTIM_KIND_LARS, TW_OPTIM_KIND_SGD } tw_optim_kind;

typedef struct tw_optim_hparams {
    tw_optim_kind kind;
    double lr;             /* peak rate of the weights; the schedule scales it each step */
    double lr_bias_scale;  /* 1-D segments (biases, BN) use lr * lr_bias_scale (official LARS:
                            * learning-rate-biases / learning-rate-weights = 0.0048 / 0.2) */
    double weight_decay;   /* never on 1-D segments (backend.h); Adam: L2, AdamW: decoupled */
    double momentum;       /* LARS, SGD */
    int nesterov;          /* SGD */
    double beta1, beta2, eps;   /* Adam, AdamW */
    double eta;            /* LARS trust coefficient */
} tw_optim_hparams;

typedef struct tw_optim tw_optim;

/* segs describe the n_params floats of the parameter (and gradient) buffer; they are made into
 * the backend's update plans (one per rate group) here, never during a step.
 * The state starts at zero and the step counter at 0. Bad hyper-parameters are a status naming
 * the field; segments outside the buffer are a bug (TW_ASSERT). */
tw_status tw_optim_create(tw_optim **out, tw_backend *be, const tw_param_seg *segs, int n_segs,
                          size_t n_params, const tw_optim_hparams *h, const tw_schedule *sched,
                          tw_err *err);
/* The same with a learning-rate factor per segment (lr_scale[n_segs], each > 0; NULL: all 1):
 * segment s learns at the scheduled rate times lr_scale[s] (a fine-tuned backbone's factor). */
tw_status tw_optim_create_scaled(tw_optim **out, tw_backend *be, const tw_param_seg *segs,
                                 const double *lr_scale, int n_segs, size_t n_params,
                                 const tw_optim_hparams *h, const tw_schedule *sched, tw_err *err);
void tw_optim_free(tw_optim *o);

/* params -= update(grads) at the current step, then the step counter advances; on the device
 * nothing changes when *skip (backend int, NULL: never) is raised (the caller then takes the
 * step back with tw_optim_set_step_count). grads must already be averaged over ranks. Returns the
 * weights' learning rate it used. The same as tw_optim_advance, then tw_optim_queue. */
double tw_optim_step(tw_optim *o, float *params, const float *grads, const int *skip);
/* The two halves, for a step recorded once and replayed (tw_backend_graph_begin): advance, on
 * the host, writes the current step's values (backend.h: tw_update_vals) into the optimizer's
 * pinned upload table and advances the counter (returns the weights' rate); queue uploads that
 * table and queues the updates, and is what a recording keeps. The table is rewritten at the
 * next advance, so the host must wait for each step (its loss or verdict) before the next one:
 * every step reads them. */
double tw_optim_advance(tw_optim *o);
void tw_optim_queue(tw_optim *o, float *params, const float *grads, const int *skip);

int64_t tw_optim_step_count(const tw_optim *o);       /* updates done so far */
/* The weights' and the 1-D segments' rate at a given step (for logging). */
double tw_optim_lr_weights(const tw_optim *o, int64_t step);
double tw_optim_lr_biases(const tw_optim *o, int64_t step);

/* Checkpoint state: n tensors of f32, each [n_params], named "optim.exp_avg" and
 * "optim.exp_avg_sq" (Adam, AdamW) or "optim.momentum_buffer" (LARS, SGD), plus the step counter,
 * which the checkpoint keeps in its metadata (an f32 cannot hold every int64). */
int tw_optim_state_count(const tw_optim *o);
const char *tw_optim_state_name(const tw_optim *o, int i);
size_t tw_optim_state_elems(const tw_optim *o, int i);
void tw_optim_state_to_host(tw_optim *o, int i, float *host);
/* Restores the tensor called name; an unknown name or a wrong size is a status naming both. */
tw_status tw_optim_state_from_host(tw_optim *o, const char *name, const float *host, size_t n_elems,
                                   tw_err *err);
void tw_optim_set_step_count(tw_optim *o, int64_t step);

#endif
