/* Implementation of log.h: rank-aware printing and the fatal path (caught on threads that ask). */
#include "core/log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_rank = 0;   /* process-wide facts, set once by the communicator */
static void (*g_abort)(int code) = NULL;

void tw_log_set_rank(int rank) { g_rank = rank; }
int tw_log_rank(void) { return g_rank; }
void tw_log_set_abort(void (*abort_fn)(int code)) { g_abort = abort_fn; }

void tw_log(const char *fmt, ...) {
    if (g_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

void tw_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (g_rank != 0) fprintf(stderr, "[rank %d] ", g_rank);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

static _Thread_local tw_fatal_catch *t_catch = NULL;   /* per thread: see tw_fatal_catch_set */

void tw_fatal_catch_set(tw_fatal_catch *c) { t_catch = c; }

void tw_fatal(const char *what, const char *why, const char *file, int line) {
    if (t_catch) {
        tw_fatal_catch *c = t_catch;
        t_catch = NULL;   /* a failure while unwinding ends the process as usual */
        snprintf(c->msg, sizeof c->msg, "fatal on rank %d at %s:%d: %s: %s", g_rank, file, line, what, why);
        longjmp(c->jb, 1);
    }
    fprintf(stderr, "twinfuse: fatal on rank %d at %s:%d: %s: %s\n", g_rank, file, line, what, why);
    fflush(stderr);
    if (g_abort) g_abort(1);
    abort();
}

int tw_log_is_terminal(int fd) {
    const char *v = getenv("TW_TERMINAL");
    if (v && (!strcmp(v, "0") || !strcmp(v, "1"))) return v[0] == '1';
    return isatty(fd);
}
