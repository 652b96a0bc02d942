/* The files of metrics.h: the JSON report (jansson) and the predictions CSV, both written
 * atomically through core/atomic_file.h. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "train/metrics.h"

tw_status tw_metrics_write_json(const char *path, const char *const *splits, const tw_metrics *m, int n_splits,
                                const char *const *class_names, tw_err *err) {
    json_t *root = json_object(), *arr = json_array();
    int ok = root && arr && !json_object_set_new(root, "format", json_string("twinfuse-metrics/1")) &&
             !json_object_set(root, "splits", arr);
    for (int s = 0; ok && s < n_splits; s++) {
        json_t *o = json_object(), *per = json_object();
        ok = o && per && !json_array_append_new(arr, o) && !json_object_set_new(o, "split", json_string(splits[s])) &&
             !json_object_set_new(o, "n_samples", json_integer(m[s].n)) &&
             !json_object_set_new(o, "map_macro", json_real(m[s].map_macro)) &&
             !json_object_set_new(o, "map_micro", json_real(m[s].map_micro)) &&
             !json_object_set_new(o, "f1_macro", json_real(m[s].f1_macro)) &&
             !json_object_set_new(o, "f1_micro", json_real(m[s].f1_micro)) &&
             !json_object_set_new(o, "per_class_ap", per);
        for (int j = 0; ok && j < m[s].k; j++) ok = !json_object_set_new(per, class_names[j], json_real(m[s].ap[j]));
    }
    char *text = ok ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(arr);
    json_decref(root);
    if (!text) return tw_err_set(err, TW_E_NOMEM, "%s: building the metrics report failed", path);
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        return tw_err_set(err, TW_E_NOMEM, "%s: building the metrics report failed", path);
    }
    memcpy(line + n, "\n", 2);
    tw_status st = tw_atomic_write_text(path, line, err);
    free(line);
    return st;
}

/* A growing text buffer; a failed growth sticks (ok = 0) and the writer reports it once. */
typedef struct { char *p; size_t n, cap; int ok; } sbuf;

static void sb_reserve(sbuf *b, size_t more) {
    if (!b->ok || b->n + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->ok = 0;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void sb_put(sbuf *b, const char *s, size_t n) {
    sb_reserve(b, n);
    if (!b->ok) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* One CSV field: prefix then s (at most n bytes, up to a NUL), quoted when it holds , " or a
 * line break (RFC 4180: quotes doubled). */
static void sb_field(sbuf *b, const char *prefix, const char *s, size_t n) {
    size_t len = strnlen(s, n), lp = strlen(prefix);
    int quote = strpbrk(prefix, ",\"\r\n") != NULL;
    for (size_t i = 0; i < len && !quote; i++) quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote) {
        sb_put(b, prefix, lp);
        sb_put(b, s, len);
        return;
    }
    sb_put(b, "\"", 1);
    for (int part = 0; part < 2; part++) {
        const char *q = part ? s : prefix;
        size_t m = part ? len : lp;
        for (size_t i = 0; i < m; i++) sb_put(b, q[i] == '"' ? "\"\"" : &q[i], q[i] == '"' ? 2 : 1);
    }
    sb_put(b, "\"", 1);
}

tw_status tw_predictions_write(const char *path, const char *names, size_t name_bytes, const float *scores,
                               const float *labels, int64_t n, int k, const char *const *class_names,
                               tw_err *err) {
    sbuf b = {.ok = 1};
    sb_put(&b, "patch", 5);
    for (int part = 0; part < 2; part++)
        for (int j = 0; j < k; j++) {
            sb_put(&b, ",", 1);
            sb_field(&b, part ? "label:" : "score:", class_names[j], strlen(class_names[j]));
        }
    sb_put(&b, "\n", 1);
    char num[32];
    for (int64_t i = 0; i < n && b.ok; i++) {
        sb_field(&b, "", names + (size_t)i * name_bytes, name_bytes);
        for (int j = 0; j < k; j++) {
            int len = snprintf(num, sizeof num, ",%.9g", (double)scores[i * k + j]);
            sb_put(&b, num, (size_t)len);
        }
        for (int j = 0; j < k; j++) sb_put(&b, labels[i * k + j] > 0.5f ? ",1" : ",0", 2);
        sb_put(&b, "\n", 1);
    }
    tw_status st = b.ok ? tw_atomic_write_text(path, b.p, err)
                        : tw_err_set(err, TW_E_NOMEM, "%s: %lld predictions do not fit in memory", path, (long long)n);
    free(b.p);
    return st;
}
