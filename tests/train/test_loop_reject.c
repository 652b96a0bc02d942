/* train.loop_reject: a step the loop rejects leaves the model as it was. A stand-in task on the
 * real loop moves its BN-like buffer and counter in every forward, as ResNet18's batch norm moves
 * its running statistics, then at step REJECT returns NaN with the step's flag raised, as a task
 * whose loss is not finite must (mode "loss", train/task.h), or a finite loss with a NaN gradient
 * (mode "grad": the update's check raises the step's flag on the device and the update is
 * skipped there); the step (train/step.c) rolls the buffer and counter back: after the run its parameter, buffer and counter must be those of
 * step REJECT - 1, and the run must have ended with exit code 1 and no checkpoint past the last
 * good step.
 * usage: test_loop_reject SHARD_DIR WORK_DIR loss|grad */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/pretrain.h"
#include "core/log.h"
#include "dist/comm.h"
#include "train/loop.h"

#include "../check.h"

enum { N_PARAM = 4, N_BUFFER = 3, REJECT = 3 };

static int g_nan_grad;   /* mode "grad" */

typedef struct fake {
    tw_params P;
    int *bad;
    int i_param, i_buffer, i_counter;
    int steps;                  /* forwards run */
} fake;

/* What the task held when the loop freed it. */
static float g_param[N_PARAM], g_buffer[N_BUFFER];
static int64_t g_counter = -1;
static int g_steps = 0;

static void fake_loader_opts(tw_task *t, tw_loader_opts *lo) {
    (void)t;
    lo->n_views = 1;
}

static tw_status fake_reset(tw_task *t, uint64_t seed, tw_err *err) {
    (void)seed, (void)err;
    fake *f = t->self;
    float one[N_PARAM] = {1, 1, 1, 1};
    tw_mem_from_host(f->P.be, tw_params_ptr(&f->P, f->i_param), one, sizeof one);
    return TW_OK;
}

static void fake_upload(tw_task *t, const tw_batch *b) { (void)t, (void)b; }

/* Forward: the buffer gains 1 everywhere and the counter 1 (running statistics); gradient 1. */
static double fake_step(tw_task *t, const tw_grad_ready *ready) {
    fake *f = t->self;
    float buf[N_BUFFER], grad[N_PARAM] = {1, 1, 1, 1};
    tw_mem_to_host(f->P.be, buf, tw_params_ptr(&f->P, f->i_buffer), sizeof buf);
    for (int i = 0; i < N_BUFFER; i++) buf[i] += 1.0f;
    tw_mem_from_host(f->P.be, tw_params_ptr(&f->P, f->i_buffer), buf, sizeof buf);
    (*tw_params_counter(&f->P, f->i_counter))++;
    int reject = ++f->steps == REJECT, raised = 1;
    if (reject && g_nan_grad) grad[2] = NAN;
    if (reject && !g_nan_grad) tw_mem_from_host(f->P.be, f->bad, &raised, sizeof raised);
    tw_mem_from_host(f->P.be, tw_params_grad(&f->P, f->i_param), grad, sizeof grad);
    tw_grad_ready_at(ready, 0);
    return reject && !g_nan_grad ? NAN : 1.0;
}

static void fake_free(tw_task *t) {
    fake *f = t->self;
    tw_mem_to_host(f->P.be, g_param, tw_params_ptr(&f->P, f->i_param), sizeof g_param);
    tw_mem_to_host(f->P.be, g_buffer, tw_params_ptr(&f->P, f->i_buffer), sizeof g_buffer);
    g_counter = *tw_params_counter(&f->P, f->i_counter);
    g_steps = f->steps;
    tw_params_free(&f->P);
    free(f);
}

