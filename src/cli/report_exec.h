/* Runs tools/report.py (tables and plots from a run's metrics.jsonl or a sweep's results.csv) in
 * a child process with the project's Python; the drawing itself lives in that script (docs/report.md). */
#ifndef TW_CLI_REPORT_EXEC_H
#define TW_CLI_REPORT_EXEC_H

/* What dir holds: "sweep" (dir/results.csv), "run" (dir/metrics.jsonl), "both", or NULL (neither). */
const char *tw_cli_report_kind(const char *dir);

/* Writes the report of dir: kind "run", "sweep", "both" or NULL (tw_cli_report_kind decides); a
 * .tif file instead of dir (a map of `twinfuse predict`): its picture, FILE.png.
 * Python: $TW_PYTHON, else the configure-time TW_PYTHON if it is there, else python3 on PATH.
 * Script: $TW_REPORT_SCRIPT, else <executable's dir>/../share/twinfuse/report.py (installed),
 * else <source dir>/tools/report.py (build tree). Forks: call it on one process, outside MPI.
 * Prints "twinfuse report: ..." on stderr for every failure; returns 0 ok, 1 failure. */
int tw_cli_report_run(const char *kind, const char *dir);

#endif
