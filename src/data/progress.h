/* A progress line with rate and ETA for long conversions, drawn on stderr only when stderr is a
 * terminal (logs and tests get the final summary alone). Thread-safe. */
#ifndef TW_PROGRESS_H
#define TW_PROGRESS_H

#include <pthread.h>
#include <stdint.h>

typedef struct tw_progress {
    const char *what;       /* "patches", "samples" */
    int64_t total, done;
    double t0, last_draw;
    int tty;
    pthread_mutex_t mu;
} tw_progress;

void tw_progress_init(tw_progress *p, const char *what, int64_t total);
void tw_progress_add(tw_progress *p, int64_t n);   /* redraws at most 5 times a second */
void tw_progress_end(tw_progress *p);              /* final line, then newline */
double tw_progress_now(void);                      /* monotonic seconds */

#endif
