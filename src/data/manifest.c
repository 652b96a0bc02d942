/* The scene manifest (manifest.h): CSV (header row, comma-separated, RFC 4180 quoting) or JSON lines
 * through jansson; every row's keys checked and its paths made absolute to the manifest's folder. */
#include "data/manifest.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static void row_free(tw_manifest_row *r) {
    for (int b = 0; b < TW_S2_BANDS; b++) free(r->s2[b]);
    for (int b = 0; b < TW_S1_BANDS; b++) free(r->s1[b]);
    free(r->mask);
    free(r->scl);
    memset(r, 0, sizeof *r);
}

void tw_manifest_free(tw_manifest *m) {
    for (int i = 0; i < m->n_rows; i++) row_free(&m->rows[i]);
    free(m->rows);
    m->rows = NULL;
    m->n_rows = 0;
}

/* `value` as a path: absolute as it is, else relative to the manifest's folder `dir`. */
static char *path_of(const char *dir, const char *value) {
    size_t n = strlen(dir) + strlen(value) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s", value[0] == '/' || !dir[0] ? "" : dir, value[0] == '/' || !dir[0] ? "" : "/", value);
    return p;
}

/* `pattern` with "{band}" replaced by `band`, or NULL (no placeholder, or out of memory). */
static char *expand(const char *dir, const char *pattern, const char *band) {
    const char *at = strstr(pattern, "{band}");
    if (!at) return NULL;
    char buf[8192];
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - pattern), pattern, band, at + 6);
    return path_of(dir, buf);
}

static int parse_date(const char *v, int32_t *out) {
    int y, mo, d;
    char tail;
    if (sscanf(v, "%4d-%2d-%2d%c", &y, &mo, &d, &tail) != 3 && sscanf(v, "%4d%2d%2d%c", &y, &mo, &d, &tail) != 3) return -1;
    if (y < 1900 || y > 2999 || mo < 1 || mo > 12 || d < 1 || d > 31) return -1;
    *out = y * 10000 + mo * 100 + d;
    return 0;
}

/* Sets one key of a row; a message names path:line and the key. */
static tw_status row_set(tw_manifest_row *r, const char *key, const char *v, const char *dir, const char *path,
                         tw_err *err) {
    if (!*v) return TW_OK;   /* an empty CSV cell: the key is absent */
    int band = -1, pol = -1;
    for (int b = 0; b < TW_S2_BANDS; b++)
        if (!strcmp(key, tw_shard_s2_bands[b])) band = b;
    for (int b = 0; b < TW_S1_BANDS; b++)
        if (!strcmp(key, tw_shard_s1_bands[b])) pol = b;
    char **slot = NULL;
    if (!strcmp(key, "name")) {
        if (strlen(v) >= sizeof r->name)
            return tw_err_set(err, TW_E_RANGE, "%s:%d: name '%s' longer than %zu bytes", path, r->line, v, sizeof r->name - 1);
        strcpy(r->name, v);
    } else if (!strcmp(key, "split")) {
        if (strlen(v) >= sizeof r->split)
            return tw_err_set(err, TW_E_RANGE, "%s:%d: split '%s' too long", path, r->line, v);
        strcpy(r->split, v);
    } else if (!strcmp(key, "s1_scale")) {
        if (!strcmp(v, "linear")) r->s1_linear = 1;
        else if (!strcmp(v, "db")) r->s1_linear = 0;
        else return tw_err_set(err, TW_E_FORMAT, "%s:%d: s1_scale '%s', want db or linear", path, r->line, v);
    } else if (!strcmp(key, "date")) {
        if (parse_date(v, &r->date))
            return tw_err_set(err, TW_E_FORMAT, "%s:%d: date '%s', want YYYY-MM-DD or YYYYMMDD", path, r->line, v);
    } else if (!strcmp(key, "s2") || !strcmp(key, "s1")) {
        int is1 = key[1] == '1', n = is1 ? TW_S1_BANDS : TW_S2_BANDS;
        char **files = is1 ? r->s1 : r->s2;
        const char *const *names = is1 ? tw_shard_s1_bands : tw_shard_s2_bands;
        if (strstr(v, "{band}")) {
            for (int b = 0; b < n; b++)
                if (!files[b] && !(files[b] = expand(dir, v, names[b])))
                    return tw_err_set(err, TW_E_NOMEM, "%s:%d", path, r->line);
        } else {
            slot = &files[0];
            *(is1 ? &r->s1_multi : &r->s2_multi) = 1;
        }
        *(is1 ? &r->has_s1 : &r->has_s2) = 1;
    } else if (band >= 0) {
        slot = &r->s2[band];
        r->has_s2 = 1;
    } else if (pol >= 0) {
        slot = &r->s1[pol];
        r->has_s1 = 1;
    } else if (!strcmp(key, "mask")) {
        slot = &r->mask;
    } else if (!strcmp(key, "scl")) {
        slot = &r->scl;
    } else {
        return tw_err_set(err, TW_E_UNKNOWN, "%s:%d: unknown column '%s' (want name, split, s2, B01..B12, s1, VV, VH, "
                          "s1_scale, date, mask, scl)", path, r->line, key);
    }
    if (slot) {
        free(*slot);
        if (!(*slot = path_of(dir, v))) return tw_err_set(err, TW_E_NOMEM, "%s:%d", path, r->line);
    }
    return TW_OK;
}

