/* A loaded configuration going out: the "#" lines every run prints, the YAML text stored with
 * each run and checkpoint (read back by tw_cfg_load_text), and the per-key help. */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/value.h"
#include "core/log.h"

#define VALUE_MAX (2 * TW_CFG_STR_MAX + 16)

void tw_cfg_print(FILE *f, const tw_cfg_schema *s, const void *cfg) {
    size_t col = 0;
    char val[VALUE_MAX], token[VALUE_MAX + 300];
    for (int i = 0; i < s->n_keys; i++) {
        const char *path = s->keys[i].path;
        size_t top = strcspn(path, ".");
        /* A new top-level section starts a new line; long sections wrap at about 100 columns. */
        int new_section = i == 0 || strncmp(path, s->keys[i - 1].path, top) != 0 || s->keys[i - 1].path[top] != '.';
        tw_cfg_value_format(val, sizeof val, &s->keys[i], cfg);
        int len = snprintf(token, sizeof token, "%s=%s", path, val);
        if (new_section || col + (size_t)len + 1 > 100) {
            if (i) fputc('\n', f);
            fputs("#  ", f);
            col = 3;
        }
        fprintf(f, " %s", token);
        col += (size_t)len + 1;
    }
    if (s->n_keys) fputc('\n', f);
}

/* Number of dot-separated components of path before its leaf, and where each one ends. */
static int split_sections(const char *path, size_t ends[8]) {
    int n = 0;
    for (const char *p = path; *p; p++)
        if (*p == '.') {
            TW_ASSERT(n < 8);
            ends[n++] = (size_t)(p - path);
        }
    return n;
}

char *tw_cfg_to_yaml(const tw_cfg_schema *s, const void *cfg) {
    size_t cap = 4096, used = 0;
    char *out = malloc(cap);
    TW_ASSERT(out);
    out[0] = '\0';
    char val[VALUE_MAX], line[VALUE_MAX + 400];
    for (int i = 0; i < s->n_keys; i++) {
        const char *path = s->keys[i].path, *prev = i ? s->keys[i - 1].path : "";
        size_t ends[8], pends[8];
        int n = split_sections(path, ends), pn = i ? split_sections(prev, pends) : 0;
        /* Sections shared with the previous key are already open (the table keeps sections
         * contiguous; a test reads this text back, which would catch a duplicated section). */
        int common = 0;
        while (common < n && common < pn && ends[common] == pends[common] &&
               !strncmp(path, prev, ends[common]))
            common++;
        int len = 0;
        for (int d = common; d < n; d++) {
            size_t start = d ? ends[d - 1] + 1 : 0;
            len += snprintf(line + len, sizeof line - (size_t)len, "%*s%.*s:\n", 2 * d, "",
                            (int)(ends[d] - start), path + start);
        }
        tw_cfg_value_format(val, sizeof val, &s->keys[i], cfg);
        len += snprintf(line + len, sizeof line - (size_t)len, "%*s%s: %s\n", 2 * n, "",
                        path + (n ? ends[n - 1] + 1 : 0), val);
        while (used + (size_t)len + 1 > cap) {
            cap *= 2;
            out = realloc(out, cap);
            TW_ASSERT(out);
        }
        memcpy(out + used, line, (size_t)len + 1);
        used += (size_t)len;
    }
    return out;
}

void tw_cfg_help(FILE *f, const tw_cfg_schema *s) {
    char want[256];
    fprintf(f, "%s configuration keys (YAML sections, or key=value on the command line):\n", s->kind);
    for (int i = 0; i < s->n_keys; i++) {
        const tw_cfg_key *k = &s->keys[i];
        tw_cfg_key_describe(want, sizeof want, k);
        fprintf(f, "  %-28s %s; default %s%s\n      %s\n", k->path, want, k->def,
                (k->flags & TW_CFG_REQUIRED) ? " (required)" : "", k->help);
    }
}
