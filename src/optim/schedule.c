/* The schedules of schedule.h, written in the official code's order of operations so that the
 * double results agree with Python's to the last bit or two. */
#include "optim/schedule.h"

#include <math.h>

tw_status tw_schedule_check(const tw_schedule *s, tw_err *err) {
    if (s->warmup_steps < 0)
        return tw_err_set(err, TW_E_RANGE, "schedule: warm-up steps must be >= 0, got %lld",
                          (long long)s->warmup_steps);
    if (s->total_steps <= s->warmup_steps)
        return tw_err_set(err, TW_E_RANGE, "schedule: total steps (%lld) must exceed warm-up steps (%lld)",
                          (long long)s->total_steps, (long long)s->warmup_steps);
    if (!(s->final_ratio >= 0.0 && s->final_ratio <= 1.0))
        return tw_err_set(err, TW_E_RANGE, "schedule: final ratio must be in [0, 1], got %g", s->final_ratio);
    return TW_OK;
}

double tw_schedule_lr(const tw_schedule *s, double base, int64_t step) {
    if (step < s->warmup_steps) return base * (double)step / (double)s->warmup_steps;
    if (s->kind == TW_SCHEDULE_CONSTANT) return base;
    if (step > s->total_steps) step = s->total_steps;
    double q = 0.5 * (1.0 + cos(M_PI * (double)(step - s->warmup_steps) /
                                (double)(s->total_steps - s->warmup_steps)));
    double end_lr = base * s->final_ratio;
    return base * q + end_lr * (1.0 - q);
}
