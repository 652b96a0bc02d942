/* Finds the Python interpreter and tools/report.py (environment, installed layout, build tree)
 * and runs the script on a directory in a child process; cmd_report.c parses the command line. */
#include "cli/report_exec.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

const char *tw_cli_report_kind(const char *dir) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/results.csv", dir);
    int sweep = is_file(path);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    int run = is_file(path);
    return sweep && run ? "both" : sweep ? "sweep" : run ? "run" : NULL;
}

/* The interpreter: $TW_PYTHON, the configure-time one where it exists, else python3 on PATH. */
static const char *python_find(void) {
    const char *env = getenv("TW_PYTHON");
    if (env && *env) return env;
    if (access(TW_PYTHON_EXE, X_OK) == 0) return TW_PYTHON_EXE;
    return "python3";
}

/* The script into buf: $TW_REPORT_SCRIPT, the installed copy next to the executable, the source
 * tree's. Returns 0, or 1 with the message printed. */
static int script_find(char buf[PATH_MAX]) {
    const size_t n = PATH_MAX;
    const char *env = getenv("TW_REPORT_SCRIPT");
    if (env && *env) {
        snprintf(buf, n, "%s", env);
        if (is_file(buf)) return 0;
        fprintf(stderr, "twinfuse report: TW_REPORT_SCRIPT=%s: no such file\n", env);
        return 1;
    }
    char exe[PATH_MAX - 64]; /* room for the suffix below in buf */
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(buf, n, "%s/../share/twinfuse/report.py", exe);
        if (is_file(buf)) return 0;
    }
    snprintf(buf, n, "%s", TW_SOURCE_DIR "/tools/report.py");
    if (is_file(buf)) return 0;
    fprintf(stderr, "twinfuse report: report.py is neither in %s/../share/twinfuse nor at %s "
            "(set TW_REPORT_SCRIPT)\n", len > 0 ? exe : "<executable's dir>", buf);
    return 1;
}

/* python script kind dir in a child; 0 when it exits 0. */
static int script_run(const char *python, const char *script, const char *kind, const char *dir) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "twinfuse report: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        char *argv[] = {(char *)python, (char *)script, (char *)kind, (char *)dir, NULL};
        execvp(python, argv);
        fprintf(stderr, "twinfuse report: cannot run the Python interpreter '%s': %s (set TW_PYTHON)\n", python,
                strerror(errno));
        _exit(127);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "twinfuse report: waitpid: %s\n", strerror(errno));
            return 1;
        }
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) return 0;
    if (WIFSIGNALED(ws)) fprintf(stderr, "twinfuse report: %s %s: killed by signal %d\n", python, script, WTERMSIG(ws));
    else if (WEXITSTATUS(ws) != 127 && WEXITSTATUS(ws) != 1)
        fprintf(stderr, "twinfuse report: %s %s %s %s: exit status %d\n", python, script, kind, dir, WEXITSTATUS(ws));
    return 1;
}

int tw_cli_report_run(const char *kind, const char *dir) {
    struct stat sb;
    size_t n = strlen(dir);
    int tif = n > 4 && (!strcmp(dir + n - 4, ".tif") || !strcmp(dir + n - 5, ".tiff"));
    if (tif && stat(dir, &sb) == 0 && S_ISREG(sb.st_mode)) {   /* a predicted map: its picture */
        char script[PATH_MAX];
        return script_find(script) ? 1 : script_run(python_find(), script, "map", dir);
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "twinfuse report: %s: not a directory (nor a map.tif from twinfuse predict)\n", dir);
        return 1;
    }
    if (!kind) kind = tw_cli_report_kind(dir);
    if (!kind) {
        fprintf(stderr, "twinfuse report: %s: neither results.csv (a sweep) nor metrics.jsonl (a run)\n", dir);
        return 1;
    }
    char script[PATH_MAX];
    if (script_find(script)) return 1;
    const char *python = python_find();
    int both = !strcmp(kind, "both");
    if ((both || !strcmp(kind, "sweep")) && script_run(python, script, "sweep", dir)) return 1;
    if ((both || !strcmp(kind, "run")) && script_run(python, script, "run", dir)) return 1;
    return 0;
}
