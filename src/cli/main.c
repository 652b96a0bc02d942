/* `twinfuse <command> [args]`: finds the subcommand and hands it the rest of the line. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} tw_command;

static const tw_command commands[] = {
    {"info", tw_cmd_info, "version, backends, CPU ISA, default precision, GPUs"},
    {"convert", tw_cmd_convert, "BigEarthNet v1.0 / v2.0 archive into shards (docs/shards.md)"},
    {"synth", tw_cmd_synth, "write a synthetic BigEarthNet-like shard directory (docs/synth.md)"},
    {"pretrain", tw_cmd_pretrain, "Barlow Twins pre-training of a ResNet18 (docs/pretrain.md)"},
    {"finetune", tw_cmd_finetune, "multi-label classification, one source or S1+S2 fusion (docs/finetune.md)"},
    {"evaluate", tw_cmd_evaluate, "mAP, F1 and per-class AP of a fine-tuned checkpoint on splits"},
    {"sweep", tw_cmd_sweep, "the label-efficiency grid: finetune + evaluate per cell, results.csv, tables, plots"},
    {"predict", tw_cmd_predict, "a fine-tuned classifier over whole scenes: georeferenced probability maps"},
    {"embed", tw_cmd_embed, "a checkpoint's backbone features of every patch of a split, as HDF5"},
    {"probe", tw_cmd_probe, "kNN and linear-probe mAP of a frozen backbone at label fractions (docs/monitor.md)"},
    {"export", tw_cmd_export, "a checkpoint's ResNet18 backbone as a torchvision state_dict (safetensors)"},
    {"import", tw_cmd_import, "a torchvision resnet18 state_dict (safetensors) as a twinfuse backbone"},
    {"report", tw_cmd_report, "tables and plots of a sweep, or a run's loss and lr curves (docs/report.md)"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: twinfuse <command> [args]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "twinfuse: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