/* A row is whole: some product, S2 either one file or all 12, S1 either one file or both. */
static tw_status row_check(tw_manifest_row *r, const char *path, tw_err *err) {
    if (!r->has_s2 && !r->has_s1) return tw_err_set(err, TW_E_MISSING, "%s:%d: no s2 and no s1 files", path, r->line);
    int n2 = 0, n1 = 0;
    for (int b = 0; b < TW_S2_BANDS; b++) n2 += r->s2[b] != NULL;
    for (int b = 0; b < TW_S1_BANDS; b++) n1 += r->s1[b] != NULL;
    if ((r->s2_multi && n2 != 1) || (r->s1_multi && n1 != 1))
        return tw_err_set(err, TW_E_FORMAT, "%s:%d: both a multi-band %s file and band columns", path, r->line,
                          r->s2_multi && n2 != 1 ? "s2" : "s1");
    for (int b = 0; r->has_s2 && !r->s2_multi && b < TW_S2_BANDS; b++)
        if (!r->s2[b])
            return tw_err_set(err, TW_E_MISSING, "%s:%d: no file for S2 band %s", path, r->line, tw_shard_s2_bands[b]);
    for (int b = 0; r->has_s1 && !r->s1_multi && b < TW_S1_BANDS; b++)
        if (!r->s1[b])
            return tw_err_set(err, TW_E_MISSING, "%s:%d: no file for S1 band %s", path, r->line, tw_shard_s1_bands[b]);
    if (r->scl && r->mask) return tw_err_set(err, TW_E_FORMAT, "%s:%d: both mask and scl; give one", path, r->line);
    if (!r->name[0]) snprintf(r->name, sizeof r->name, "row%d", r->line);
    return TW_OK;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = 0;
    return s;
}

/* Splits a CSV record (one line) in place into fields, RFC 4180's quoting: a field in double
 * quotes may hold commas, and "" stands for one quote. Unquoted fields are trimmed of blanks.
 * Returns the field count (at most max), or -1 on an unterminated quote or text after a closing
 * quote. A quoted field cannot span lines. */
