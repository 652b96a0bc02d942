/* One ResNet18 training step without the optimizer (train-mode forward, backward to every weight
 * gradient from a fixed dfeats) on random NCHW f32 input, timed; the PyTorch peer and the
 * alternation live in torch_resnet18.py and run.
 * usage: bench_resnet18 C SIZE BATCH STEPS WARMUP fp32|bf16 [breakdown]
 * prints: twinfuse c=<C> images_per_s=<median over steps> flops_per_image=<fwd+bwd FLOPs>
 *         and with breakdown, '#' lines naming the backend's kernel behind each unit (the model
 *         code keeps no timers: this benchmark times the whole step from outside). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "core/log.h"
#include "core/rng.h"
#include "model/resnet18.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long arg_long(const char *s, const char *what, long lo, long hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "bench_resnet18: %s '%s' not in [%ld, %ld]\n", what, s, lo, hi);
        exit(2);
    }
    return v;
}

/* Multiply-adds x 2 of every convolution: forward, backward-data (all but the stem) and
 * backward-weights; BN, pooling and adds are not counted (as PyTorch's flop counters do). */
static double step_flops_per_image(const tw_resnet18 *m, const tw_resnet18_plans *p) {
    double fwd = 0, stem = 0;
    for (int u = 0; u < TW_RESNET18_UNITS; u++) {
        const tw_tensor *y = &p->conv_y[u];
        double f = 2.0 * m->u[u].c_in * m->u[u].kernel * m->u[u].kernel * y->c * y->h * y->w;
        fwd += f;
        if (u == 0) stem = f;
    }
    return 3.0 * fwd - stem;
}

int main(int argc, char **argv) {
    if (argc < 7 || argc > 8) {
        fprintf(stderr, "usage: bench_resnet18 C SIZE BATCH STEPS WARMUP fp32|bf16 [breakdown]\n");
        return 2;
    }
    int c = (int)arg_long(argv[1], "C", 1, 64), size = (int)arg_long(argv[2], "SIZE", 32, 1024);
    int batch = (int)arg_long(argv[3], "BATCH", 1, 4096);
    int steps = (int)arg_long(argv[4], "STEPS", 1, 100000), warmup = (int)arg_long(argv[5], "WARMUP", 0, 1000);
    int bf16 = !strcmp(argv[6], "bf16"), breakdown = argc == 8 && !strcmp(argv[7], "breakdown");
    if (!bf16 && strcmp(argv[6], "fp32")) {
        fprintf(stderr, "bench_resnet18: precision '%s' (want fp32 or bf16)\n", argv[6]);
        return 2;
    }
    tw_err err = {0};
    tw_backend *be = NULL;
    if (tw_backend_create(&be, TW_DEVICE_CPU, bf16 ? TW_PREC_BF16 : TW_PREC_FP32, 0, &err) != TW_OK) {
        fprintf(stderr, "bench_resnet18: %s\n", err.msg);
        return err.code == TW_E_UNSUPPORTED ? 77 : 1;
    }
    tw_params P;
    tw_params_init(&P, be);
    tw_resnet18 m;
    TW_ASSERT(tw_resnet18_init(&m, &P, "", c, &err) == TW_OK);
    tw_params_alloc(&P, 0);
    tw_resnet18_init_weights(&m, 1);
    tw_resnet18_plans *p = NULL;
    if (tw_resnet18_plans_make(&p, be, &m, batch, size, size, &err) != TW_OK) {
        fprintf(stderr, "bench_resnet18: %s\n", err.msg);
        return 1;
    }
    tw_resnet18_acts a;
    tw_resnet18_acts_make(&a, p);
    size_t n_x = (size_t)batch * c * size * size, n_f = (size_t)batch * TW_RESNET18_FEATS;
    float *hx = malloc(n_x * sizeof(float)), *hd = malloc(n_f * sizeof(float));
    tw_rng r;
    tw_rng_init(&r, 7, 0, 0, 0);
    for (size_t i = 0; i < n_x; i++) hx[i] = tw_rng_normal(&r);
    for (size_t i = 0; i < n_f; i++) hd[i] = tw_rng_normal(&r);
    float *x = tw_mem_alloc(be, n_x * sizeof(float)), *dfeats = tw_mem_alloc(be, n_f * sizeof(float));
    tw_mem_from_host(be, x, hx, n_x * sizeof(float));
    tw_mem_from_host(be, dfeats, hd, n_f * sizeof(float));

    double *t = malloc((size_t)steps * sizeof(double));
    for (int i = 0; i < warmup + steps; i++) {
        double t0 = now_s();
        tw_resnet18_forward(&a, x, &m, p, 1);
        tw_resnet18_backward(&m, &a, dfeats, p, 0, NULL, 0);
        tw_backend_sync(be);
        if (i >= warmup) t[i - warmup] = now_s() - t0;
    }
    qsort(t, steps, sizeof *t, cmp_double);
    double med = t[steps / 2];
    char desc[256];
    tw_backend_describe(be, desc, sizeof desc);
    printf("# twinfuse %s\n", desc);
    printf("twinfuse c=%d images_per_s=%.3f flops_per_image=%.6e min_s=%.4f max_s=%.4f\n", c,
           batch / med, step_flops_per_image(&m, p), t[0], t[steps - 1]);
    if (breakdown) {
        /* The kernels behind each unit: the backend's names (conv, then its BN). */
        printf("# per unit, kernels (stem input %s, activations %s):\n", tw_layout_name(p->x_stem.layout),
               tw_layout_name(p->conv_y[0].layout));
        for (int u = 0; u < TW_RESNET18_UNITS; u++) {
            const tw_resnet18_unit *q = &m.u[u];
            printf("#   unit %2d %dx%d %4d->%-4d conv %s | bn %s\n", u, q->kernel, q->kernel,
                   q->c_in, q->c_out, tw_conv_plan_impl(p->conv[u]), tw_bn_plan_impl(p->bn[u]));
        }
        printf("#   maxpool %s\n", tw_maxpool_plan_impl(p->pool));
    }
    free(t);
    free(hx);
    free(hd);
    tw_mem_free(be, x);
    tw_mem_free(be, dfeats);
    tw_resnet18_acts_free(&a, be);
    tw_resnet18_plans_free(p);
    tw_params_free(&P);
    tw_backend_free(be);
    return 0;
}
