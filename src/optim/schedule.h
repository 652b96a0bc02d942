/* Learning-rate schedules, per step: linear warm-up from 0, then cosine decay (the official Barlow
 * Twins adjust_learning_rate) or a constant. Pure functions of the step, so a resumed run gets the
 * same rates. The optimizer (optim.h) applies them. */
#ifndef TW_SCHEDULE_H
#define TW_SCHEDULE_H

#include <stdint.h>

#include "core/status.h"

typedef enum { TW_SCHEDULE_COSINE, TW_SCHEDULE_CONSTANT } tw_schedule_kind;

typedef struct tw_schedule {
    tw_schedule_kind kind;
    int64_t warmup_steps;     /* warmup_epochs * steps_per_epoch */
    int64_t total_steps;      /* epochs * steps_per_epoch */
    double final_ratio;       /* cosine ends at base * final_ratio (official: 0.001) */
} tw_schedule;

/* Checks the fields (warm-up shorter than the run, ratio in [0, 1]); the message names them. */
tw_status tw_schedule_check(const tw_schedule *s, tw_err *err);

/* The rate at step (0-based, as the official loop's `step`), for a peak rate base:
 *   step < W:  base * step / W
 *   cosine:    q = 0.5 (1 + cos(pi (step - W) / (T - W))), base q + base final_ratio (1 - q)
 *   constant:  base
 * facebookresearch/barlowtwins main.py, adjust_learning_rate (W there is 10 epochs, final_ratio
 * 0.001). Steps past T stay at the final rate. */
double tw_schedule_lr(const tw_schedule *s, double base, int64_t step);

#endif
