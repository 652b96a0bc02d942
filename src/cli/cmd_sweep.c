/* `twinfuse sweep CONFIG [--cell N | --list] [key=value ...]`: the label-efficiency grid
 * (src/train/sweep.c). All cells one after another on the ranks of one job, or (--cell N, e.g.
 * $SLURM_ARRAY_TASK_ID) one cell per job; finished cells are skipped, an interrupted one resumes.
 * Then results.csv from every finished cell, and (rank 0, after MPI has ended) the tables and
 * plots of `twinfuse report`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_run.h"
#include "cli/commands.h"
#include "cli/report_exec.h"
#include "config/sweep.h"
#include "train/sweep.h"

static const char usage[] =
    "usage: twinfuse sweep CONFIG.yaml [--cell N | --list] [key=value ...]\n"
    "       twinfuse sweep --help        (every key, its default and range)\n"
    "       mpirun -np N twinfuse sweep CONFIG.yaml ...   (each cell on all ranks)\n"
    "       sbatch --array=0-K slurm/sweep.sbatch CONFIG.yaml   (one cell per array task)\n";

int tw_cmd_sweep(int argc, char **argv) {
    if (argc >= 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))) {
        fputs(usage, stdout);
        tw_cfg_help(stdout, tw_sweep_schema());
        return 0;
    }
    int cell = -1, list = 0, n_ov = 0, bad = argc < 1 || strchr(argv[0], '=') || argv[0][0] == '-';
    char **ov = calloc((size_t)argc + 1, sizeof *ov);
    for (int i = 1; !bad && i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--list")) list = 1;
        else if (!strcmp(argv[i], "--cell") && i + 1 < argc && (cell = (int)strtol(argv[++i], &end, 10)) >= 0 && !*end) {
        } else if (strchr(argv[i], '=') && argv[i][0] != '-') ov[n_ov++] = argv[i];
        else bad = 1;
    }
    if (bad || !ov) {
        fputs(usage, stderr);
        free(ov);
        return 2;
    }
    tw_sweep_cfg *cfg = calloc(1, sizeof *cfg);
    tw_sweep s;
    memset(&s, 0, sizeof s);
    tw_err err = {0};
    int code = 1, rank0 = tw_cli_is_rank0();
    if (!cfg || tw_cli_load_config("sweep", tw_sweep_schema(), cfg, argv[0], NULL, n_ov, ov)) goto done;
    if (tw_sweep_init(&s, cfg, &err) != TW_OK) {
        if (rank0) fprintf(stderr, "twinfuse sweep: %s: %s\n", argv[0], err.msg);
        goto done;
    }
    if (list) {
        for (int i = 0; i < s.n_cells; i++)
            printf("%4d  %-60s %s\n", i, s.cells[i].name, tw_sweep_cell_done(&s, i) ? "done" : "to do");
        printf("# %d cells in %s (slurm: --array=0-%d)%s\n", s.n_cells, s.dir, s.n_cells - 1,
               s.n_skipped ? "; early fusion x ssl left out (no pre-training of a stacked backbone)" : "");
        code = 0;
        goto done;
    }
    if (cell >= s.n_cells) {
        if (rank0) fprintf(stderr, "twinfuse sweep: --cell %d: the grid has cells 0..%d\n", cell, s.n_cells - 1);
        goto done;
    }
    tw_comm *comm = tw_cli_comm("sweep", &cfg->ft.backend);
    if (!comm) goto done;
    int rank = tw_comm_rank(comm), failed = 0;
    for (int i = cell < 0 ? 0 : cell; i < (cell < 0 ? s.n_cells : cell + 1) && !failed; i++)
        failed = tw_sweep_run_cell(&s, comm, i);
    int n_done = 0;
    tw_status st = rank == 0 ? tw_sweep_write_results(&s, &n_done, &err) : TW_OK;
    if (st != TW_OK) fprintf(stderr, "twinfuse sweep: %s\n", err.msg);
    else if (rank == 0) printf("# sweep %s: %d of %d cells done; %s/results.csv\n", s.dir, n_done, s.n_cells, s.dir);
    tw_comm_free(comm);
    code = failed || st != TW_OK;
    /* The tables and plots: one process, with MPI finalised (the report forks). */
    if (rank == 0 && st == TW_OK && n_done > 0 && tw_cli_report_run("sweep", s.dir)) code = 1;
done:
    tw_sweep_free(&s);
    free(cfg);
    free(ov);
    return code;
}