static tw_status fake_make(tw_task *t, tw_backend *be, tw_comm *comm, int *bad, const tw_loop_aug *aug,
                           void *user, tw_err *err) {
    (void)comm, (void)aug, (void)user, (void)err;
    fake *f = calloc(1, sizeof *f);
    TW_ASSERT(f);
    tw_params_init(&f->P, be);
    int shape_p[1] = {N_PARAM}, shape_b[1] = {N_BUFFER};
    f->i_param = tw_params_add(&f->P, "w", TW_PARAM_TRAIN, 1, shape_p);
    f->i_buffer = tw_params_add(&f->P, "bn.running_mean", TW_PARAM_BUFFER, 1, shape_b);
    f->i_counter = tw_params_add(&f->P, "bn.num_batches_tracked", TW_PARAM_COUNTER, 0, NULL);
    tw_params_alloc(&f->P, 1);
    f->bad = bad;
    *t = (tw_task){.kind = "barlow-twins", .sources = "s1", .unit = "pairs", .P = &f->P, .reduce = TW_GRAD_SUM,
                   .segs = f->P.segs, .n_segs = f->P.n_segs, .loader_opts = fake_loader_opts,
                   .reset = fake_reset, .upload = fake_upload, .step = fake_step, .free = fake_free, .self = f};
    return TW_OK;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[3], "loss") && strcmp(argv[3], "grad"))) {
        fprintf(stderr, "usage: test_loop_reject SHARD_DIR WORK_DIR loss|grad\n");
        return 2;
    }
    g_nan_grad = !strcmp(argv[3], "grad");
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "run: {name: reject, out_dir: '%s', max_steps: 6, ckpt_every_steps: 1, resume: never}\n"
             "data: {shards: '%s', source: s1, size: 32, batch: 4, prefetch: 1}\n"
             "optim: {name: sgd, lr: 0.5, momentum: 0.0, weight_decay: 0.0, schedule: constant,\n"
             "        warmup_epochs: 0, epochs: 1}\n"
             "backend: {device: cpu, precision: fp32, threads: 1, comm: single}\n",
             argv[2], argv[1]);
    tw_pretrain_cfg cfg;
    tw_err err = {0};
    if (tw_cfg_load_text(tw_pretrain_schema(), &cfg, yaml, "test_loop_reject", 0, NULL, &err) != TW_OK) {
        fprintf(stderr, "FAIL config: %s\n", err.msg);
        return 1;
    }
    tw_comm *comm = NULL;
    if (tw_comm_create(&comm, TW_COMM_SINGLE, NULL, NULL, &err) != TW_OK) {
        fprintf(stderr, "FAIL comm: %s\n", err.msg);
        return 1;
    }
    tw_loop_cfg lc = {.command = "pretrain", .run = &cfg.run, .data = &cfg.data, .optim = &cfg.optim,
                      .backend = &cfg.backend, .augment = &cfg.augment, .schema = tw_pretrain_schema(), .cfg = &cfg,
                      .yaml = yaml,
                      .make_task = fake_make};
    int code = tw_loop_run(comm, &lc);
    tw_comm_free(comm);

    CHECK(code == 1, "the run ends with 1 at the rejected step, got %d", code);
    CHECK(g_steps == REJECT, "%d forwards, want %d", g_steps, REJECT);
    /* Accepted steps 1 .. REJECT-1: SGD at 0.5 on gradient 1 moves w from 1 by -0.5 each. */
    float want_param = 1.0f - 0.5f * (REJECT - 1), want_buffer = REJECT - 1;
    for (int i = 0; i < N_PARAM; i++) CHECK(g_param[i] == want_param, "w[%d] = %g, want %g", i, g_param[i], want_param);
    for (int i = 0; i < N_BUFFER; i++)
        CHECK(g_buffer[i] == want_buffer, "buffer[%d] = %g, want %g (the rejected forward's change kept)", i,
              g_buffer[i], want_buffer);
    CHECK(g_counter == REJECT - 1, "counter %lld, want %d", (long long)g_counter, REJECT - 1);
    char path[4096];
    snprintf(path, sizeof path, "%s/reject/ckpt-%08d.safetensors", argv[2], REJECT - 1);
    CHECK(access(path, F_OK) == 0, "%s: the last good checkpoint is kept", path);
    snprintf(path, sizeof path, "%s/reject/ckpt-%08d.safetensors", argv[2], REJECT);
    CHECK(access(path, F_OK) != 0, "%s: no checkpoint of the rejected step", path);
    if (n_fail) return 1;
    printf("PASS train.loop_reject (%s): a rejected step left w, the buffer and the counter as step %d left them\n",
           argv[3], REJECT - 1);
    return 0;
}
