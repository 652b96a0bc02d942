/* train.step_rollback: the one rollback every task gets from tw_loop_step (src/train/step.c). For
 * each task — Barlow Twins on one source (per-rank BN, then synchronised BN), cross-modal Barlow
 * Twins, and fine-tuning (feature fusion) — one accepted step on random inputs, then a step on
 * inputs with a NaN: it must return NaN and leave the parameters, BN buffers, counters
 * (num_batches_tracked), optimizer state and the optimizer's step count bit for bit as they were;
 * a last step on the good inputs must be accepted again and move the parameters.
 * usage: test_step_rollback */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/finetune.h"
#include "core/log.h"
#include "core/rng.h"
#include "train/bt_task.h"
#include "train/finetune.h"
#include "train/step.h"

#include "../check.h"

enum { SIZE = 32, N = 4, DIM = 32 };

/* Everything a step may change, copied to the host. */
typedef struct state {
    float *params, *buffers, *optim;
    int64_t *counters, steps;
    size_t n_params, n_buffers, n_optim;
} state;

static void state_get(state *s, const tw_step *st, const tw_params *P) {
    tw_optim *o = tw_step_optim(st);
    s->n_params = P->n_params;
    s->n_buffers = P->n_buffers;
    s->n_optim = (size_t)tw_optim_state_count(o) * P->n_params;
    s->params = malloc((s->n_params + 1) * sizeof(float));
    s->buffers = malloc((s->n_buffers + 1) * sizeof(float));
    s->optim = malloc((s->n_optim + 1) * sizeof(float));
    s->counters = malloc((P->n_counters + 1) * sizeof(int64_t));
    TW_ASSERT(s->params && s->buffers && s->optim && s->counters);
    tw_mem_to_host(P->be, s->params, P->params, s->n_params * sizeof(float));
    tw_mem_to_host(P->be, s->buffers, P->buffers, s->n_buffers * sizeof(float));
    for (int i = 0; i < tw_optim_state_count(o); i++) tw_optim_state_to_host(o, i, s->optim + (size_t)i * P->n_params);
    memcpy(s->counters, P->counters, P->n_counters * sizeof(int64_t));
    s->steps = tw_optim_step_count(o);
}

static void state_free(state *s) {
    free(s->params);
    free(s->buffers);
    free(s->optim);
    free(s->counters);
}

static float *randn(size_t n, uint32_t stream) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    TW_ASSERT(h);
    tw_rng r;
    tw_rng_init(&r, 5, stream, 0, 0);
    for (size_t i = 0; i < n; i++) h[i] = tw_rng_normal(&r);
    return h;
}

/* The three steps of the header on the task in st; good and nan: the same batch shape. */
static void check_task(const char *name, tw_step *st, tw_task *t, const tw_batch *good, const tw_batch *nan) {
    double l1 = tw_loop_step(st, good, NULL);
    CHECK(isfinite(l1), "%s: the first step is accepted (loss %g)", name, l1);
    state before, after;
    state_get(&before, st, t->P);
    double l2 = tw_loop_step(st, nan, NULL);
    state_get(&after, st, t->P);
    CHECK(isnan(l2), "%s: the step on a NaN input is rejected (loss %g)", name, l2);
    CHECK(!memcmp(before.params, after.params, before.n_params * sizeof(float)), "%s: parameters changed", name);
    CHECK(before.n_buffers > 0, "%s: the model has BN buffers to roll back", name);
    CHECK(!memcmp(before.buffers, after.buffers, before.n_buffers * sizeof(float)), "%s: BN buffers changed", name);
    CHECK(!memcmp(before.optim, after.optim, before.n_optim * sizeof(float)), "%s: optimizer state changed", name);
    CHECK(!memcmp(before.counters, after.counters, t->P->n_counters * sizeof(int64_t)),
          "%s: counters changed (num_batches_tracked %lld -> %lld)", name, (long long)before.counters[0],
          (long long)after.counters[0]);
    CHECK(before.steps == 1 && after.steps == 1, "%s: optimizer steps %lld -> %lld, want 1 -> 1", name,
          (long long)before.steps, (long long)after.steps);
    double l3 = tw_loop_step(st, good, NULL);
    state again;
    state_get(&again, st, t->P);
    CHECK(isfinite(l3) && again.steps == 2, "%s: the next good step is accepted (loss %g, %lld steps)", name, l3,
          (long long)again.steps);
    CHECK(memcmp(before.params, again.params, before.n_params * sizeof(float)), "%s: the next step moved nothing",
          name);
    printf("%s %s: accepted %.6g, rejected (NaN input) left parameters, %zu BN buffer values, counters and "
           "optimizer state as they were, accepted %.6g after\n", n_fail ? "FAIL" : "ok  ", name, l1,
           before.n_buffers, l3);
    state_free(&before);
    state_free(&after);
    state_free(&again);
}

static tw_step_opts step_opts(void) {
    tw_step_opts so = {.bucket_elems = 1 << 14, .graph = TW_GRAPH_AUTO};
    so.optim = (tw_optim_hparams){.kind = TW_OPTIM_KIND_ADAM, .lr = 1e-3, .lr_bias_scale = 1, .beta1 = 0.9,
                                  .beta2 = 0.999, .eps = 1e-8, .momentum = 0.9, .eta = 0.001};
    so.sched = (tw_schedule){.kind = TW_SCHEDULE_CONSTANT, .total_steps = 10, .final_ratio = 1};
    return so;
}

