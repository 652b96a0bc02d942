/* One fine-tuning step — the product's, tw_loop_step (src/train/step.c) on the finetune task: the
 * batch's upload, forward, tw_bce_logits, backward with the gradient buckets' all-reduce started
 * as its stages finish, the checked Adam update — or one evaluation forward of
 * the classifier a fine-tuning configuration builds (train/classifier_run.h), timed on random inputs;
 * bench/finetune/run compares it with torch_finetune.py. One process or every rank of mpirun
 * (BATCH is global); on more than one rank a training case also prints the '# comm' line of
 * bench/comm/overlap.h (BUCKET_KIB in the environment: the bucket size, default the config's).
 * usage: bench_finetune s2|fusion train|frozen|eval SIZE BATCH STEPS WARMUP fp32|bf16
 *   s2: S2 12 bands, ResNet18 + linear head; fusion: S1 (2) + S2 (12) feature fusion, gated head.
 *   train: every layer learns; frozen: backbones frozen (TL), only the head; eval: forward only.
 * prints: images_per_s=<median over steps> flops_per_image=<FLOP> ms=<median> min_s= max_s=
 * (the step is timed whole, from outside: the model code keeps no timers). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/finetune.h"
#include "core/log.h"
#include "core/rng.h"
#include "dist/buckets.h"
#include "optim/optim.h"
#include "overlap.h"
#include "train/classifier_run.h"
#include "train/finetune.h"
#include "train/step.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long arg_long(const char *s, const char *what, long lo, long hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "bench_finetune: %s '%s' not in [%ld, %ld]\n", what, s, lo, hi);
        exit(2);
    }
    return v;
}

/* Convolution FLOPs (2 x multiply-adds) of one image through one backbone's forward; *stem gets
 * the stem's share (it needs no backward-data). BN, pooling and adds are not counted. */
static double conv_flops(const tw_resnet18 *m, const tw_resnet18_plans *p, double *stem) {
    double fwd = 0;
    for (int u = 0; u < TW_RESNET18_UNITS; u++) {
        const tw_tensor *y = &p->conv_y[u];
        double f = 2.0 * m->u[u].c_in * m->u[u].kernel * m->u[u].kernel * y->c * y->h * y->w;
        fwd += f;
        if (u == 0) *stem = f;
    }
    return fwd;
}

/* FLOPs per image of the timed work: eval = forward; frozen = backbone forwards + head forward and
 * backward (weights and input); train = 3 x forward less the stems' backward-data. */
static double flops_per_image(const tw_classifier_run *c, int mode) {
    double nets = 0, nets_step = 0, head = 0;
    for (int i = 0; i < c->m.n_nets; i++) {
        double stem = 0, f = conv_flops(&c->m.net[i], c->plans->net[i], &stem);
        nets += f;
        nets_step += 3 * f - stem;
    }
    int in = c->m.d_feat;
    for (int l = 0; l < c->m.n_layers; l++) {
        head += 2.0 * in * c->m.d_out[l];
        in = c->m.d_out[l];
    }
    return mode == 2 ? nets + head : mode == 1 ? nets + 3 * head : nets_step + 3 * head;
}

