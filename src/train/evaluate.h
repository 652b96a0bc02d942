/* Scoring a fine-tuned checkpoint on splits (`twinfuse evaluate`, and each sweep cell): the model
 * its configuration describes, the checkpoint's weights, every split scored over the ranks, the
 * metrics printed on rank 0 and written as JSON, the per-patch predictions as CSV. */
#ifndef TW_EVALUATE_H
#define TW_EVALUATE_H

#include "config/finetune.h"
#include "dist/comm.h"
#include "train/metrics.h"

#define TW_EVAL_MAX_SPLITS 4

typedef struct tw_evaluate_opts {
    const char *ckpt;                  /* a classification checkpoint */
    const char *sources;               /* what the checkpoint says it reads ("s1+s2") */
    const char *splits[TW_EVAL_MAX_SPLITS];
    int n_splits;
    const char *json;                  /* NULL: no report file */
    const char *predictions;           /* NULL: none; FILE, or FILE-<split>.<ext> for several splits */
    int per_class;                     /* print every class's AP */
} tw_evaluate_opts;

/* Every rank calls it. m (NULL, or [n_splits]): the metrics of each split on every rank (free each
 * with tw_metrics_free). */
tw_status tw_evaluate_run(tw_comm *comm, const tw_finetune_cfg *cfg, const tw_evaluate_opts *o, tw_metrics *m,
                          tw_err *err);

#endif
