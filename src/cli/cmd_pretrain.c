/* `twinfuse pretrain CONFIG [key=value ...]`: Barlow Twins pre-training (src/train/pretrain.c) on
 * one process or every rank of `mpirun -np N`; the command line is cli_run.c's. */
#include <stddef.h>

#include "cli/cli_run.h"
#include "cli/commands.h"
#include "config/pretrain.h"
#include "train/pretrain.h"

static int run(tw_comm *comm, const void *cfg, const char *yaml, const char *config_path) {
    return tw_pretrain_run(comm, cfg, yaml, config_path);
}

int tw_cmd_pretrain(int argc, char **argv) {
    return tw_cli_train_command("pretrain",
                                "usage: twinfuse pretrain CONFIG.yaml [key=value ...]\n"
                                "       twinfuse pretrain --help     (every key, its default and range)\n"
                                "       mpirun -np N twinfuse pretrain CONFIG.yaml ...   (data-parallel ranks)\n",
                                tw_pretrain_schema(), offsetof(tw_pretrain_cfg, backend), run, argc, argv);
}
