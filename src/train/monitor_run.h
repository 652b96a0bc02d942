/* The monitors of a Barlow Twins pre-training (docs/monitor.md), owned by its task (pretrain.c)
 * and run by the loop after an accepted step: at the cadence, the health of the step's own
 * embeddings (train/monitor.h), the online kNN of the backbone on bounded labelled subsets
 * (train/knn.h), and the collapse alarm. Every rank calls it at the same steps. */
#ifndef TW_MONITOR_RUN_H
#define TW_MONITOR_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "config/pretrain.h"
#include "dist/comm.h"
#include "model/params.h"
#include "train/task.h"

/* At the default cadence the online kNN costs at most this share of the training's compute. */
#define TW_MONITOR_KNN_SHARE 0.03

typedef struct tw_monitor_run tw_monitor_run;

/* Host copies of what this rank's step computed. */
typedef struct tw_monitor_embeds {
    int64_t n_local;
    const float *z;      /* [n_local, dz] projector output of the first view (cross: S1's branch) */
    int dz;
    const float *f;      /* [n_local, df] the same view's pooled backbone features */
    int df;
    const float *c;      /* [dz, dz] the global cross-correlation of the step */
} tw_monitor_embeds;

/* NULL in *out when cfg->monitor.every_steps is -1. */
tw_status tw_monitor_run_create(tw_monitor_run **out, const tw_pretrain_cfg *cfg, tw_backend *be, tw_comm *comm,
                                tw_err *err);
void tw_monitor_run_free(tw_monitor_run *m);
/* 1 when step (steps done) is a check; steps_per_epoch: the training loader's (the default
 * cadence). */
int tw_monitor_run_due(const tw_monitor_run *m, int64_t step, int64_t steps_per_epoch);

/* A check. steps_per_epoch: the training loader's (at the default cadence the kNN runs at the
 * checks of every k-th epoch, k the least that keeps its share under TW_MONITOR_KNN_SHARE);
 * e: the step's embeddings; P: the model's parameters, the backbones under bt_prefix[i]
 * ("backbone."; cross: "s1.backbone.", "s2.backbone.") copied by name into the monitor's own
 * frozen classifier for the kNN (nothing of the training model changes). out: the "monitor"
 * object of metrics.jsonl, the log line, and the kNN mAP for the progress line when the kNN ran
 * (out->note left as it was otherwise). Returns TW_OK; or, when the alarm fires with
 * monitor.on_collapse stop, a status whose message names what collapsed (the loop saves a
 * checkpoint and stops); with warn the warning is printed once per collapse. */
tw_status tw_monitor_run_check(tw_monitor_run *m, int64_t step, int64_t steps_per_epoch, const tw_monitor_embeds *e,
                               const tw_params *P, const char *const bt_prefix[2], tw_check_report *out,
                               tw_err *err);

#endif
