/* One Barlow Twins training step of twinfuse — the product's, tw_loop_step (src/train/step.c) on
 * the Barlow Twins task: the views' upload, two views through ResNet18, projector, loss,
 * backward with the gradient buckets' all-reduce started as its stages finish, Adam — timed on
 * random views (no loader); bench/bt_step/run compares it with PyTorch's same step. One
 * process or every rank of mpirun (batch is global); on more than one rank it also prints the
 * '# comm' line of bench/comm/overlap.h (BUCKET_KIB in the environment: the bucket size, default
 * 4096, the config's default; SIM_BUSBW=<GB/s> [SIM_ALPHA_US=<us>, default 10]: every all-reduce
 * also takes the time of a network that slow, tw_comm_sim_wrap, for docs/scaling.md's check;
 * BACKBONE_BN=sync: the backbone's BN synchronised over the ranks, model.backbone_bn: sync;
 * C_EXCHANGE=allgather: the embeddings all-gathered instead of C all-reduced, loss.c_exchange).
 * usage: bench_bt_step C SIZE BATCH STEPS WARMUP fp32|bf16|auto [PROJ_DIM]
 * prints: pairs_per_s=<median over steps> flops_per_pair=<FLOP> ms=<median step> precision=... */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/rng.h"
#include "dist/buckets.h"
#include "overlap.h"
#include "train/bt_task.h"
#include "train/step.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A number from the environment (def when unset); exits 2 naming the variable when it is not one. */
static double env_num(const char *name, double def) {
    const char *v = getenv(name);
    if (!v) return def;
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end) {
        fprintf(stderr, "bench_bt_step: %s='%s' is not a number\n", name, v);
        exit(2);
    }
    return x;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: %s C SIZE BATCH STEPS WARMUP fp32|bf16|auto [PROJ_DIM]\n", argv[0]);
        return 2;
    }
    int c = atoi(argv[1]), size = atoi(argv[2]), batch = atoi(argv[3]), steps = atoi(argv[4]);
    int warmup = atoi(argv[5]), dim = argc == 8 ? atoi(argv[7]) : 2048;
    tw_precision prec = !strcmp(argv[6], "bf16") ? TW_PREC_BF16 : !strcmp(argv[6], "fp32") ? TW_PREC_FP32 : TW_PREC_AUTO;
    if (c < 1 || size < 32 || batch < 2 || steps < 1 || warmup < 0 || dim < 16 || steps > 1000) {
        fprintf(stderr, "bench_bt_step: bad arguments\n");
        return 2;
    }
    tw_err err = {0};
    tw_comm *comm = NULL;
    if (tw_comm_create(&comm, tw_comm_kind_auto(0), NULL, NULL, &err) != TW_OK) {
        fprintf(stderr, "bench_bt_step: %s\n", err.msg);
        return 1;
    }
    if (getenv("SIM_BUSBW") &&
        tw_comm_sim_wrap(&comm, env_num("SIM_BUSBW", 0), env_num("SIM_ALPHA_US", 10.0), &err) != TW_OK) {
        fprintf(stderr, "bench_bt_step: %s\n", err.msg);
        return 2;
    }
    int rank = tw_comm_rank(comm), world = tw_comm_size(comm);
    if (batch % world) {
        fprintf(stderr, "bench_bt_step: batch %d is not a multiple of %d ranks\n", batch, world);
        return 2;
    }
    tw_backend *be = NULL;
    if (tw_backend_create(&be, TW_DEVICE_CPU, prec, 0, &err) != TW_OK) {
        fprintf(stderr, "bench_bt_step: %s\n", err.msg);
        return 1;
    }
    const char *bn = getenv("BACKBONE_BN");
    if (bn && strcmp(bn, "sync") && strcmp(bn, "local")) {
        fprintf(stderr, "bench_bt_step: BACKBONE_BN='%s' is not local or sync\n", bn);
        return 2;
    }
    const char *cx = getenv("C_EXCHANGE");
    if (cx && strcmp(cx, "allreduce") && strcmp(cx, "allgather")) {
        fprintf(stderr, "bench_bt_step: C_EXCHANGE='%s' is not allreduce or allgather\n", cx);
        return 2;
    }
    tw_bt_opts o = {.model = {.c_in = {c, c}, .h = size, .w = size, .n_local = batch / world, .bn_groups = 1,
                              .backbone_sync = bn && !strcmp(bn, "sync"), .proj_dim = dim},
                    .lambda = 0.0051f, .c_gather = cx && !strcmp(cx, "allgather")};
    int bucket_kib = (int)env_num("BUCKET_KIB", 4096);
    if (bucket_kib < 0 || bucket_kib > 1048576) {
        fprintf(stderr, "bench_bt_step: BUCKET_KIB=%d is not in [0, 1048576]\n", bucket_kib);
        return 2;
    }
    tw_step_opts so = {.bucket_elems = (size_t)bucket_kib * 1024 / sizeof(float), .graph = TW_GRAPH_AUTO};
    so.optim = (tw_optim_hparams){.kind = TW_OPTIM_KIND_ADAM, .lr = 1e-3, .lr_bias_scale = 1, .beta1 = 0.9,
                                  .beta2 = 0.999, .eps = 1e-8, .momentum = 0.9, .eta = 0.001};
    so.sched = (tw_schedule){.kind = TW_SCHEDULE_CONSTANT, .warmup_steps = 0, .total_steps = 1, .final_ratio = 1};
    tw_step *step = NULL;
    tw_task task = {0};
    tw_status st = tw_step_init(&step, be, comm, &err);
    if (st == TW_OK) st = tw_bt_task_init(&task, be, comm, &o, tw_step_bad(step), &err);
    if (st == TW_OK) st = tw_step_bind(step, &task, &so, &err);
    if (st == TW_OK) st = task.reset(&task, 1, &err);
    if (st != TW_OK) {
        fprintf(stderr, "bench_bt_step: %s\n", err.msg);
        return 1;
    }
    tw_bt_model *m = &tw_bt_task_of(&task)->m;
    size_t n_x = (size_t)o.model.n_local * c * size * size;
    float *x = malloc(2 * n_x * sizeof(float));
    TW_ASSERT(x);
    for (int v = 0; v < 2; v++) {
        tw_rng r;
        tw_rng_init(&r, 7, (uint32_t)rank, (uint32_t)v, 0);
        for (size_t i = 0; i < n_x; i++) x[v * n_x + i] = tw_rng_normal(&r);
    }
    tw_batch b = {.n = o.model.n_local, .h = size, .w = size};
    b.s2[0] = x;
    b.s2[1] = x + n_x;
    /* FLOPs of one pair: per view, every convolution forward, backward-weights and (but the
     * stem) backward-data, and the projector's three GEMMs forward and two backward each. */
    double conv = 0, conv_nostem = 0;
    for (int u = 0; u < TW_RESNET18_UNITS; u++) {
        const tw_resnet18_unit *q = &m->br[0].net.u[u];
        tw_tensor y = m->br[0].plans->conv_y[u];
        double f = 2.0 * q->c_out * q->c_in * q->kernel * q->kernel * y.h * y.w;
        conv += f;
        if (u) conv_nostem += f;
    }
    double proj = 2.0 * (512.0 * dim + 2.0 * dim * dim);
    double flops_pair = 2 * (2 * conv + conv_nostem + 3 * proj);
    tw_buckets *bk = tw_step_buckets(step);
    double *t = malloc((size_t)steps * sizeof(double)), wait_s = 0, sum_s = 0;
    for (int s = 0; s < warmup + steps; s++) {
        tw_comm_barrier(comm);
        double t0 = now_s();
        if (!isfinite(tw_loop_step(step, &b, NULL))) {
            fprintf(stderr, "bench_bt_step: non-finite loss or gradients at step %d\n", s + 1);
            return 1;
        }
        tw_backend_sync(be);
        tw_comm_barrier(comm);
        if (s >= warmup) {
            t[s - warmup] = now_s() - t0;
            sum_s += t[s - warmup];
            wait_s += tw_step_wait_s(step);
        }
    }
    if (world > 1)
        tw_bench_overlap_print(comm, "bt_step", bk, bucket_kib, sum_s / steps, wait_s / steps,
                               tw_bench_comm_alone_s(comm, bk, 5));
    qsort(t, (size_t)steps, sizeof *t, cmp_d);
    double med = steps % 2 ? t[steps / 2] : 0.5 * (t[steps / 2 - 1] + t[steps / 2]);
    char desc[256];
    tw_backend_describe(be, desc, sizeof desc);
    if (rank == 0)
        printf("pairs_per_s=%.3f flops_per_pair=%.4e ms=%.1f ranks=%d backend=\"%s\"\n", batch / med, flops_pair,
               1e3 * med, world, desc);
    free(t);
    free(x);
    tw_step_free(step);
    task.free(&task);
    tw_backend_free(be);
    tw_comm_free(comm);
    return 0;
}
