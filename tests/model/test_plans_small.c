/* ResNet18's plans at small images on this CPU: at 32x32 layer3 and layer4 run at 2x2 and 1x1,
 * where some layouts have only oneDNN's reference kernels (an S2 RGB step 50x slower on a Zen 3).
 * Fails if any pass of the chosen plans (every convolution's forward, backward-data and
 * backward-weights, every BN, the max pool) is a reference kernel, for 3 and 12 channels.
 * usage: test_plans_small [SIZE ...] (default 32); exit 0 pass, 1 fail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/log.h"
#include "model/resnet18.h"

static int check_impl(const char *what, int u, const char *impl) {
    int ref = strncmp(impl, "ref", 3) == 0 || strstr(impl, "=ref") != NULL;
    if (ref) printf("  FAIL %s of unit %d runs a reference kernel: %s\n", what, u, impl);
    return !ref;
}

static int check_size(tw_backend *be, int c, int size) {
    tw_err err = {0};
    tw_params P;
    tw_params_init(&P, be);
    tw_resnet18 m;
    TW_ASSERT(tw_resnet18_init(&m, &P, "", c, &err) == TW_OK);
    tw_resnet18_plans *p = NULL;
    int ok = 1;
    if (tw_resnet18_plans_make(&p, be, &m, 8, size, size, &err) != TW_OK) {
        printf("  FAIL c%d %dx%d: %s\n", c, size, size, err.msg);
        tw_params_free(&P);
        return 0;
    }
    for (int u = 0; u < TW_RESNET18_UNITS; u++) {
        ok &= check_impl("conv", u, tw_conv_plan_impl(p->conv[u]));
        ok &= check_impl("batch norm", u, tw_bn_plan_impl(p->bn[u]));
    }
    ok &= check_impl("max pool", 0, tw_maxpool_plan_impl(p->pool));
    printf("%s c%d %dx%d: activations %s, no reference kernel in any pass; %s\n",
           ok ? "  ok  " : "  FAIL", c, size, size,
           tw_layout_name(tw_conv_plan_y(p->conv[0]).layout), tw_conv_plan_choice(p->conv[0]));
    tw_resnet18_plans_free(p);
    tw_params_free(&P);
    return ok;
}

int main(int argc, char **argv) {
    tw_err err = {0};
    tw_backend *be = NULL;
    if (tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) != TW_OK) {
        printf("FAIL: backend: %s\n", err.msg);
        return 1;
    }
    char desc[256];
    tw_backend_describe(be, desc, sizeof desc);
    printf("# backend: %s\n", desc);
    int ok = 1;
    for (int i = 1; i < argc || i == 1; i++) {
        int size = 32;
        if (i < argc) {
            char *end;
            long v = strtol(argv[i], &end, 10);
            if (*end || v < 32 || v > 1024) {
                fprintf(stderr, "test_plans_small: bad size '%s'\n", argv[i]);
                return 1;
            }
            size = (int)v;
        }
        ok &= check_size(be, 3, size);
        ok &= check_size(be, 12, size);
    }
    tw_backend_free(be);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
