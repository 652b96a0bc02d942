/* Per-layer convolution throughput on the CPU backend: ResNet18's convolutions at 120x120
 * (batch from argv, default 64), forward, backward-data and backward-weights in GFLOP/s, at the
 * backend's precision (argv: fp32 | bf16 | auto), with the layouts the plans chain through.
 * Prints one `bench conv ...` line per layer and pass; medians of a few repetitions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"

typedef struct { const char *name; int c_in, c_out, hw, k, s, p, n_layers; } layer;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    tw_precision prec = TW_PREC_FP32;
    int batch = 64, reps = 5, c_img = 3;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "bf16") == 0) prec = TW_PREC_BF16;
        else if (strcmp(argv[i], "fp32") == 0) prec = TW_PREC_FP32;
        else if (strcmp(argv[i], "auto") == 0) prec = TW_PREC_AUTO;
        else if (strncmp(argv[i], "batch=", 6) == 0) batch = (int)strtol(argv[i] + 6, &end, 10);
        else if (strncmp(argv[i], "reps=", 5) == 0) reps = (int)strtol(argv[i] + 5, &end, 10);
        else if (strncmp(argv[i], "c=", 2) == 0) c_img = (int)strtol(argv[i] + 2, &end, 10);
        else {
            fprintf(stderr, "usage: %s [fp32|bf16|auto] [batch=N] [reps=N] [c=N]\n", argv[0]);
            return 2;
        }
        if (end && *end) {
            fprintf(stderr, "bad number in %s\n", argv[i]);
            return 2;
        }
    }
    if (batch < 1 || reps < 1 || reps > 100 || c_img < 1) {
        fprintf(stderr, "batch, reps and c must be positive (reps <= 100)\n");
        return 2;
    }
    tw_backend *be = NULL;
    tw_err err = {0};
    if (tw_backend_create(&be, TW_DEVICE_CPU, prec, 0, &err) != TW_OK) {
        fprintf(stderr, "backend: %s\n", err.msg);
        return 1;
    }
    char line[256];
    tw_backend_describe(be, line, sizeof line);
    printf("# %s batch=%d reps=%d\n", line, batch, reps);
    const layer layers[] = {
        {"stem7x7", c_img, 64, 120, 7, 2, 3, 1}, {"l1.3x3", 64, 64, 30, 3, 1, 1, 4},
        {"l2.3x3s2", 64, 128, 30, 3, 2, 1, 1},    {"l2.1x1s2", 64, 128, 30, 1, 2, 0, 1},
        {"l2.3x3", 128, 128, 15, 3, 1, 1, 3},     {"l3.3x3s2", 128, 256, 15, 3, 2, 1, 1},
        {"l3.1x1s2", 128, 256, 15, 1, 2, 0, 1},  {"l3.3x3", 256, 256, 8, 3, 1, 1, 3},
        {"l4.3x3s2", 256, 512, 8, 3, 2, 1, 1},    {"l4.1x1s2", 256, 512, 8, 1, 2, 0, 1},
        {"l4.3x3", 512, 512, 4, 3, 1, 1, 3},
    };
    tw_layout chained = TW_LAYOUT_NCHW;
    double total_ms = 0, total_gflop = 0;
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        const layer *L = &layers[li];
        tw_layout xl = li == 0 ? TW_LAYOUT_NCHW : chained;
        tw_conv_desc d = {batch, L->c_in, L->hw, L->hw, L->c_out, L->k, L->s, L->p, li != 0, xl, li == 0, NULL};
        tw_conv_plan *p = NULL;
        if (tw_conv_plan_make(be, &p, &d, &err) != TW_OK) {
            fprintf(stderr, "%s: %s\n", L->name, err.msg);
            return 1;
        }
        tw_tensor y = tw_conv_plan_y(p);
        if (li == 0) chained = y.layout;
        tw_tensor x = tw_conv_plan_x(p);
        xl = x.layout;
        x.data = tw_mem_alloc(be, tw_tensor_bytes(&x));
        y.data = tw_mem_alloc(be, tw_tensor_bytes(&y));
        tw_tensor dx = x, dy = y;
        dx.data = tw_mem_alloc(be, tw_tensor_bytes(&x));
        dy.data = tw_mem_alloc(be, tw_tensor_bytes(&y));
        tw_mem_zero(be, x.data, tw_tensor_bytes(&x));
        tw_mem_zero(be, dy.data, tw_tensor_bytes(&y));
        size_t nw = (size_t)L->c_out * L->c_in * L->k * L->k;
        float *w = tw_mem_alloc(be, nw * 4), *dw = tw_mem_alloc(be, nw * 4);
        for (size_t i = 0; i < nw; i++) w[i] = 0.01f * (float)(i % 7);
        double gflop = 2.0 * batch * L->c_out * y.h * y.w * (double)L->c_in * L->k * L->k * 1e-9;
        double t[3][100];
        for (int r = -1; r < reps; r++) {   /* r = -1: warm-up */
            double t0 = now_s();
            tw_conv_forward(be, p, &y, &x, w);
            double t1 = now_s();
            if (d.need_dx) tw_conv_backward_data(be, p, &dx, &dy, w);
            double t2 = now_s();
            tw_conv_backward_weights(be, p, dw, &dy, &x);
            double t3 = now_s();
            if (r >= 0) {
                t[0][r] = t1 - t0;
                t[1][r] = t2 - t1;
                t[2][r] = t3 - t2;
            }
        }
        const char *pass[3] = {"fwd", "bwd_data", "bwd_weights"};
        for (int k = 0; k < 3; k++) {
            if (k == 1 && !d.need_dx) continue;
            qsort(t[k], reps, sizeof(double), cmp_d);
            double med = t[k][reps / 2];
            printf("bench conv.%s.%s twinfuse=%.1f unit=GFLOP/s ms=%.2f x_layout=%s y_layout=%s "
                   "layers=%d\n",
                   L->name, pass[k], gflop / med, med * 1e3, tw_layout_name(xl),
                   tw_layout_name(y.layout), L->n_layers);
            total_ms += med * 1e3 * L->n_layers;
            total_gflop += gflop * L->n_layers;
        }
        tw_mem_free(be, x.data); tw_mem_free(be, y.data); tw_mem_free(be, dx.data);
        tw_mem_free(be, dy.data); tw_mem_free(be, w); tw_mem_free(be, dw);
        tw_conv_plan_free(be, p);
    }
    printf("bench conv.resnet18_step twinfuse=%.1f unit=GFLOP/s ms=%.1f (one view, fwd+bwd)\n",
           total_gflop / (total_ms * 1e-3), total_ms);
    tw_backend_free(be);
    return 0;
}