static void bt_case(const char *name, tw_backend *be, tw_comm *comm, int cross, int sync) {
    tw_bt_opts o = {.model = {.cross = cross, .c_in = {2, cross ? 3 : 2}, .h = SIZE, .w = SIZE, .n_local = N,
                              .bn_groups = 1, .backbone_sync = sync, .proj_dim = DIM},
                    .sar = 1, .lambda = 0.0051f};
    tw_step *st = NULL;
    tw_task t = {0};
    tw_err err = {0};
    tw_step_opts so = step_opts();
    tw_status s = tw_step_init(&st, be, comm, &err);
    if (s == TW_OK) s = tw_bt_task_init(&t, be, comm, &o, tw_step_bad(st), &err);
    if (s == TW_OK) s = tw_step_bind(st, &t, &so, &err);
    if (s == TW_OK) s = t.reset(&t, 3, &err);
    CHECK(s == TW_OK, "%s: %s", name, err.msg);
    if (s != TW_OK) return;
    size_t plane = (size_t)N * SIZE * SIZE;
    float *v[2] = {randn(plane * o.model.c_in[0], 1), randn(plane * o.model.c_in[1], 2)};
    float *w = randn(plane * o.model.c_in[1], 3);
    memcpy(w, v[1], plane * o.model.c_in[1] * sizeof(float));
    w[17] = NAN;
    tw_batch good = {.n = N, .h = SIZE, .w = SIZE}, bad = good;
    if (cross) {
        good.s1[0] = bad.s1[0] = v[0];
        good.s2[0] = v[1];
        bad.s2[0] = w;
    } else {
        good.s1[0] = bad.s1[0] = v[0];
        good.s1[1] = v[1];
        bad.s1[1] = w;
    }
    check_task(name, st, &t, &good, &bad);
    free(v[0]);
    free(v[1]);
    free(w);
    tw_step_free(st);
    t.free(&t);
}

static void finetune_case(tw_backend *be, tw_comm *comm) {
    const char *name = "finetune (feature fusion)";
    char *ov[] = {"data.shards=unused", "data.source=s1+s2", "data.s2_bands=rgb", "model.fusion=feature",
                  "model.head=gated", "data.size=32", "data.batch=4"};
    tw_finetune_cfg cfg;
    tw_err err = {0};
    tw_step *st = NULL;
    tw_task t = {0};
    tw_step_opts so = step_opts();
    tw_status s = tw_cfg_load(tw_finetune_schema(), &cfg, NULL, 7, ov, &err);
    if (s == TW_OK) s = tw_step_init(&st, be, comm, &err);
    if (s == TW_OK) s = tw_finetune_task_init(&t, be, comm, &cfg, 1, tw_step_bad(st), NULL, &err);
    if (s == TW_OK) s = t.reset(&t, 3, &err);
    if (s == TW_OK) s = tw_step_bind(st, &t, &so, &err);
    CHECK(s == TW_OK, "%s: %s", name, err.msg);
    if (s != TW_OK) return;
    tw_classifier_run *c = tw_finetune_task_classifier(&t);
    size_t plane = (size_t)N * SIZE * SIZE;
    float *s1 = randn(plane * c->c_s1, 4), *s2 = randn(plane * c->c_s2, 5), *s2_nan = randn(plane * c->c_s2, 5);
    float *labels = calloc((size_t)N * c->k, sizeof(float));
    TW_ASSERT(labels);
    for (int i = 0; i < N * c->k; i += 3) labels[i] = 1;
    s2_nan[5] = NAN;
    tw_batch good = {.n = N, .n_views = 1, .c_s1 = c->c_s1, .c_s2 = c->c_s2, .h = SIZE, .w = SIZE,
                     .n_classes = c->k, .labels = labels};
    good.s1[0] = s1;
    good.s2[0] = s2;
    tw_batch bad = good;
    bad.s2[0] = s2_nan;
    check_task(name, st, &t, &good, &bad);
    free(s1);
    free(s2);
    free(s2_nan);
    free(labels);
    tw_step_free(st);
    t.free(&t);
}

int main(void) {
    tw_comm *comm = NULL;
    tw_backend *be = NULL;
    tw_err err = {0};
    if (tw_comm_create(&comm, TW_COMM_SINGLE, NULL, NULL, &err) != TW_OK ||
        tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) != TW_OK) {
        fprintf(stderr, "test_step_rollback: %s\n", err.msg);
        return 1;
    }
    bt_case("pretrain, one source", be, comm, 0, 0);
    bt_case("pretrain, one source, synchronised backbone BN", be, comm, 0, 1);
    bt_case("pretrain, cross-modal", be, comm, 1, 0);
    finetune_case(be, comm);
    tw_backend_free(be);
    tw_comm_free(comm);
    printf("%s\n", n_fail ? "FAIL" : "PASS");
    return n_fail ? 1 : 0;
}
