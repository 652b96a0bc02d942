/* The CPU layout decisions on disk, so that only the first run of a network shape on a machine
 * pays for timing it (layout.c): one text file, a header line, then one line per decision
 * "key<TAB>stem input layout<TAB>network layout<TAB>report". The first decision for a key stays:
 * the processes of a job that time the same shape at once all run the one written first (a resumed
 * run, a second rank). A file that does not parse is never trusted: it is ignored with one warning
 * and replaced at the next write. */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"

#define HEADER "# twinfuse layout cache v1"
#define LINE_MAX_BYTES 2048

static int cache_path(char *path, size_t n_bytes) {
    const char *dir = getenv("TW_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (dir && *dir) n = snprintf(path, n_bytes, "%s/layouts.tsv", dir);
    else if (xdg && *xdg) n = snprintf(path, n_bytes, "%s/twinfuse/layouts.tsv", xdg);
    else if (home && *home) n = snprintf(path, n_bytes, "%s/.cache/twinfuse/layouts.tsv", home);
    else return 0;
    return n > 0 && (size_t)n < n_bytes;
}

/* mkdir -p of path's folder. */
static int make_parent(const char *path) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) return 1;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) return 0;
        *p = '/';
    }
    return mkdir(dir, 0755) == 0 || errno == EEXIST;
}

static void cpu_model(char *out, size_t n_bytes) {
    snprintf(out, n_bytes, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512], name[256] = "", fam[32] = "", model[32] = "";
    while (fgets(line, sizeof line, f) && !(name[0] && fam[0] && model[0])) {
        char *v = strchr(line, ':');
        if (!v) continue;
        v += strspn(v + 1, " ") + 1;
        v[strcspn(v, "\n")] = '\0';
        if (!strncmp(line, "model name", 10) && !name[0]) snprintf(name, sizeof name, "%s", v);
        else if (!strncmp(line, "cpu family", 10) && !fam[0]) snprintf(fam, sizeof fam, "%s", v);
        else if (!strncmp(line, "model\t", 6) && !model[0]) snprintf(model, sizeof model, "%s", v);
    }
    fclose(f);
    for (char *p = name; *p; p++)
        if (*p == '\t' || *p == ';') *p = ' ';
    snprintf(out, n_bytes, "%s (family %s model %s)", name, fam, model);
}

static void add_desc(unsigned long long *h, const tw_conv_desc *d, int count) {
    int v[] = {d->c_in, d->h_in, d->w_in, d->c_out, d->kernel, d->stride, d->pad, d->need_dx, count};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) *h = (*h ^ (unsigned)v[i]) * 1099511628211ull;
}

void tw_cpu_layout_key(tw_cpu_backend *be, const tw_conv_desc *stem, const tw_net_shape *net,
                       char *key, size_t n_bytes) {
    char cpu[320];
    cpu_model(cpu, sizeof cpu);
    const dnnl_version_t *v = dnnl_version();
    unsigned long long h = 1469598103934665603ull;   /* FNV-1a over every later layer */
    if (net) {
        h = (h ^ (unsigned)net->pool) * 1099511628211ull;
        for (int i = 0; i < net->n_convs; i++) add_desc(&h, &net->conv[i], net->count[i]);
    }
    snprintf(key, n_bytes, "cpu=%s;isa=%#x;onednn=%d.%d.%d;dtype=%s;threads=%d;stem=%dx%dx%dx%d/k%ds%dp%d;"
             "net=%016llx", cpu, (unsigned)be->isa, v->major, v->minor, v->patch,
             be->base.act_dtype == TW_BF16 ? "bf16" : "f32", be->n_threads, stem->n, stem->c_in,
             stem->h_in, stem->w_in, stem->kernel, stem->stride, stem->pad, net ? h : 0ull);
}

static int layout_parse(const char *s, tw_layout *out) {
    static const tw_layout all[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C,
                                    TW_LAYOUT_NCHW16C};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(s, tw_layout_name(all[i]))) {
            *out = all[i];
            return 1;
        }
    return 0;
}

typedef struct entry {
    char *key, *report;
    tw_layout x, y;
} entry;

typedef struct table {
    entry *e;
    int n, cap;
} table;

static void table_free(table *t) {
    for (int i = 0; i < t->n; i++) {
        free(t->e[i].key);
        free(t->e[i].report);
    }
    free(t->e);
    *t = (table){0};
}

static void table_add(table *t, const char *key, tw_layout x, tw_layout y, const char *report) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->e = realloc(t->e, (size_t)t->cap * sizeof *t->e);
        TW_ASSERT(t->e);
    }
    t->e[t->n++] = (entry){strdup(key), strdup(report), x, y};
}

