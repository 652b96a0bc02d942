/* Listing a BigEarthNet archive for the converter: v1.0 from its folders, the S1 label files'
 * corresponding_s2_patch and the official split, cloud and snow lists; v2.0 from the metadata
 * that tools/reben_metadata.py exports from the parquet files. JSON through jansson. */
#include "data/convert.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/labels.h"
#include "data/shard.h"

int tw_convert_split_id(tw_convert_summary *sum, const char *name) {
    for (int i = 0; i < sum->n_splits; i++)
        if (!strcmp(sum->split_names[i], name)) return i;
    if (sum->n_splits == TW_CONVERT_MAX_SPLITS || strlen(name) >= sizeof sum->split_names[0]) return -1;
    strcpy(sum->split_names[sum->n_splits], name);
    return sum->n_splits++;
}

void tw_patch_list_free(tw_patch_list *list) {
    for (int64_t i = 0; i < list->n; i++) {
        free(list->p[i].s2);
        free(list->p[i].s1);
    }
    free(list->p);
    *list = (tw_patch_list){0};
}

tw_status tw_patch_list_add(tw_patch_list *list, const tw_patch *p, tw_err *err) {
    if (list->n == list->cap) {
        int64_t cap = list->cap ? 2 * list->cap : 1024;
        tw_patch *grown = realloc(list->p, (size_t)cap * sizeof *grown);
        if (!grown) return tw_err_set(err, TW_E_NOMEM, "patch list of %lld", (long long)cap);
        list->p = grown;
        list->cap = cap;
    }
    tw_patch *q = &list->p[list->n];
    *q = *p;
    q->s2 = strdup(p->s2);
    q->s1 = strdup(p->s1);
    if (!q->s2 || !q->s1) {
        free(q->s2);
        free(q->s1);
        return tw_err_set(err, TW_E_NOMEM, "patch list");
    }
    list->n++;
    return TW_OK;
}

/* ---- sorted name sets ---------------------------------------------------------------------- */
typedef struct { char **v; size_t n, cap; } names;

static void names_free(names *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    *s = (names){0};
}

static int names_push(names *s, const char *x) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        char **g = realloc(s->v, cap * sizeof *g);
        if (!g) return -1;
        s->v = g;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(x))) return -1;
    s->n++;
    return 0;
}

static int cmp_pstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static void names_sort(names *s) {
    if (s->n) qsort(s->v, s->n, sizeof *s->v, cmp_pstr);
}
static int names_has(const names *s, const char *x) {
    return s->n && bsearch(&x, s->v, s->n, sizeof *s->v, cmp_pstr) != NULL;
}

/* Reads the first comma-separated field of every non-empty line (the official lists hold an S2
 * name per line, BigEarthNet-MM's "S2,S1"). */
static tw_status read_name_file(names *s, const char *path, tw_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return tw_err_set(err, TW_E_IO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    tw_status st = TW_OK;
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, ",\r\n \t")] = 0;
        if (line[0] && names_push(s, line)) {
            st = tw_err_set(err, TW_E_NOMEM, "%s", path);
            break;
        }
    }
    free(line);
    fclose(f);
    names_sort(s);
    return st;
}

static tw_status list_dirs(names *s, const char *root, tw_err *err) {
    DIR *d = opendir(root);
    if (!d) return tw_err_set(err, TW_E_IO, "%s: %s", root, strerror(errno));
    tw_status st = TW_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (names_push(s, e->d_name)) {
            st = tw_err_set(err, TW_E_NOMEM, "%s", root);
            break;
        }
    }
    closedir(d);
    names_sort(s);
    return st;
}

/* A listing-time skip: counted, reported, and fatal under --on-error stop. */
static tw_status skip(tw_convert_summary *sum, const tw_convert_opts *o, tw_skip why, tw_err *err, const char *fmt,
                      const char *a, const char *b) {
    char msg[20000];   /* room for two paths */
    snprintf(msg, sizeof msg, fmt, a, b);
    sum->skipped[why]++;
    if (why == TW_SKIP_SNOW || why == TW_SKIP_NOT_LISTED) return TW_OK;
    if (o->stop_on_error) return tw_err_set(err, TW_E_FORMAT, "%s", msg);
    tw_convert_warn(o, "twinfuse convert: skipped: %s\n", msg);
    return TW_OK;
}

