/* The training log (trainlog.h): progress lines and metrics.jsonl. Not `twinfuse report`, which
 * draws a finished run's figures (cli/cmd_report.c). */
#include "train/trainlog.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/log.h"

double tw_trainlog_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

tw_status tw_trainlog_open(tw_trainlog *r, int on, const char *metrics_path, int log_every,
                         int64_t first_step, int64_t total_steps, int64_t steps_per_epoch, tw_err *err) {
    memset(r, 0, sizeof *r);
    r->on = on;
    r->tty = on && tw_log_is_terminal(STDOUT_FILENO);
    r->log_every = log_every > 0 ? log_every : 1;
    r->first_step = first_step;
    r->total_steps = total_steps;
    r->steps_per_epoch = steps_per_epoch;
    r->t_first = tw_trainlog_now();
    r->unit = "pairs";
    if (on && metrics_path) {
        snprintf(r->metrics_path, sizeof r->metrics_path, "%s", metrics_path);
        r->metrics = fopen(metrics_path, "a");
        if (!r->metrics)
            return tw_err_set(err, TW_E_IO, "%s: cannot open for appending: %s", metrics_path, strerror(errno));
    }
    return TW_OK;
}

tw_status tw_trainlog_metrics_trim(const char *metrics_path, int64_t last_step, tw_err *err) {
    FILE *f = fopen(metrics_path, "rb");
    if (!f) return errno == ENOENT ? TW_OK : tw_err_set(err, TW_E_IO, "%s: %s", metrics_path, strerror(errno));
    char *text = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1)) &&
        fread(text, 1, (size_t)n, f) != (size_t)n) {
        free(text);
        text = NULL;
    }
    fclose(f);
    if (!text) return tw_err_set(err, TW_E_IO, "%s: cannot read it back", metrics_path);
    text[n] = 0;
    size_t kept = 0;
    int dropped = 0;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n'), *at = strstr(line, "\"step\": ");
        if (!end) {   /* a torn last line */
            dropped = 1;
            break;
        }
        size_t len = (size_t)(end - line) + 1;
        if (at && at < end && strtoll(at + 8, NULL, 10) <= last_step) {
            memmove(text + kept, line, len);
            kept += len;
        } else {
            dropped = 1;
        }
        line = end + 1;
    }
    text[kept] = 0;
    tw_status st = dropped ? tw_atomic_write_text(metrics_path, text, err) : TW_OK;
    free(text);
    return st;
}

static void format_eta(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e8) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

tw_status tw_trainlog_monitor(tw_trainlog *r, int64_t step, const char *object, const char *log_line,
                              const char *note, tw_err *err) {
    if (!r->on) return TW_OK;
    if (note[0]) snprintf(r->note, sizeof r->note, "%s", note);
    tw_trainlog_break(r);
    printf("%s\n", log_line);
    fflush(stdout);
    if (!r->metrics) return TW_OK;
    fprintf(r->metrics, "{\"step\": %" PRId64 ", \"monitor\": %s}\n", step, object);
    if (fflush(r->metrics) != 0 || ferror(r->metrics))
        return tw_err_set(err, TW_E_IO, "%s: cannot write the monitor line of step %" PRId64 ": %s", r->metrics_path,
                          step, strerror(errno));
    return TW_OK;
}

tw_status tw_trainlog_step(tw_trainlog *r, int64_t step, int64_t epoch, double loss, double lr,
                         double step_s, double pairs_per_s, tw_err *err) {
    if (!r->on) return TW_OK;
    double now = tw_trainlog_now();
    int64_t done = step - r->first_step;
    double eta = done > 0 ? (now - r->t_first) / done * (double)(r->total_steps - step) : 0;
    char eta_s[32];
    format_eta(eta_s, sizeof eta_s, eta);
    if (r->metrics) {
        fprintf(r->metrics,
                "{\"step\": %" PRId64 ", \"epoch\": %" PRId64 ", \"loss\": %.9g, \"lr\": %.9g, "
                "\"step_s\": %.6f, \"%s_per_s\": %.3f}\n",
                step, epoch, loss, lr, step_s, r->unit, pairs_per_s);
        if (fflush(r->metrics) != 0 || ferror(r->metrics))
            return tw_err_set(err, TW_E_IO, "%s: cannot write the metrics of step %" PRId64 ": %s", r->metrics_path,
                              step, strerror(errno));
    }
    int last = step == r->total_steps;
    if (r->tty) {
        if (!last && now - r->last_draw < 0.2) return TW_OK;
        r->last_draw = now;
        enum { W = 24 };
        char bar[W + 1];
        int fill = r->total_steps > 0 ? (int)(W * step / r->total_steps) : W;
        for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
        bar[W] = 0;
        printf("\repoch %4" PRId64 " step %7" PRId64 "/%-7" PRId64 " [%s] loss %.4e | %7.1f %s/s | ETA %s%s%s ",
               epoch, step, r->total_steps, bar, loss, pairs_per_s, r->unit, eta_s, r->note[0] ? " | " : "",
               r->note);
        if (last) printf("\n");
        fflush(stdout);
        return TW_OK;
    }
    if (step % r->log_every && !last && step != r->first_step + 1) return TW_OK;
    printf("step %7" PRId64 "/%-7" PRId64 " | epoch %4" PRId64 " | loss %.4e | lr %.2e | %8.1f ms | %7.1f %s/s | "
           "ETA %s%s%s\n",
           step, r->total_steps, epoch, loss, lr, 1e3 * step_s, pairs_per_s, r->unit, eta_s, r->note[0] ? " | " : "",
           r->note);
    fflush(stdout);
    return TW_OK;
}

void tw_trainlog_break(tw_trainlog *r) {
    if (r->on && r->tty && r->last_draw > 0) {
        printf("\n");
        r->last_draw = 0;
    }
}

void tw_trainlog_close(tw_trainlog *r) {
    if (r->metrics) fclose(r->metrics);
    r->metrics = NULL;
}