/* Reads the whole file into t: 1 when it parsed (or does not exist), 0 when it is corrupt. */
static int table_read(const char *path, table *t, char *why, size_t n_why) {
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    char line[LINE_MAX_BYTES];
    int ok = 1, line_no = 0;
    while (ok && fgets(line, sizeof line, f)) {
        line_no++;
        size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n') {
            snprintf(why, n_why, "line %d is cut short or too long", line_no);
            ok = 0;
            break;
        }
        line[len - 1] = '\0';
        if (line_no == 1) {
            if (strcmp(line, HEADER) != 0) {
                snprintf(why, n_why, "line 1 is not \"%s\"", HEADER);
                ok = 0;
            }
            continue;
        }
        char *f1 = line, *f2 = strchr(f1, '\t'), *f3 = f2 ? strchr(f2 + 1, '\t') : NULL;
        char *f4 = f3 ? strchr(f3 + 1, '\t') : NULL;
        tw_layout x, y;
        if (!f4 || strchr(f4 + 1, '\t')) {
            snprintf(why, n_why, "line %d does not have 4 tab-separated fields", line_no);
            ok = 0;
            break;
        }
        *f2++ = *f3++ = *f4++ = '\0';
        if (!*f1 || !layout_parse(f2, &x) || !layout_parse(f3, &y)) {
            snprintf(why, n_why, "line %d: no key, or an unknown layout", line_no);
            ok = 0;
            break;
        }
        table_add(t, f1, x, y, f4);
    }
    if (ok && ferror(f)) {
        snprintf(why, n_why, "read error");
        ok = 0;
    }
    fclose(f);
    if (!ok) table_free(t);
    return ok;
}

static void warn_corrupt(const char *path, const char *why) {
    char msg[1400];
    snprintf(msg, sizeof msg, "twinfuse: layout cache %s is corrupt (%s): ignored, the layouts are "
             "timed again and the file rewritten\n", path, why);
    tw_cpu_warn_once(msg);
}

int tw_cpu_layout_cache_get(const char *key, tw_layout *x, tw_layout *y, char *report,
                            size_t n_report) {
    char path[1024], why[128];
    if (!cache_path(path, sizeof path)) return 0;
    table t = {0};
    if (!table_read(path, &t, why, sizeof why)) {
        warn_corrupt(path, why);
        return 0;
    }
    int found = 0;
    for (int i = 0; i < t.n && !found; i++) {
        if (strcmp(t.e[i].key, key) != 0) continue;
        *x = t.e[i].x;
        *y = t.e[i].y;
        snprintf(report, n_report, "%s", t.e[i].report);
        found = 1;
    }
    table_free(&t);
    return found;
}

int tw_cpu_layout_cache_put(const char *key, tw_layout *x, tw_layout *y, char *report,
                            size_t n_report) {
    char path[1024], lock_path[1100], tmp[1100], why[128];
    if (!cache_path(path, sizeof path) || !make_parent(path)) return 0;
    /* Read, decide and write under one lock: the ranks of a job plan the same shapes at once. */
    snprintf(lock_path, sizeof lock_path, "%s.lock", path);
    int lock = open(lock_path, O_RDWR | O_CREAT, 0644);
    if (lock >= 0) flock(lock, LOCK_EX);
    table t = {0};
    int kept = 0;
    if (!table_read(path, &t, why, sizeof why)) warn_corrupt(path, why);
    for (int i = 0; i < t.n && !kept; i++) {
        if (strcmp(t.e[i].key, key) != 0) continue;
        *x = t.e[i].x;
        *y = t.e[i].y;
        snprintf(report, n_report, "%s", t.e[i].report);
        kept = 1;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = kept ? NULL : fopen(tmp, "w");
    if (f) {
        int ok = fprintf(f, "%s\n", HEADER) > 0;
        for (int i = 0; i < t.n && ok; i++)
            ok = fprintf(f, "%s\t%s\t%s\t%s\n", t.e[i].key, tw_layout_name(t.e[i].x),
                         tw_layout_name(t.e[i].y), t.e[i].report) > 0;
        if (ok) ok = fprintf(f, "%s\t%s\t%s\t%s\n", key, tw_layout_name(*x), tw_layout_name(*y), report) > 0;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp, path) != 0) {
            remove(tmp);
            char msg[1200];
            snprintf(msg, sizeof msg, "twinfuse: could not write the layout cache %s (%s); the next "
                     "run times the layouts again\n", path, strerror(errno));
            tw_cpu_warn_once(msg);
        }
    }
    table_free(&t);
    if (lock >= 0) {
        flock(lock, LOCK_UN);
        close(lock);
    }
    return kept;
}