static int split_csv(char *line, char **fields, int max) {
    int n = 0;
    for (char *p = line; n < max;) {
        while (*p == ' ' || *p == '\t') p++;
        if (*p != '"') {
            char *c = strchr(p, ',');
            if (c) *c = 0;
            fields[n++] = trim(p);
            if (!c) return n;
            p = c + 1;
            continue;
        }
        char *out = ++p;   /* unescaped in place: out never passes p */
        fields[n++] = out;
        for (;; p++) {
            if (!*p) return -1;
            if (*p == '"' && p[1] == '"') {
                *out++ = '"';
                p++;
            } else if (*p == '"') {
                break;
            } else {
                *out++ = *p;
            }
        }
        *out = 0;
        for (p++; *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'; p++) {}
        if (!*p) return n;
        if (*p++ != ',') return -1;
    }
    return n;
}

/* Parses one row (CSV fields under the header, or a JSON object) into r. */
static tw_status parse_row(tw_manifest_row *r, int json, char *line, char **header, int n_header, const char *dir,
                           const char *path, tw_err *err) {
    tw_status st = TW_OK;
    if (json) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j || !json_is_object(j)) {
            json_decref(j);
            return tw_err_set(err, TW_E_FORMAT, "%s:%d: not a JSON object (%s)", path, r->line, j ? "another value" : je.text);
        }
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) {
            char num[32];
            const char *s = json_is_string(v) ? json_string_value(v) : NULL;
            if (!s && json_is_integer(v)) {
                snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
                s = num;
            }
            if (!s) {
                st = tw_err_set(err, TW_E_FORMAT, "%s:%d: key '%s' is not a string", path, r->line, key);
                break;
            }
            if ((st = row_set(r, key, s, dir, path, err))) break;
        }
        json_decref(j);
    } else {
        char *fields[64];
        int n = split_csv(line, fields, 64);
        if (n < 0)
            return tw_err_set(err, TW_E_FORMAT, "%s:%d: a quote is not closed, or text follows a closing quote", path,
                              r->line);
        if (n != n_header)
            return tw_err_set(err, TW_E_FORMAT, "%s:%d: %d fields, the header has %d", path, r->line, n, n_header);
        for (int k = 0; k < n && !st; k++) st = row_set(r, header[k], fields[k], dir, path, err);
    }
    return st ? st : row_check(r, path, err);
}

tw_status tw_manifest_read(tw_manifest *m, const char *path, int skip_bad, int quiet, tw_err *err) {
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) return tw_err_set(err, TW_E_IO, "%s: %s", path, strerror(errno));
    size_t n = strlen(path);
    int json = (n > 6 && !strcmp(path + n - 6, ".jsonl")) || (n > 5 && !strcmp(path + n - 5, ".json"));
    char dir[4096];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 0, path);
    char *line = NULL, *head_line = NULL, *header[64];
    size_t cap = 0;
    int n_header = 0, cap_rows = 0;
    tw_status st = TW_OK;
    for (int lineno = 1; getline(&line, &cap, f) > 0 && !st; lineno++) {
        if (!*trim(line)) continue;
        if (!json && !head_line) {   /* the header */
            if (!(head_line = strdup(line))) { st = tw_err_set(err, TW_E_NOMEM, "%s", path); break; }
            n_header = split_csv(head_line, header, 64);
            if (n_header < 0) {
                st = tw_err_set(err, TW_E_FORMAT, "%s:%d: the header: a quote is not closed, or text follows a "
                                "closing quote", path, lineno);
                break;
            }
            continue;
        }
        if (m->n_rows == cap_rows) {
            cap_rows = cap_rows ? 2 * cap_rows : 64;
            tw_manifest_row *g = realloc(m->rows, (size_t)cap_rows * sizeof *g);
            if (!g) { st = tw_err_set(err, TW_E_NOMEM, "%s", path); break; }
            m->rows = g;
        }
        tw_manifest_row *r = &m->rows[m->n_rows];
        memset(r, 0, sizeof *r);
        r->line = lineno;
        tw_err rerr = {0};
        tw_status rs = parse_row(r, json, line, header, n_header, dir, path, &rerr);
        if (rs) {
            row_free(r);
            if (!skip_bad) {
                st = rs;
                if (err) *err = rerr;
                break;
            }
            if (!quiet) tw_warn("twinfuse convert: skipped manifest row: %s\n", rerr.msg);
            m->n_bad++;
            continue;
        }
        if (r->date) m->has_date = 1;
        m->n_rows++;
    }
    free(line);
    free(head_line);
    fclose(f);
    if (!st && m->n_rows == 0 && m->n_bad == 0) st = tw_err_set(err, TW_E_MISSING, "%s: no rows", path);
    if (st) tw_manifest_free(m);
    return st;
}
