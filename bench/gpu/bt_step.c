/* Times twinfuse's Barlow Twins training step on one GPU — the product's, the one `twinfuse
 * pretrain` runs: tw_loop_step (src/train/step.c) on the Barlow Twins task — the views' upload
 * from host memory, two views forward, loss, backward, the checked optimizer update, on random
 * views (no loader). bench/gpu/run alternates it with the PyTorch peer (torch_bt_step.py) and
 * prints the table. GRAPH=1 (the default, backend.graph: auto) records the step as one CUDA graph
 * at its second call and replays it; GRAPH=0 (backend.graph: off) runs every step eagerly.
 * usage: bench_gpu_bt_step C H BATCH STEPS WARMUP fp32|bf16
 * prints: twinfuse c=C batch=B pairs_per_s=X ms_per_step=Y loss=L graph=recorded|eager */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/rng.h"
#include "train/bt_task.h"
#include "train/step.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int arg_int(const char *s, const char *what) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!end || *end || v <= 0 || v > 1 << 20) {
        fprintf(stderr, "bench_gpu_bt_step: %s must be a positive integer, not '%s'\n", what, s);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv) {
    if (argc != 7 || (strcmp(argv[6], "fp32") && strcmp(argv[6], "bf16"))) {
        fprintf(stderr, "usage: %s C H BATCH STEPS WARMUP fp32|bf16\n", argv[0]);
        return 2;
    }
    int c = arg_int(argv[1], "C"), h = arg_int(argv[2], "H"), batch = arg_int(argv[3], "BATCH");
    int steps = arg_int(argv[4], "STEPS"), warmup = arg_int(argv[5], "WARMUP");
    tw_precision prec = strcmp(argv[6], "bf16") ? TW_PREC_FP32 : TW_PREC_BF16;
    const char *graph_env = getenv("GRAPH");
    int graph = !graph_env || strcmp(graph_env, "0");
    if (tw_backend_device_count(TW_DEVICE_CUDA) <= 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    tw_err err = {0};
    tw_comm *comm = NULL;
    tw_backend *be = NULL;
    if (tw_comm_create(&comm, TW_COMM_SINGLE, &argc, &argv, &err) != TW_OK ||
        tw_backend_create(&be, TW_DEVICE_CUDA, prec, 0, &err) != TW_OK) {
        fprintf(stderr, "bench_gpu_bt_step: %s\n", err.msg);
        return 1;
    }
    /* The official Barlow Twins recipe's projector (8192) is for ImageNet; twinfuse's default
     * pre-training projector is 2048 (configs/pretrain_*.yaml), as the peer's. */
    tw_bt_opts o = {.model = {.c_in = {c, c}, .h = h, .w = h, .n_local = batch, .bn_groups = 1, .proj_dim = 2048},
                    .lambda = 0.0051f};
    tw_step_opts so = {.bucket_elems = 1 << 20, .graph = graph ? TW_GRAPH_AUTO : TW_GRAPH_OFF};
    so.optim = (tw_optim_hparams){.kind = TW_OPTIM_KIND_ADAM, .lr = 1e-3, .lr_bias_scale = 1.0,
                                  .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-4,
                                  .momentum = 0.9, .eta = 0.001};
    so.sched = (tw_schedule){.kind = TW_SCHEDULE_CONSTANT, .warmup_steps = 0,
                             .total_steps = steps + warmup, .final_ratio = 1.0};
    tw_step *step = NULL;
    tw_task task = {0};
    tw_status st = tw_step_init(&step, be, comm, &err);
    if (st == TW_OK) st = tw_bt_task_init(&task, be, comm, &o, tw_step_bad(step), &err);
    if (st == TW_OK) st = tw_step_bind(step, &task, &so, &err);
    if (st == TW_OK) st = task.reset(&task, 1, &err);
    if (st != TW_OK) {
        fprintf(stderr, "bench_gpu_bt_step: model: %s\n", err.msg);
        return 1;
    }
    size_t per_view = (size_t)batch * c * h * h;
    float *views = malloc(2 * per_view * sizeof(float));
    TW_ASSERT(views);
    for (int v = 0; v < 2; v++) {
        tw_rng r;
        tw_rng_init(&r, 11, (uint32_t)v, 0, 0);
        for (size_t i = 0; i < per_view; i++) views[v * per_view + i] = tw_rng_normal(&r);
    }
    tw_batch b = {.n = batch, .h = h, .w = h};
    b.s2[0] = views;
    b.s2[1] = views + per_view;
    double loss = 0;
    for (int i = 0; i < warmup; i++) loss = tw_loop_step(step, &b, NULL);
    tw_backend_sync(be);
    double t0 = now_s();
    for (int i = 0; i < steps; i++) loss = tw_loop_step(step, &b, NULL);
    tw_backend_sync(be);
    double dt = now_s() - t0;
    printf("twinfuse c=%d batch=%d pairs_per_s=%.2f ms_per_step=%.3f loss=%.6g graph=%s\n", c, batch,
           batch * steps / dt, 1e3 * dt / steps, loss, tw_step_recorded(step) ? "recorded" : "eager");
    tw_step_free(step);
    task.free(&task);
    free(views);
    tw_backend_free(be);
    tw_comm_free(comm);
    return isfinite(loss) ? 0 : 1;
}
