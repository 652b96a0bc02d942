/* The training log — what a training run shows and records, on rank 0 (`twinfuse report` draws
 * the figures afterwards, cli/cmd_report.c): on a terminal a progress bar (epoch,
 * step, loss, pairs/s, ETA) redrawn a few times a second, otherwise one fixed-column line every
 * log_every steps (STYLE.md's nccl-tests shape); every step as a JSON line in metrics.jsonl. */
#ifndef TW_TRAINLOG_H
#define TW_TRAINLOG_H

#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

typedef struct tw_trainlog {
    int on;                 /* rank 0 */
    int tty;                /* stdout is a terminal */
    int log_every;
    int64_t total_steps, steps_per_epoch, first_step;
    double t_first, last_draw;
    FILE *metrics;          /* metrics.jsonl, appended */
    char metrics_path[4096];
    const char *unit;       /* what the rate counts: "pairs" (the default), "images" */
    char note[48];          /* the last check's figure, at the end of every progress line */
} tw_trainlog;

/* Before a resumed run appends to metrics_path (rank 0): keeps only its complete lines of steps
 * <= last_step. A run killed after its last checkpoint leaves lines of steps the resumed run
 * records again, and perhaps a torn last line that no JSON reader accepts. Rewritten atomically,
 * and only when something goes; a missing file is fine. */
tw_status tw_trainlog_metrics_trim(const char *metrics_path, int64_t last_step, tw_err *err);
/* metrics_path NULL: no JSON lines. Only rank 0 (on = 1) prints or writes. */
tw_status tw_trainlog_open(tw_trainlog *r, int on, const char *metrics_path, int log_every,
                         int64_t first_step, int64_t total_steps, int64_t steps_per_epoch, tw_err *err);
/* After step `step` (1-based count of steps done): loss, learning rate, seconds of this step and
 * pairs/s over the global batch. A metrics line that cannot be written (a full disk) is a status
 * naming the file and the error. */
tw_status tw_trainlog_step(tw_trainlog *r, int64_t step, int64_t epoch, double loss, double lr,
                         double step_s, double pairs_per_s, tw_err *err);
/* After step `step`, a monitor check (train/monitor_run.h): its log line printed, the line
 * {"step": step, "monitor": object} in metrics.jsonl (object: a JSON object's text), and note
 * (when not "") kept for the progress lines that follow. A line that cannot be written is a
 * status as tw_trainlog_step's. */
tw_status tw_trainlog_monitor(tw_trainlog *r, int64_t step, const char *object, const char *log_line,
                              const char *note, tw_err *err);
/* Ends a progress bar's line (before any other output). */
void tw_trainlog_break(tw_trainlog *r);
void tw_trainlog_close(tw_trainlog *r);
double tw_trainlog_now(void);   /* monotonic seconds */

#endif
