/* `twinfuse info`: version, the backends compiled in, the CPU ISA oneDNN dispatches to, the
 * default precision on this machine, and the GPUs seen (none is not an error). */
#include <stdio.h>

#include "backend/backend.h"
#include "cli/commands.h"

int tw_cmd_info(int argc, char **argv) {
    (void)argv;
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
    tw_backend_free(be);
    int n_gpus = tw_backend_device_count(TW_DEVICE_CUDA);
    printf("gpus: %d%s\n", n_gpus, n_gpus == 0 ? " (none visible)" : "");
    return 0;
}
