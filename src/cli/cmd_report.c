/* `twinfuse report DIR`: a run's loss and learning-rate curves (DIR/metrics.jsonl) or a sweep's
 * tables and plots (DIR/results.csv), drawn by tools/report.py through report_exec.c. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/report_exec.h"

static const char usage[] =
    "usage: twinfuse report DIR | MAP.tif\n"
    "  DIR/results.csv (a sweep) -> DIR/results.md and DIR/map_*.png\n"
    "  DIR/metrics.jsonl (a run) -> DIR/loss.png and DIR/lr.png\n"
    "  MAP.tif (twinfuse predict's --top-label map, or its probabilities) -> MAP.png: the scene's\n"
    "      RGB beside the most probable class of each pixel, with a legend\n"
    "  every PNG with a .json sidecar of its series (docs/report.md)\n"
    "environment: TW_PYTHON (the interpreter, with matplotlib), TW_REPORT_SCRIPT (report.py)\n";

int tw_cmd_report(int argc, char **argv) {
    if (argc == 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc != 1 || argv[0][0] == '-') {
        fputs(usage, stderr);
        return 2;
    }
    return tw_cli_report_run(NULL, argv[0]);
}