/* n random host floats (normal, or 0/1 labels), freed by the caller. */
static float *random_host(size_t n, uint32_t stream, int binary) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    TW_ASSERT(h);
    tw_rng r;
    tw_rng_init(&r, 7, stream, 0, 0);
    for (size_t i = 0; i < n; i++) h[i] = binary ? (float)(tw_rng_uniform(&r) < 0.2) : tw_rng_normal(&r);
    return h;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s s2|fusion train|frozen|eval SIZE BATCH STEPS WARMUP fp32|bf16\n",
                argv[0]);
        return 2;
    }
    int fusion = !strcmp(argv[1], "fusion");
    int mode = !strcmp(argv[2], "train") ? 0 : !strcmp(argv[2], "frozen") ? 1 : !strcmp(argv[2], "eval") ? 2 : -1;
    int size = (int)arg_long(argv[3], "SIZE", 32, 1024), batch = (int)arg_long(argv[4], "BATCH", 2, 4096);
    int steps = (int)arg_long(argv[5], "STEPS", 1, 100000), warmup = (int)arg_long(argv[6], "WARMUP", 0, 1000);
    int bf16 = !strcmp(argv[7], "bf16");
    if ((!fusion && strcmp(argv[1], "s2")) || mode < 0 || (!bf16 && strcmp(argv[7], "fp32"))) {
        fprintf(stderr, "bench_finetune: bad model '%s', mode '%s' or precision '%s'\n", argv[1], argv[2], argv[7]);
        return 2;
    }
    tw_err err = {0};
    char o_size[64], o_batch[64];
    snprintf(o_size, sizeof o_size, "data.size=%d", size);
    snprintf(o_batch, sizeof o_batch, "data.batch=%d", batch);
    char *ov[] = {"data.shards=unused", fusion ? "data.source=s1+s2" : "data.source=s2", "data.s2_bands=all",
                  fusion ? "model.fusion=feature" : "model.fusion=none",
                  fusion ? "model.head=gated" : "model.head=concat-linear",
                  mode == 1 ? "model.mode=frozen" : "model.mode=finetune", o_size, o_batch};
    tw_finetune_cfg cfg;
    tw_comm *comm = NULL;
    tw_backend *be = NULL;
    if (tw_cfg_load(tw_finetune_schema(), &cfg, NULL, (int)(sizeof ov / sizeof *ov), ov, &err) != TW_OK ||
        tw_comm_create(&comm, tw_comm_kind_auto(0), NULL, NULL, &err) != TW_OK) {
        fprintf(stderr, "bench_finetune: %s\n", err.msg);
        return 1;
    }
    if (tw_backend_create(&be, TW_DEVICE_CPU, bf16 ? TW_PREC_BF16 : TW_PREC_FP32, 0, &err) != TW_OK) {
        fprintf(stderr, "bench_finetune: %s\n", err.msg);
        return err.code == TW_E_UNSUPPORTED ? 77 : 1;
    }
    int world = tw_comm_size(comm), n = batch / world;
    if (batch % world) {
        fprintf(stderr, "bench_finetune: batch %d is not a multiple of %d ranks\n", batch, world);
        return 2;
    }
    const char *kib_env = getenv("BUCKET_KIB");
    int bucket_kib = kib_env ? (int)arg_long(kib_env, "BUCKET_KIB", 0, 1048576) : cfg.backend.bucket_kib;
    /* Training: the task and the product's step; evaluation: the classifier alone. */
    tw_step *step = NULL;
    tw_task task = {0};
    tw_classifier_run eval_c, *c = &eval_c;
    tw_status st = TW_OK;
    if (mode != 2) {
        tw_step_opts so = {.bucket_elems = (size_t)bucket_kib * 1024 / sizeof(float), .graph = TW_GRAPH_AUTO};
        so.optim = (tw_optim_hparams){.kind = TW_OPTIM_KIND_ADAM, .lr = 1e-4, .lr_bias_scale = 1, .beta1 = 0.9,
                                      .beta2 = 0.999, .eps = 1e-8, .momentum = 0.9, .eta = 0.001};
        so.sched = (tw_schedule){.kind = TW_SCHEDULE_CONSTANT, .total_steps = 1, .final_ratio = 1};
        st = tw_step_init(&step, be, comm, &err);
        if (st == TW_OK) st = tw_finetune_task_init(&task, be, comm, &cfg, 1, tw_step_bad(step), NULL, &err);
        if (st == TW_OK) st = task.reset(&task, 1, &err);
        if (st == TW_OK) st = tw_step_bind(step, &task, &so, &err);
        if (st == TW_OK) c = tw_finetune_task_classifier(&task);
    } else {
        st = tw_classifier_run_init(c, be, comm, &cfg, n, 1, 0, &err);
        if (st == TW_OK) st = tw_classifier_run_init_weights(c, 1, &err);
    }
    if (st != TW_OK) {
        fprintf(stderr, "bench_finetune: %s\n", err.msg);
        return 1;
    }
    size_t plane = (size_t)n * size * size;
    tw_batch b = {.n = n, .n_views = 1, .c_s1 = c->c_s1, .c_s2 = c->c_s2, .h = size, .w = size, .n_classes = c->k};
    if (c->x_s1) b.s1[0] = random_host(plane * c->c_s1, 1, 0);
    if (c->x_s2) b.s2[0] = random_host(plane * c->c_s2, 2, 0);
    b.labels = random_host((size_t)n * c->k, 3, 1);
    tw_classifier_run_upload(c, &b);
    double wait_s = 0, *t = malloc((size_t)steps * sizeof(double));
    TW_ASSERT(t);
    for (int s = 0; s < warmup + steps; s++) {
        /* Ranks start each step together, so that waiting for the buckets is communication, not
         * the skew a shared machine leaves between ranks from earlier steps. */
        if (world > 1) tw_comm_barrier(comm);
        double t0 = now_s();
        if (mode != 2) {
            if (!isfinite(tw_loop_step(step, &b, NULL))) {
                fprintf(stderr, "bench_finetune: non-finite loss or gradients at step %d\n", s + 1);
                return 1;
            }
            if (s >= warmup) wait_s += tw_step_wait_s(step);
        } else {
            tw_classifier_forward(&c->acts, c->x_s1, c->x_s2, &c->m, c->plans, 0);
        }
        tw_backend_sync(be);
        if (s >= warmup) t[s - warmup] = now_s() - t0;
    }
    qsort(t, (size_t)steps, sizeof *t, cmp_d);
    double med = steps % 2 ? t[steps / 2] : 0.5 * (t[steps / 2 - 1] + t[steps / 2]);
    char desc[256];
    tw_backend_describe(be, desc, sizeof desc);
    if (world > 1 && mode != 2) {
        char name[64];
        snprintf(name, sizeof name, "finetune_%s_%s", argv[1], argv[2]);
        double mean = 0;
        for (int i = 0; i < steps; i++) mean += t[i] / steps;
        tw_buckets *bk = tw_step_buckets(step);
        tw_bench_overlap_print(comm, name, bk, bucket_kib, mean, wait_s / steps, tw_bench_comm_alone_s(comm, bk, 5));
    }
    if (tw_comm_rank(comm) == 0) printf("# twinfuse %s\n", desc);
    if (tw_comm_rank(comm) == 0) printf("twinfuse model=%s mode=%s images_per_s=%.3f flops_per_image=%.6e ms=%.1f min_s=%.4f max_s=%.4f\n",
           argv[1], argv[2], batch / med, flops_per_image(c, mode), 1e3 * med, t[0], t[steps - 1]);
    free(t);
    free(b.s1[0]);
    free(b.s2[0]);
    free(b.labels);
    if (mode != 2) {
        tw_step_free(step);
        task.free(&task);
    } else {
        tw_classifier_run_free(c);
    }
    tw_backend_free(be);
    tw_comm_free(comm);
    return 0;
}
