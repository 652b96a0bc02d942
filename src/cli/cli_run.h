/* What the commands that train or score on ranks share on the command line: a configuration
 * (file or checkpoint text, then key=value overrides) checked before any rank starts MPI, and the
 * communicator the backend section asks for. */
#ifndef TW_CLI_RUN_H
#define TW_CLI_RUN_H

#include "config/config.h"
#include "config/finetune.h"
#include "config/sections.h"
#include "dist/comm.h"

/* Loads cfg from path (or, text != NULL, from that YAML labelled path) and overrides; on error
 * prints "twinfuse <command>: <message>" on rank 0 only (MPI is not up yet: the launcher's rank
 * variables decide) and returns 1, else 0. */
int tw_cli_load_config(const char *command, const tw_cfg_schema *s, void *cfg, const char *path, const char *text,
                       int n_overrides, char *const *overrides);
/* The communicator of backend.comm (auto: tw_comm_kind_auto); prints the error and returns NULL. */
tw_comm *tw_cli_comm(const char *command, const tw_backend_cfg *b);
/* A training command's whole command line: --help (usage and every key), the configuration
 * file and overrides, the communicator, then run(comm, cfg, yaml, config_path) with the effective
 * configuration as YAML. cfg's struct has the schema's size and its backend section at
 * backend_offset. Returns the exit code (2: bad usage). */
typedef int (*tw_cli_train_fn)(tw_comm *comm, const void *cfg, const char *yaml, const char *config_path);
int tw_cli_train_command(const char *command, const char *usage, const tw_cfg_schema *s, size_t backend_offset,
                         tw_cli_train_fn run, int argc, char **argv);
/* The fine-tuning configuration that reads a checkpoint's backbone (embed, probe): a fine-tuned
 * checkpoint's (task "classification") own configuration (text) with the overrides; a
 * pre-training checkpoint's data section (from text), a frozen single-source model initialised
 * from it (a feature-fusion one, S1's features then S2's, for a cross-modal pre-training), then
 * the overrides. Prints the error as tw_cli_load_config; returns 0 or 1. */
int tw_cli_config_of_checkpoint(const char *command, tw_finetune_cfg *cfg, const char *ckpt, const char *task,
                                const char *text, int n_ov, char **ov);
/* 1 when the first argument is -h or --help (the command prints its usage on stdout, exits 0). */
int tw_cli_wants_help(int argc, char **argv);
/* 1 on the process that prints (rank 0 of the launcher, or a lone process). */
int tw_cli_is_rank0(void);

#endif
