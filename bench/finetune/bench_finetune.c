/* One fine-tuning step (upload-free: forward, tw_bce_logits, backward with the gradient buckets'
 * all-reduce started as its stages finish, tw_train_apply with Adam) or one evaluation forward of
 * the classifier a fine-tuning configuration builds (train/classify.h), timed on random inputs;
 * bench/finetune/run compares it with torch_finetune.py. One process or every rank of mpirun
 * (BATCH is global); on more than one rank a training case also prints the '# comm' line of
 * bench/comm/overlap.h (BUCKET_KIB in the environment: the bucket size, default the config's).
 * usage: bench_finetune s2|fusion train|frozen|eval SIZE BATCH STEPS WARMUP fp32|bf16 [breakdown]
 *   s2: S2 12 bands, ResNet18 + linear head; fusion: S1 (2) + S2 (12) feature fusion, gated head.
 *   train: every layer learns; frozen: backbones frozen (TL), only the head; eval: forward only.
 * prints: images_per_s=<median over steps> flops_per_image=<FLOP> ms=<median> min_s= max_s=
 *         and with breakdown, '#' lines of per-phase and per-stage milliseconds (synchronised). */
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
#include "train/classify.h"
#include "train/update.h"

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
static double flops_per_image(const tw_cls *c, int mode) {
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

static void fill_random(tw_backend *be, float *dst, size_t n, uint32_t stream, int binary) {
    float *h = malloc(n * sizeof(float));
    TW_ASSERT(h);
    tw_rng r;
    tw_rng_init(&r, 7, stream, 0, 0);
    for (size_t i = 0; i < n; i++) h[i] = binary ? (float)(tw_rng_uniform(&r) < 0.2) : tw_rng_normal(&r);
    tw_mem_from_host(be, dst, h, n * sizeof(float));
    free(h);
}

int main(int argc, char **argv) {
    if (argc != 8 && argc != 9) {
        fprintf(stderr, "usage: %s s2|fusion train|frozen|eval SIZE BATCH STEPS WARMUP fp32|bf16 [breakdown]\n",
                argv[0]);
        return 2;
    }
    int fusion = !strcmp(argv[1], "fusion");
    int mode = !strcmp(argv[2], "train") ? 0 : !strcmp(argv[2], "frozen") ? 1 : !strcmp(argv[2], "eval") ? 2 : -1;
    int size = (int)arg_long(argv[3], "SIZE", 32, 1024), batch = (int)arg_long(argv[4], "BATCH", 2, 4096);
    int steps = (int)arg_long(argv[5], "STEPS", 1, 100000), warmup = (int)arg_long(argv[6], "WARMUP", 0, 1000);
    int bf16 = !strcmp(argv[7], "bf16"), breakdown = argc == 9 && !strcmp(argv[8], "breakdown");
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
    tw_cls c;
    if (tw_cls_init(&c, be, comm, &cfg, n, 1, mode != 2, &err) != TW_OK ||
        tw_cls_init_weights(&c, 1, &err) != TW_OK) {
        fprintf(stderr, "bench_finetune: %s\n", err.msg);
        return 1;
    }
    size_t plane = (size_t)n * size * size;
    if (c.x_s1) fill_random(be, c.x_s1, plane * c.c_s1, 1, 0);
    if (c.x_s2) fill_random(be, c.x_s2, plane * c.c_s2, 2, 0);
    fill_random(be, c.targets, (size_t)n * c.k, 3, 1);

    tw_param_seg *segs = malloc(sizeof *segs * (size_t)(c.P.n_segs + 1));
    double *scale = malloc(sizeof *scale * (size_t)(c.P.n_segs + 1));
    TW_ASSERT(segs && scale);
    int n_segs = tw_cls_trainable(&c, cfg.model.backbone_lr_scale, segs, scale);
    tw_optim_hparams h = {.kind = TW_OPTIM_KIND_ADAM, .lr = 1e-4, .lr_bias_scale = 1, .beta1 = 0.9,
                          .beta2 = 0.999, .eps = 1e-8, .momentum = 0.9, .eta = 0.001};
    tw_schedule sched = {.kind = TW_SCHEDULE_CONSTANT, .total_steps = 1, .final_ratio = 1};
    tw_optim *o = NULL;
    if (mode != 2 && tw_optim_create_scaled(&o, be, segs, scale, n_segs, c.P.n_params, &h, &sched, &err) != TW_OK) {
        fprintf(stderr, "bench_finetune: %s\n", err.msg);
        return 1;
    }
    tw_grad_span span = tw_grad_span_of(segs, n_segs);
    const char *kib_env = getenv("BUCKET_KIB");
    int bucket_kib = kib_env ? (int)arg_long(kib_env, "BUCKET_KIB", 0, 1048576) : cfg.backend.bucket_kib;
    tw_buckets *bk = NULL;
    if (tw_buckets_create(&bk, comm, c.P.grads + span.offset, span.offset, span.n_elems,
                          (size_t)bucket_kib * 1024 / sizeof(float), &err) != TW_OK) {
        fprintf(stderr, "bench_finetune: %s\n", err.msg);
        return 1;
    }
    tw_grad_ready ready = tw_buckets_hook(bk);
    double wait_s = 0;

    enum { PH_FWD, PH_LOSS, PH_BWD, PH_UPDATE, PHASES };
    static const char *const phase_names[PHASES] = {"forward", "loss", "backward", "update"};
    double phase_s[PHASES] = {0}, *t = malloc((size_t)steps * sizeof(double));
    TW_ASSERT(t);
    for (int s = 0; s < warmup + steps; s++) {
        if (breakdown && s == warmup)
            for (int i = 0; i < c.m.n_nets; i++) {
                c.plans->net[i]->timing = 1;
                memset(c.plans->net[i]->time_s, 0, sizeof c.plans->net[i]->time_s);
            }
        /* Ranks start each step together, so that waiting for the buckets is communication, not
         * the skew a shared machine leaves between ranks from earlier steps. */
        if (world > 1) tw_comm_barrier(comm);
        double t0 = now_s(), tp[PHASES + 1];
        tp[0] = t0;
        tw_mem_zero(be, c.bad, sizeof(int));
        tw_classifier_forward(&c.acts, c.x_s1, c.x_s2, &c.m, c.plans, mode != 2);
        if (breakdown) tw_backend_sync(be);
        tp[1] = now_s();
        tp[2] = tp[3] = tp[4] = tp[1];
        if (mode != 2) {
            double loss = tw_bce_logits(be, c.acts.dlogits, c.acts.logits, c.targets, n, c.k);
            tp[2] = now_s();
            tw_buckets_begin(bk);
            tw_classifier_backward(&c.m, &c.acts, c.acts.dlogits, c.plans, &ready);
            if (breakdown) tw_backend_sync(be);
            tp[3] = now_s();
            double w = tw_buckets_wait(bk);
            if (s >= warmup) wait_s += w;
            if (!isfinite(loss) || !isfinite(tw_train_apply(be, &c.P, o, span, TW_GRAD_MEAN, world, c.bad))) {
                fprintf(stderr, "bench_finetune: non-finite loss or gradients at step %d\n", s + 1);
                return 1;
            }
        }
        tw_backend_sync(be);
        tp[4] = now_s();
        if (s >= warmup) {
            t[s - warmup] = tp[4] - t0;
            for (int p = 0; p < PHASES; p++) phase_s[p] += tp[p + 1] - tp[p];
        }
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
        tw_bench_overlap_print(comm, name, bk, bucket_kib, mean, wait_s / steps, tw_bench_comm_alone_s(comm, bk, 5));
    }
    if (tw_comm_rank(comm) == 0) printf("# twinfuse %s\n", desc);
    if (tw_comm_rank(comm) == 0) printf("twinfuse model=%s mode=%s images_per_s=%.3f flops_per_image=%.6e ms=%.1f min_s=%.4f max_s=%.4f\n",
           argv[1], argv[2], batch / med, flops_per_image(&c, mode), 1e3 * med, t[0], t[steps - 1]);
    if (breakdown && tw_comm_rank(comm) == 0) {
        printf("# per phase, ms per step (synchronised; %d steps):", steps);
        for (int p = 0; p < PHASES; p++) printf(" %s %.1f", phase_names[p], 1e3 * phase_s[p] / steps);
        printf("\n");
        for (int i = 0; i < c.m.n_nets; i++) {
            const tw_resnet18_plans *p = c.plans->net[i];
            printf("# per stage of backbone %d (C=%d), ms per step:\n", i, p->c);
            printf("#   %-8s %9s %9s\n", "stage", "forward", "backward");
            for (int st = 0; st < TW_RESNET18_STAGES; st++)
                printf("#   %-8s %9.2f %9.2f\n", tw_resnet18_stage_names[st], 1e3 * p->time_s[st][0] / steps,
                       1e3 * p->time_s[st][1] / steps);
        }
    }
    free(t);
    tw_buckets_free(bk);
    free(segs);
    free(scale);
    tw_optim_free(o);
    tw_cls_free(&c);
    tw_backend_free(be);
    tw_comm_free(comm);
    return 0;
}
