/* `twinfuse finetune CONFIG [key=value ...]`: multi-label classification from one source or S1+S2
 * fusion (src/train/finetune.c) on one process or every rank of `mpirun -np N`; the command line
 * is cli_run.c's. */
#include <stddef.h>

#include "cli/cli_run.h"
#include "cli/commands.h"
#include "config/finetune.h"
#include "train/finetune.h"

static int run(tw_comm *comm, const void *cfg, const char *yaml, const char *config_path) {
    return tw_finetune_run(comm, cfg, yaml, config_path);
}

int tw_cmd_finetune(int argc, char **argv) {
    return tw_cli_train_command("finetune",
                                "usage: twinfuse finetune CONFIG.yaml [key=value ...]\n"
                                "       twinfuse finetune --help     (every key, its default and range)\n"
                                "       mpirun -np N twinfuse finetune CONFIG.yaml ...   (data-parallel ranks)\n",
                                tw_finetune_schema(), offsetof(tw_finetune_cfg, backend), run, argc, argv);
}
