/* The optimizer object of optim.h: splits the segments into groups of one rate each — weights and
 * 1-D parameters (two rates, as the official Barlow Twins param_groups), times each segment's
 * factor (a fine-tuned backbone's lower rate), each made once into a backend update plan — keeps
 * the moments in one backend buffer, applies the schedule and calls the backend's update kernels
 * once per group. */
#include "optim/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct tw_optim {
    tw_backend *be;
    tw_optim_hparams h;
    tw_schedule sched;
    /* The groups of one rate each, each an update plan over its segments. */
    struct { int n, is_1d; double scale; tw_update_plan *plan; } *groups;
    int n_groups;
    size_t n_params;
    float *state;             /* [n_state, n_params] in backend memory */
    int n_state;
    int64_t step;
    /* The step's values per group: made on the host (pinned on CUDA), uploaded with each update
     * (a recorded update uploads what the table holds at each replay). */
    tw_update_vals *vals_host, *vals;
};

/* PyTorch's state_dict names for the same tensors. */
static const char *const adam_names[] = {"optim.exp_avg", "optim.exp_avg_sq"};
static const char *const momentum_names[] = {"optim.momentum_buffer"};

static int is_adam(const tw_optim_hparams *h) {
    return h->kind == TW_OPTIM_KIND_ADAM || h->kind == TW_OPTIM_KIND_ADAMW;
}

static tw_adam_hparams adam_of(const tw_optim_hparams *h) {
    return (tw_adam_hparams){h->beta1, h->beta2, h->eps, h->weight_decay, h->kind == TW_OPTIM_KIND_ADAMW};
}

static int finite_in(double v, double lo, int lo_open, double hi, int hi_open) {
    return isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
}

