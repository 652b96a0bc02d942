/* `twinfuse export CHECKPOINT OUT [prefix=backbone.]`: the ResNet18 backbone of a twinfuse
 * checkpoint as a torchvision state_dict in safetensors (resnet18().load_state_dict(sd,
 * strict=False) takes it with only fc.* missing). The rest of the checkpoint is left out. */
#include <stdio.h>
#include <string.h>

#include "cli/cli_run.h"
#include "cli/commands.h"
#include "model/resnet18_io.h"

int tw_cmd_export(int argc, char **argv) {
    if (tw_cli_wants_help(argc, argv)) {
        printf("usage: twinfuse export CHECKPOINT OUT.safetensors [prefix=backbone.]\n");
        return 0;
    }
    const char *prefix = "backbone.";
    if (argc == 3 && !strncmp(argv[2], "prefix=", 7)) prefix = argv[2] + 7;
    if (argc < 2 || argc > 3 || (argc == 3 && strncmp(argv[2], "prefix=", 7))) {
        fprintf(stderr, "usage: twinfuse export CHECKPOINT OUT.safetensors [prefix=backbone.]\n");
        return 2;
    }
    tw_err err = {0};
    tw_resnet18_convert_opts o = {.src_prefix = prefix, .dst_prefix = "", .ignore_prefix = NULL,
                                  .allow_extra = 1, .format = "torchvision-resnet18"};
    if (tw_resnet18_convert(argv[1], argv[0], &o, &err) != TW_OK) {
        fprintf(stderr, "twinfuse export: %s\n", err.msg);
        return 1;
    }
    printf("# exported the ResNet18 under '%s' in %s to %s (torchvision names)\n", prefix, argv[0], argv[1]);
    return 0;
}
