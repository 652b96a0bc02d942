/* `twinfuse info`: version, the backends compiled in, the CPU ISA oneDNN dispatches to, the
 * default precision and activation layout on this machine, and the GPUs seen (none is not an
 * error). */
#include <stdio.h>

#include "backend/backend.h"
#include "cli/cli_run.h"
#include "cli/commands.h"
#include "model/resnet18.h"

int tw_cmd_info(int argc, char **argv) {
    if (tw_cli_wants_help(argc, argv)) {
        printf("usage: twinfuse info\n");
        return 0;
    }
    if (argc != 0) {
        fprintf(stderr, "usage: twinfuse info\n");
        return 2;
    }
    printf("twinfuse %s\n", TW_VERSION);
    printf("backends: cpu%s\n", tw_backend_available(TW_DEVICE_CUDA) ? " cuda" : "");
#ifdef TW_HAVE_MPI
    printf("communicators: single mpi%s\n", tw_backend_available(TW_DEVICE_CUDA) ? " nccl" : "");
#else
    printf("communicators: single%s\n", tw_backend_available(TW_DEVICE_CUDA) ? " nccl" : "");
#endif
    tw_err err = {0};
    tw_backend *be = NULL;
    if (tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_AUTO, 0, &err) != TW_OK) {
        fprintf(stderr, "twinfuse: cpu backend: %s\n", err.msg);
        return 1;
    }
    char line[256];
    tw_backend_describe(be, line, sizeof line);
    printf("cpu: %s\n", line);
    printf("default precision (auto): %s\n", tw_backend_act_dtype(be) == TW_BF16 ? "bf16" : "fp32");
    /* The backend picks the network's activation layout by timing ResNet18's layers in each
     * candidate layout, once per shape (then from its cache): what it chose for batch 64. */
    for (int c = 2; c <= 12; c += c == 2 ? 1 : 9) {
        for (int size = 32; size <= 120; size += 88) {
            tw_params P;
            tw_params_init(&P, be);
            tw_resnet18 m;
            tw_conv_plan *p = NULL;
            tw_net_shape net;
            if (tw_resnet18_init(&m, &P, "", c, &err) == TW_OK) {
                tw_resnet18_net_shape(&m, 64, size, size, &net);
                tw_conv_desc d = {64, c, size, size, 64, 7, 2, 3, 0, TW_LAYOUT_NCHW, 1, &net};
                if (tw_conv_plan_make(be, &p, &d, &err) == TW_OK) {
                    printf("layout (%d channels, %dx%d): image %s, activations %s\n  timed: %s\n",
                           c, size, size, tw_layout_name(tw_conv_plan_x(p).layout),
                           tw_layout_name(tw_conv_plan_y(p).layout), tw_conv_plan_choice(p));
                    tw_conv_plan_free(be, p);
                }
            }
            if (!p && err.msg[0]) printf("layout (%d channels, %dx%d): none: %s\n", c, size, size, err.msg);
            tw_params_free(&P);
        }
    }
    tw_backend_free(be);
    int n_gpus = tw_backend_device_count(TW_DEVICE_CUDA);
    printf("gpus: %d%s\n", n_gpus, n_gpus == 0 ? " (none visible)" : "");
    return 0;
}