/* ---- v1.0 ---------------------------------------------------------------------------------- */
typedef struct { char *s2, *s1; } pair;
static int cmp_pair(const void *a, const void *b) { return strcmp(((const pair *)a)->s2, ((const pair *)b)->s2); }

static tw_status list_v1(tw_patch_list *list, tw_convert_summary *sum, const tw_convert_opts *o, tw_err *err) {
    names s1s = {0}, s2s = {0}, split_sets[3] = {{0}}, clouds = {0}, snow = {0};
    static const char *const split_files[3] = {"train", "val", "test"};
    pair *pairs = NULL;
    size_t n_pairs = 0;
    char path[8192];
    tw_status st;
    if (!o->s2_root || !o->s1_root) return tw_err_set(err, TW_E_USAGE, "v1 layout: --s2 DIR and --s1 DIR are required");
    if (!o->split && !o->splits_dir)
        return tw_err_set(err, TW_E_USAGE, "v1 layout: give --splits DIR (train.csv, val.csv, test.csv) or --split NAME");
    if ((st = list_dirs(&s1s, o->s1_root, err)) || (st = list_dirs(&s2s, o->s2_root, err))) goto done;
    for (int k = 0; k < 3 && o->splits_dir && !o->split; k++) {
        snprintf(path, sizeof path, "%s/%s.csv", o->splits_dir, split_files[k]);
        if ((st = read_name_file(&split_sets[k], path, err))) goto done;
    }
    if ((o->cloud_list && (st = read_name_file(&clouds, o->cloud_list, err))) ||
        (o->snow_list && (st = read_name_file(&snow, o->snow_list, err))))
        goto done;
    /* S1 -> S2 through each S1 label file's corresponding_s2_patch. */
    pairs = calloc(s1s.n ? s1s.n : 1, sizeof *pairs);
    if (!pairs) { st = tw_err_set(err, TW_E_NOMEM, "pairs"); goto done; }
    for (size_t i = 0; i < s1s.n; i++) {
        snprintf(path, sizeof path, "%s/%s/%s_labels_metadata.json", o->s1_root, s1s.v[i], s1s.v[i]);
        json_error_t je;
        json_t *j = json_load_file(path, 0, &je);
        const char *s2 = j ? json_string_value(json_object_get(j, "corresponding_s2_patch")) : NULL;
        if (!s2) {
            st = skip(sum, o, TW_SKIP_NO_S2, err, "%s: no corresponding_s2_patch (%s)", path, j ? "key missing" : je.text);
        } else if (!names_has(&s2s, s2)) {
            st = skip(sum, o, TW_SKIP_NO_S2, err, "S1 patch %s: its S2 partner %s is not in the S2 root", s1s.v[i], s2);
        } else {
            pairs[n_pairs].s2 = s2s.v[((char **)bsearch(&s2, s2s.v, s2s.n, sizeof *s2s.v, cmp_pstr)) - s2s.v];
            pairs[n_pairs++].s1 = s1s.v[i];
        }
        json_decref(j);
        if (st) goto done;
    }
    qsort(pairs, n_pairs, sizeof *pairs, cmp_pair);
    for (size_t i = 0; i < s2s.n; i++) {
        pair key = {.s2 = s2s.v[i]}, *pr = bsearch(&key, pairs, n_pairs, sizeof *pairs, cmp_pair);
        if (!pr) {
            if ((st = skip(sum, o, TW_SKIP_NO_S1, err, "S2 patch %s%s: no S1 patch names it", s2s.v[i], ""))) goto done;
            continue;
        }
        /* Snow first, then clouds: the official split lists leave both kinds of patch out, so a
         * cloudy patch goes to `clouds` whether or not a list names it. */
        tw_patch p = {.s2 = pr->s2, .s1 = pr->s1};
        const char *split = NULL;
        if (names_has(&snow, p.s2)) {
            p.flags |= TW_FLAG_SNOW;
            if (!o->keep_snow) {
                skip(sum, o, TW_SKIP_SNOW, err, "%s%s", p.s2, "");
                continue;
            }
        }
        if (names_has(&clouds, p.s2)) {
            p.flags |= TW_FLAG_CLOUD;
            split = "clouds";
        }
        if (!split) split = o->split;
        for (int k = 0; k < 3 && !split; k++)
            if (names_has(&split_sets[k], p.s2)) split = split_files[k];
        if (!split) {
            skip(sum, o, TW_SKIP_NOT_LISTED, err, "%s%s", p.s2, "");
            continue;
        }
        if ((p.split = tw_convert_split_id(sum, split)) < 0) {
            st = tw_err_set(err, TW_E_RANGE, "split name '%s': too long or too many splits", split);
            goto done;
        }
        if ((st = tw_patch_list_add(list, &p, err))) goto done;
    }
done:
    free(pairs);
    names_free(&s1s);
    names_free(&s2s);
    for (int k = 0; k < 3; k++) names_free(&split_sets[k]);
    names_free(&clouds);
    names_free(&snow);
    return st;
}

