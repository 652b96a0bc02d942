/* `twinfuse import TORCHVISION OUT [prefix=backbone.]`: a torchvision resnet18 state_dict saved
 * with safetensors (any stem channel count; fc.* dropped) as a twinfuse backbone file, its names
 * under prefix and metadata format "twinfuse-backbone/1", checked tensor by tensor on the way. */
#include <stdio.h>
#include <string.h>

#include "cli/cli_run.h"
#include "cli/commands.h"
#include "model/resnet18_io.h"

int tw_cmd_import(int argc, char **argv) {
    if (tw_cli_wants_help(argc, argv)) {
        printf("usage: twinfuse import TORCHVISION.safetensors OUT.safetensors [prefix=backbone.]\n");
        return 0;
    }
    const char *prefix = "backbone.";
    if (argc == 3 && !strncmp(argv[2], "prefix=", 7)) prefix = argv[2] + 7;
    if (argc < 2 || argc > 3 || (argc == 3 && strncmp(argv[2], "prefix=", 7))) {
        fprintf(stderr, "usage: twinfuse import TORCHVISION.safetensors OUT.safetensors [prefix=backbone.]\n");
        return 2;
    }
    if (strlen(prefix) >= TW_RESNET18_MAX_PREFIX) {
        fprintf(stderr, "twinfuse import: prefix '%s' too long\n", prefix);
        return 2;
    }
    tw_err err = {0};
    tw_resnet18_convert_opts o = {.src_prefix = "", .dst_prefix = prefix, .ignore_prefix = "fc.",
                                  .allow_extra = 0, .format = "twinfuse-backbone/1"};
    if (tw_resnet18_convert(argv[1], argv[0], &o, &err) != TW_OK) {
        fprintf(stderr, "twinfuse import: %s\n", err.msg);
        return 1;
    }
    printf("# imported %s (fc.* dropped) to %s under '%s'\n", argv[0], argv[1], prefix);
    return 0;
}
