/* `twinfuse pretrain CONFIG [key=value ...]`: loads the configuration (src/config), starts the
 * communicator (one process, or MPI under mpirun / srun) and hands over to the loop in
 * src/train/pretrain.c. Run as one process or as every rank of `mpirun -np N`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "config/pretrain.h"
#include "core/log.h"
#include "dist/comm.h"
#include "train/pretrain.h"

static void usage(FILE *f) {
    fprintf(f, "usage: twinfuse pretrain CONFIG.yaml [key=value ...]\n"
               "       twinfuse pretrain --help     (every key, its default and range)\n"
               "       mpirun -np N twinfuse pretrain CONFIG.yaml ...   (data-parallel ranks)\n");
}

int tw_cmd_pretrain(int argc, char **argv) {
    if (argc >= 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))) {
        usage(stdout);
        tw_cfg_help(stdout, tw_pretrain_schema());
        return 0;
    }
    if (argc < 1 || strchr(argv[0], '=')) {
        usage(stderr);
        return 2;
    }
    const char *config_path = argv[0];
    tw_err err = {0};
    tw_pretrain_cfg *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return 1;
    /* The configuration first: a bad key fails before any rank starts MPI or allocates. */
    if (tw_cfg_load(tw_pretrain_schema(), cfg, config_path, argc - 1, argv + 1, &err) != TW_OK) {
        const char *r = getenv("OMPI_COMM_WORLD_RANK");
        if (!r || !strcmp(r, "0")) fprintf(stderr, "twinfuse pretrain: %s\n", err.msg);
        free(cfg);
        return 1;
    }
    tw_comm_kind kind = cfg->backend.comm == TW_CFG_COMM_SINGLE ? TW_COMM_SINGLE
                      : cfg->backend.comm == TW_CFG_COMM_MPI    ? TW_COMM_MPI
                      : cfg->backend.comm == TW_CFG_COMM_NCCL   ? TW_COMM_NCCL
                      : tw_comm_kind_auto(cfg->backend.device == TW_CFG_DEV_CUDA);
    tw_comm *comm = NULL;
    if (tw_comm_create(&comm, kind, NULL, NULL, &err) != TW_OK) {
        fprintf(stderr, "twinfuse pretrain: %s\n", err.msg);
        free(cfg);
        return 1;
    }
    char *yaml = tw_cfg_to_yaml(tw_pretrain_schema(), cfg);
    int code = tw_pretrain_run(comm, cfg, yaml, config_path);
    free(yaml);
    free(cfg);
    tw_comm_free(comm);
    return code;
}
