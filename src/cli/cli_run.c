/* The shared command-line steps of the rank-parallel commands (cli_run.h). */
#include "cli/cli_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/pretrain.h"

int tw_cli_is_rank0(void) {
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    if (!r) r = getenv("PMIX_RANK");
    return !r || !strcmp(r, "0");
}

int tw_cli_load_config(const char *command, const tw_cfg_schema *s, void *cfg, const char *path, const char *text,
                       int n_overrides, char *const *overrides) {
    tw_err err = {0};
    tw_status st = text ? tw_cfg_load_text(s, cfg, text, path, n_overrides, overrides, &err)
                        : tw_cfg_load(s, cfg, path, n_overrides, overrides, &err);
    if (st == TW_OK) return 0;
    if (tw_cli_is_rank0()) fprintf(stderr, "twinfuse %s: %s\n", command, err.msg);
    return 1;
}

tw_comm *tw_cli_comm(const char *command, const tw_backend_cfg *b) {
    tw_comm_kind kind = b->comm == TW_CFG_COMM_SINGLE ? TW_COMM_SINGLE
                      : b->comm == TW_CFG_COMM_MPI    ? TW_COMM_MPI
                      : b->comm == TW_CFG_COMM_NCCL   ? TW_COMM_NCCL
                      : tw_comm_kind_auto(b->device == TW_CFG_DEV_CUDA);
    tw_comm *comm = NULL;
    tw_err err = {0};
    if (tw_comm_create(&comm, kind, NULL, NULL, &err) != TW_OK) {
        fprintf(stderr, "twinfuse %s: %s\n", command, err.msg);
        return NULL;
    }
    return comm;
}

int tw_cli_wants_help(int argc, char **argv) {
    return argc >= 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"));
}

int tw_cli_train_command(const char *command, const char *usage, const tw_cfg_schema *s, size_t backend_offset,
                         tw_cli_train_fn run, int argc, char **argv) {
    if (tw_cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        tw_cfg_help(stdout, s);
        return 0;
    }
    if (argc < 1 || strchr(argv[0], '=') || argv[0][0] == '-') {
        fputs(usage, stderr);
        return 2;
    }
    char *cfg = calloc(1, s->struct_size);
    if (!cfg) return 1;
    /* The configuration first: a bad key fails before any rank starts MPI or allocates. */
    tw_comm *comm = NULL;
    int code = 1;
    if (!tw_cli_load_config(command, s, cfg, argv[0], NULL, argc - 1, argv + 1) &&
        (comm = tw_cli_comm(command, (const tw_backend_cfg *)(cfg + backend_offset)))) {
        char *yaml = tw_cfg_to_yaml(s, cfg);
        code = run(comm, cfg, yaml, argv[0]);
        free(yaml);
        tw_comm_free(comm);
    }
    free(cfg);
    return code;
}

int tw_cli_config_of_checkpoint(const char *command, tw_finetune_cfg *cfg, const char *ckpt, const char *task,
                                const char *text, int n_ov, char **ov) {
    if (!strcmp(task, "classification"))
        return tw_cli_load_config(command, tw_finetune_schema(), cfg, ckpt, text, n_ov, ov);
    tw_pretrain_cfg *pc = calloc(1, sizeof *pc);
    int bad = !pc || tw_cli_load_config(command, tw_pretrain_schema(), pc, ckpt, text, 0, NULL);
    if (bad) {
        free(pc);
        return 1;
    }
    char b[7][TW_CFG_STR_MAX + 32];
    snprintf(b[0], sizeof b[0], "data.shards=%s", pc->data.shards);
    snprintf(b[1], sizeof b[1], "data.source=%s", tw_cfg_source_names[pc->data.source]);
    snprintf(b[2], sizeof b[2], "data.s2_bands=%s", pc->data.s2_bands == TW_BANDS_RGB ? "rgb" : "all");
    snprintf(b[3], sizeof b[3], "data.size=%d", pc->data.size);
    snprintf(b[4], sizeof b[4], "model.init=ssl:%s", ckpt);
    snprintf(b[5], sizeof b[5], "model.mode=frozen");
    int n_b = 6;
    if (pc->data.source == TW_SOURCE_S1S2) snprintf(b[n_b++], sizeof b[0], "model.fusion=feature");
    char **all = calloc((size_t)n_ov + n_b, sizeof *all);
    for (int i = 0; i < n_b; i++) all[i] = b[i];
    for (int i = 0; i < n_ov; i++) all[n_b + i] = ov[i];
    bad = tw_cli_load_config(command, tw_finetune_schema(), cfg, NULL, NULL, n_ov + n_b, all);
    free(all);
    free(pc);
    return bad;
}
