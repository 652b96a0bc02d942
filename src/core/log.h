/* Logging, fatal errors and always-on assertions. Only rank 0 prints informational lines;
 * tw_fatal reports statement, file:line and rank, then calls the registered abort hook (the
 * communicator's abort) so that no rank is left hanging. */
#ifndef TW_LOG_H
#define TW_LOG_H

#include <setjmp.h>
#include <stdio.h>

/* The communicator registers its rank and abort function here once it is up. */
void tw_log_set_rank(int rank);
int tw_log_rank(void);
void tw_log_set_abort(void (*abort_fn)(int code));

/* printf to stdout on rank 0 only. */
void tw_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* printf to stderr from any rank, prefixed with "[rank r] " when running with several ranks. */
void tw_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

_Noreturn void tw_fatal(const char *what, const char *why, const char *file, int line);

/* A thread that must not end the process itself (the loader's: MPI runs FUNNELED, so only the
 * main thread may abort the job) catches tw_fatal instead: after tw_fatal_catch_set(&c) on that
 * thread, a TW_ASSERT or library failure there writes its report into c.msg and longjmps to c.jb
 * (set it with setjmp first); the thread then hands the report to the main thread as a status.
 * NULL ends the catch. */
typedef struct tw_fatal_catch {
    jmp_buf jb;
    char msg[512];
} tw_fatal_catch;
void tw_fatal_catch_set(tw_fatal_catch *c);

/* Compiled in every build: a bug, not bad input. */
#define TW_ASSERT(cond)                                                   \
    do {                                                                  \
        if (!(cond)) tw_fatal(#cond, "assertion failed", __FILE__, __LINE__); \
    } while (0)

/* Whether fd is a terminal to draw progress bars on. TW_TERMINAL=0 or 1 overrides isatty: under
 * mpirun a rank's stdout is a pseudo-terminal even when the job's output goes to a file, so
 * launch/run passes on whether its own stdout is a terminal. */
int tw_log_is_terminal(int fd);

#endif
