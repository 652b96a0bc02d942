/* The progress line (progress.h). */
#include "data/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

double tw_progress_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void tw_progress_init(tw_progress *p, const char *what, int64_t total) {
    p->what = what;
    p->total = total;
    p->done = 0;
    p->t0 = p->last_draw = tw_progress_now();
    p->tty = tw_log_is_terminal(STDERR_FILENO);
    pthread_mutex_init(&p->mu, NULL);
}

static void draw(tw_progress *p, double now) {
    enum { WIDTH = 30 };
    double frac = p->total > 0 ? (double)p->done / (double)p->total : 1.0, dt = now - p->t0;
    double rate = dt > 0 ? (double)p->done / dt : 0, eta = rate > 0 ? (double)(p->total - p->done) / rate : 0;
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < (int)(frac * WIDTH) ? '=' : ' ';
    bar[WIDTH] = 0;
    fprintf(stderr, "\r[%s] %lld/%lld %s  %.1f/s  ETA %02d:%02d:%02d ", bar, (long long)p->done, (long long)p->total,
            p->what, rate, (int)(eta / 3600), (int)(eta / 60) % 60, (int)eta % 60);
    fflush(stderr);
}

void tw_progress_add(tw_progress *p, int64_t n) {
    pthread_mutex_lock(&p->mu);
    p->done += n;
    double now = tw_progress_now();
    if (p->tty && now - p->last_draw > 0.2) {
        p->last_draw = now;
        draw(p, now);
    }
    pthread_mutex_unlock(&p->mu);
}

void tw_progress_end(tw_progress *p) {
    if (p->tty) {
        draw(p, tw_progress_now());
        fputc('\n', stderr);
    }
    pthread_mutex_destroy(&p->mu);
}