static tw_status check_hparams(const tw_optim_hparams *h, tw_err *err) {
    const struct { const char *name; double v, lo; int lo_open; double hi; int hi_open; } rules[] = {
        {"lr", h->lr, 0, 1, INFINITY, 0},
        {"lr_bias_scale", h->lr_bias_scale, 0, 1, INFINITY, 0},
        {"weight_decay", h->weight_decay, 0, 0, INFINITY, 0},
        {"momentum", h->momentum, 0, 0, 1, 1},
        {"beta1", h->beta1, 0, 0, 1, 1},
        {"beta2", h->beta2, 0, 0, 1, 1},
        {"eps", h->eps, 0, 1, INFINITY, 0},
        {"eta", h->eta, 0, 1, INFINITY, 0},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (!finite_in(rules[i].v, rules[i].lo, rules[i].lo_open, rules[i].hi, rules[i].hi_open))
            return tw_err_set(err, TW_E_RANGE, "optimizer: %s must be finite, %s %g and %s %g, got %g",
                              rules[i].name, rules[i].lo_open ? ">" : ">=", rules[i].lo,
                              rules[i].hi_open ? "<" : "<=", rules[i].hi, rules[i].v);
    if ((unsigned)h->kind > TW_OPTIM_KIND_SGD)
        return tw_err_set(err, TW_E_RANGE, "optimizer: unknown kind %d", (int)h->kind);
    return TW_OK;
}

tw_status tw_optim_create(tw_optim **out, tw_backend *be, const tw_param_seg *segs, int n_segs,
                          size_t n_params, const tw_optim_hparams *h, const tw_schedule *sched,
                          tw_err *err) {
    return tw_optim_create_scaled(out, be, segs, NULL, n_segs, n_params, h, sched, err);
}

tw_status tw_optim_create_scaled(tw_optim **out, tw_backend *be, const tw_param_seg *segs,
                                 const double *lr_scale, int n_segs, size_t n_params,
                                 const tw_optim_hparams *h, const tw_schedule *sched, tw_err *err) {
    *out = NULL;
    tw_status st = check_hparams(h, err);
    if (st == TW_OK) st = tw_schedule_check(sched, err);
    if (st != TW_OK) return st;
    TW_ASSERT(n_segs > 0 && n_params > 0);
    for (int s = 0; s < n_segs; s++)
        TW_ASSERT(segs[s].offset <= n_params && segs[s].n_elems <= n_params - segs[s].offset);

    tw_optim *o = calloc(1, sizeof *o);
    if (!o) return tw_err_set(err, TW_E_NOMEM, "optimizer: out of memory");
    for (int i = 0; lr_scale && i < n_segs; i++)
        if (!finite_in(lr_scale[i], 0, 1, INFINITY, 0)) {
            free(o);
            return tw_err_set(err, TW_E_RANGE, "optimizer: segment %d's rate factor must be > 0, got %g", i, lr_scale[i]);
        }
    o->be = be;
    o->h = *h;
    o->sched = *sched;
    o->n_params = n_params;
    tw_param_seg *placed = malloc(sizeof *placed * (size_t)n_segs);
    o->groups = calloc((size_t)2 * n_segs, sizeof *o->groups);
    if (!placed || !o->groups) {
        st = tw_err_set(err, TW_E_NOMEM, "optimizer: out of memory");
        goto done;
    }
    /* The groups: weights before 1-D segments, each kind by factor in order of first appearance. */
    for (int pass = 0; pass < 2; pass++)
        for (int s = 0; s < n_segs; s++) {
            double scale = lr_scale ? lr_scale[s] : 1.0;
            if (segs[s].is_1d != pass) continue;
            int g = 0;
            while (g < o->n_groups && !(o->groups[g].is_1d == pass && o->groups[g].scale == scale)) g++;
            if (g == o->n_groups) {
                o->groups[g].is_1d = pass;
                o->groups[g].scale = scale;
                o->n_groups++;
            }
        }
    /* Each group's segments, in order, made into its plan. */
    for (int g = 0; g < o->n_groups; g++) {
        int n = 0;
        for (int s = 0; s < n_segs; s++)
            if (segs[s].is_1d == o->groups[g].is_1d && (lr_scale ? lr_scale[s] : 1.0) == o->groups[g].scale)
                placed[n++] = segs[s];
        o->groups[g].n = n;
        st = tw_update_plan_make(be, &o->groups[g].plan, placed, n, err);
        if (st != TW_OK) goto done;
    }
    o->n_state = is_adam(h) ? 2 : 1;
    size_t n_bytes = sizeof(float) * n_params * (size_t)o->n_state;
    o->state = tw_mem_alloc(be, n_bytes);
    tw_mem_zero(be, o->state, n_bytes);
    o->vals_host = tw_mem_host_alloc(be, sizeof *o->vals_host * (size_t)o->n_groups);
    o->vals = tw_mem_alloc(be, sizeof *o->vals * (size_t)o->n_groups);
    *out = o;
    o = NULL;
done:
    free(placed);
    tw_optim_free(o);
    return st;
}

void tw_optim_free(tw_optim *o) {
    if (!o) return;
    if (o->state) tw_mem_free(o->be, o->state);
    if (o->vals_host) tw_mem_host_free(o->be, o->vals_host);
    if (o->vals) tw_mem_free(o->be, o->vals);
    for (int g = 0; o->groups && g < o->n_groups; g++)
        if (o->groups[g].plan) tw_update_plan_free(o->be, o->groups[g].plan);
    free(o->groups);
    free(o);
}

double tw_optim_lr_weights(const tw_optim *o, int64_t step) {
    return tw_schedule_lr(&o->sched, o->h.lr, step);
}

double tw_optim_lr_biases(const tw_optim *o, int64_t step) {
    return tw_schedule_lr(&o->sched, o->h.lr, step) * o->h.lr_bias_scale;
}

/* The values of a group at rate lr and the current step. */
static tw_update_vals group_vals(const tw_optim *o, double lr) {
    if (!is_adam(&o->h)) return tw_rate_vals(lr);
    tw_adam_hparams a = adam_of(&o->h);
    return tw_adam_vals(&a, lr, o->step + 1);
}

/* One group of segments (weights or 1-D) with its values vals (backend memory). */
static void update_group(tw_optim *o, float *p, const float *g, tw_update_plan *plan,
                         const tw_update_vals *vals, const int *skip) {
    const tw_optim_hparams *h = &o->h;
    switch (h->kind) {
    case TW_OPTIM_KIND_ADAM:
    case TW_OPTIM_KIND_ADAMW: {
        tw_adam_hparams a = adam_of(h);
        tw_adam_update(o->be, plan, p, o->state, o->state + o->n_params, g, &a, vals, skip);
        return;
    }
    case TW_OPTIM_KIND_LARS: {
        tw_lars_hparams l = {(float)h->momentum, (float)h->weight_decay, (float)h->eta};
        tw_lars_update(o->be, plan, p, o->state, g, &l, vals, skip);
        return;
    }
    case TW_OPTIM_KIND_SGD: {
        tw_sgd_hparams s = {(float)h->momentum, (float)h->weight_decay, h->nesterov};
        tw_sgd_update(o->be, plan, p, o->state, g, &s, vals, skip);
        return;
    }
    }
    TW_ASSERT(!"unknown optimizer kind");
}

double tw_optim_advance(tw_optim *o) {
    double lr_w = tw_optim_lr_weights(o, o->step), lr_b = tw_optim_lr_biases(o, o->step);
    for (int g = 0; g < o->n_groups; g++)
        o->vals_host[g] = group_vals(o, (o->groups[g].is_1d ? lr_b : lr_w) * o->groups[g].scale);
    o->step++;
    return lr_w;
}

void tw_optim_queue(tw_optim *o, float *params, const float *grads, const int *skip) {
    tw_mem_from_host_async(o->be, o->vals, o->vals_host, sizeof *o->vals * (size_t)o->n_groups);
    for (int g = 0; g < o->n_groups; g++)
        update_group(o, params, grads, o->groups[g].plan, o->vals + g, skip);
}

double tw_optim_step(tw_optim *o, float *params, const float *grads, const int *skip) {
    double lr_w = tw_optim_advance(o);
    tw_optim_queue(o, params, grads, skip);
    return lr_w;
}

int64_t tw_optim_step_count(const tw_optim *o) { return o->step; }
void tw_optim_set_step_count(tw_optim *o, int64_t step) {
    TW_ASSERT(step >= 0);
    o->step = step;
}

int tw_optim_state_count(const tw_optim *o) { return o->n_state; }

const char *tw_optim_state_name(const tw_optim *o, int i) {
    TW_ASSERT(i >= 0 && i < o->n_state);
    return o->n_state == 2 ? adam_names[i] : momentum_names[i];
}

size_t tw_optim_state_elems(const tw_optim *o, int i) {
    TW_ASSERT(i >= 0 && i < o->n_state);
    return o->n_params;
}

void tw_optim_state_to_host(tw_optim *o, int i, float *host) {
    TW_ASSERT(i >= 0 && i < o->n_state);
    tw_mem_to_host(o->be, host, o->state + (size_t)i * o->n_params, sizeof(float) * o->n_params);
}

tw_status tw_optim_state_from_host(tw_optim *o, const char *name, const float *host, size_t n_elems,
                                   tw_err *err) {
    for (int i = 0; i < o->n_state; i++) {
        if (strcmp(name, tw_optim_state_name(o, i))) continue;
        if (n_elems != o->n_params)
            return tw_err_set(err, TW_E_SHAPE, "optimizer state %s: %zu elements, the model has %zu parameters",
                              name, n_elems, o->n_params);
        tw_mem_from_host(o->be, o->state + (size_t)i * o->n_params, host, sizeof(float) * n_elems);
        return TW_OK;
    }
    return tw_err_set(err, TW_E_UNKNOWN, "optimizer state %s: not a state tensor of this optimizer (%s%s%s)",
                      name, tw_optim_state_name(o, 0), o->n_state > 1 ? ", " : "",
                      o->n_state > 1 ? tw_optim_state_name(o, 1) : "");
}
