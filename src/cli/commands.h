/* The subcommands of `twinfuse`, one file each (cmd_<name>.c). Each takes the arguments after
 * its own name and returns the process exit code (0 ok, 1 failure, 2 bad usage). */
#ifndef TW_COMMANDS_H
#define TW_COMMANDS_H

int tw_cmd_info(int argc, char **argv);
int tw_cmd_synth(int argc, char **argv);
int tw_cmd_convert(int argc, char **argv);
int tw_cmd_pretrain(int argc, char **argv);
int tw_cmd_finetune(int argc, char **argv);
int tw_cmd_evaluate(int argc, char **argv);
int tw_cmd_embed(int argc, char **argv);
int tw_cmd_predict(int argc, char **argv);
int tw_cmd_probe(int argc, char **argv);
int tw_cmd_sweep(int argc, char **argv);
int tw_cmd_export(int argc, char **argv);
int tw_cmd_import(int argc, char **argv);
int tw_cmd_report(int argc, char **argv);

#endif