/* ---- v2.0 ---------------------------------------------------------------------------------- */
static tw_status list_v2(tw_patch_list *list, tw_convert_summary *sum, const tw_convert_opts *o, tw_err *err) {
    if (!o->root || !o->metadata)
        return tw_err_set(err, TW_E_USAGE, "v2 layout: --root DIR and --metadata FILE (from tools/reben_metadata.py) are required");
    FILE *f = fopen(o->metadata, "r");
    if (!f) return tw_err_set(err, TW_E_IO, "%s: %s", o->metadata, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    tw_status st = TW_OK;
    for (long lineno = 1; getline(&line, &cap, f) > 0 && !st; lineno++) {
        if (line[strspn(line, " \t\r\n")] == 0) continue;
        json_error_t je;
        json_t *j = json_loads(line, 0, &je), *labels;
        const char *s2 = NULL, *s1 = NULL, *split = NULL;
        int snow = 0, cloud = 0;
        if (!j || json_unpack_ex(j, &je, 0, "{s:s, s:s, s:s, s:o, s:b, s:b}", "patch_id", &s2, "s1_name", &s1, "split",
                                 &split, "labels", &labels, "contains_seasonal_snow", &snow, "contains_cloud_or_shadow",
                                 &cloud) != 0 ||
            !json_is_array(labels)) {
            st = tw_err_set(err, TW_E_FORMAT, "%s:%ld: %s", o->metadata, lineno, j ? je.text : je.text);
            json_decref(j);
            break;
        }
        tw_patch p = {.s2 = (char *)s2, .s1 = (char *)s1, .has_labels = 1};
        size_t k;
        json_t *lab;
        const char *bad = NULL;
        json_array_foreach(labels, k, lab) {
            int c = json_is_string(lab) ? tw_labels_find19(json_string_value(lab)) : -1;
            if (c < 0) bad = json_is_string(lab) ? json_string_value(lab) : "(not a string)";
            else p.labels19[c] = 1;
        }
        if (bad) {
            st = skip(sum, o, TW_SKIP_LABEL, err, "patch %s: unknown label '%s'", s2, bad);
        } else if (snow && !o->keep_snow) {
            skip(sum, o, TW_SKIP_SNOW, err, "%s%s", s2, "");
        } else {
            if (snow) p.flags |= TW_FLAG_SNOW;
            const char *name = o->split ? o->split : !strcmp(split, "validation") ? "val" : split;
            if (cloud) {
                p.flags |= TW_FLAG_CLOUD;
                name = "clouds";
            }
            if ((p.split = tw_convert_split_id(sum, name)) < 0)
                st = tw_err_set(err, TW_E_RANGE, "%s:%ld: split name '%s': too long or too many splits", o->metadata, lineno, name);
            else
                st = tw_patch_list_add(list, &p, err);
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return st;
}

static int cmp_patch(const void *a, const void *b) {
    const tw_patch *x = a, *y = b;
    if (x->split != y->split) return x->split - y->split;
    return strcmp(x->s2, y->s2);
}

tw_status tw_convert_list(tw_patch_list *list, tw_convert_summary *sum, const tw_convert_opts *o, tw_err *err) {
    *list = (tw_patch_list){0};
    tw_status st = o->layout == TW_LAYOUT_V1       ? list_v1(list, sum, o, err)
                 : o->layout == TW_LAYOUT_V2       ? list_v2(list, sum, o, err)
                 : o->layout == TW_LAYOUT_SSL4EO ? tw_ssl4eo_list(list, sum, o, err)
                                                   : tw_err_set(err, TW_E_USAGE, "layout %d, want v1, v2 or ssl4eo", o->layout);
    if (st) {
        tw_patch_list_free(list);
        return st;
    }
    if (list->n) qsort(list->p, (size_t)list->n, sizeof *list->p, cmp_patch);
    return TW_OK;
}
