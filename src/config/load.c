/* Loading a configuration: defaults, then a YAML document walked key by key against the schema,
 * then "a.b=value" overrides, then required keys and cross-key rules. Every error names where
 * the value came from (file:line:col from libyaml's marks, or the override) and the key path.
 * Values themselves are checked in value.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/config.h"
#include "config/value.h"
#include "core/log.h"

#define PATH_MAX_LEN 256

typedef struct origin {
    int set;            /* given by the file or an override (not the default) */
    char where[400];    /* "configs/x.yaml:12:3" or "override 'optim.lr=0.1'" */
} origin;

typedef struct load_ctx {
    const tw_cfg_schema *s;
    void *cfg;
    const char *name;   /* the file name (or label) for messages */
    origin *origins;    /* [s->n_keys] */
    tw_err *err;
} load_ctx;

const tw_cfg_key *tw_cfg_key_find(const tw_cfg_schema *s, const char *path) {
    for (int i = 0; i < s->n_keys; i++)
        if (!strcmp(s->keys[i].path, path)) return &s->keys[i];
    return NULL;
}

/* A section is any proper prefix of a key path ("optim", "augment.view1"). */
static const char *section_example(const tw_cfg_schema *s, const char *path) {
    size_t n = strlen(path);
    for (int i = 0; i < s->n_keys; i++)
        if (!strncmp(s->keys[i].path, path, n) && s->keys[i].path[n] == '.') return s->keys[i].path;
    return NULL;
}

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la >= PATH_MAX_LEN || lb >= PATH_MAX_LEN) return PATH_MAX_LEN;
    int prev[PATH_MAX_LEN + 1], cur[PATH_MAX_LEN + 1];
    for (int j = 0; j <= lb; j++) prev[j] = j;
    for (int i = 1; i <= la; i++) {
        cur[0] = i;
        for (int j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(lb + 1));
    }
    return prev[lb];
}

static int depth(const char *path) {
    int d = 0;
    for (; *path; path++) d += *path == '.';
    return d;
}

/* " (did you mean optim.lr?)" for the closest key or section path of the same depth within 3
 * edits, else "". */
static void suggest(char *buf, size_t n, const tw_cfg_schema *s, const char *path) {
    int best = 4, want_depth = depth(path);
    char pick[PATH_MAX_LEN] = "", cand[PATH_MAX_LEN];
    for (int i = 0; i < s->n_keys; i++) {
        const char *kp = s->keys[i].path;
        size_t len = 0;   /* kp cut to want_depth + 1 components */
        int d = 0;
        while (kp[len] && !(kp[len] == '.' && d == want_depth)) d += kp[len++] == '.';
        if (len >= sizeof cand || d != want_depth) continue;
        memcpy(cand, kp, len);
        cand[len] = '\0';
        int dist = edit_distance(path, cand);
        if (dist < best) {
            best = dist;
            memcpy(pick, cand, len + 1);
        }
    }
    if (*pick) snprintf(buf, n, " (did you mean %s?)", pick);
    else buf[0] = '\0';
}

static tw_status fail_at(load_ctx *c, tw_status code, yaml_mark_t m, const char *path, const char *why) {
    return tw_err_set(c->err, code, "%s:%zu:%zu: %s: %s", c->name, m.line + 1, m.column + 1, path, why);
}

static tw_status walk_mapping(load_ctx *c, yaml_document_t *doc, yaml_node_t *map, const char *prefix) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
        if (kn->type != YAML_SCALAR_NODE)
            return fail_at(c, TW_E_FORMAT, kn->start_mark, *prefix ? prefix : "(top level)",
                           "keys must be plain names, not a mapping or a sequence");
        char path[PATH_MAX_LEN], why[512];
        const char *key = (const char *)kn->data.scalar.value;
        if (snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key) >= (int)sizeof path)
            return fail_at(c, TW_E_UNKNOWN, kn->start_mark, prefix, "key name too long");
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *kq = yaml_document_get_node(doc, q->key);
            if (kq->type == YAML_SCALAR_NODE && !strcmp((const char *)kq->data.scalar.value, key)) {
                snprintf(why, sizeof why, "duplicate key (first given at line %zu, column %zu)",
                         kq->start_mark.line + 1, kq->start_mark.column + 1);
                return fail_at(c, TW_E_FORMAT, kn->start_mark, path, why);
            }
        }
        const tw_cfg_key *k = tw_cfg_key_find(c->s, path);
        if (k) {
            origin *o = &c->origins[k - c->s->keys];
            if (o->set) {   /* the same key spelt both nested and dotted ("optim.lr: ...") */
                snprintf(why, sizeof why, "duplicate key (first given at %s)", o->where);
                return fail_at(c, TW_E_FORMAT, kn->start_mark, path, why);
            }
            if (tw_cfg_value_set(k, c->cfg, doc, vn, why, sizeof why))
                return fail_at(c, TW_E_RANGE, vn->start_mark, path, why);
            o->set = 1;
            snprintf(o->where, sizeof o->where, "%s:%zu:%zu", c->name, vn->start_mark.line + 1,
                     vn->start_mark.column + 1);
        } else if (section_example(c->s, path)) {
            if (vn->type == YAML_MAPPING_NODE) {
                tw_status st = walk_mapping(c, doc, vn, path);
                if (st != TW_OK) return st;
            } else if (!(vn->type == YAML_SCALAR_NODE && vn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                         vn->data.scalar.length == 0)) {
                snprintf(why, sizeof why, "is a section: expected a mapping of its keys (e.g. %s), not a value",
                         section_example(c->s, path));
                return fail_at(c, TW_E_FORMAT, vn->start_mark, path, why);
            }
        } else {
            char hint[PATH_MAX_LEN + 32];
            suggest(hint, sizeof hint, c->s, path);
            snprintf(why, sizeof why, "unknown key%s", hint);
            return fail_at(c, TW_E_UNKNOWN, kn->start_mark, path, why);
        }
    }
    return TW_OK;
}

/* libyaml reports reader errors (bad encoding) as a byte offset; turn it into line:col. */
static yaml_mark_t mark_from_offset(const char *text, size_t len, size_t offset) {
    yaml_mark_t m = {offset, 0, 0};
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') { m.line++; m.column = 0; }
        else m.column++;
    }
    return m;
}

static void parser_problem(char *buf, size_t n, const yaml_parser_t *ps, const char *text, size_t len) {
    yaml_mark_t m = ps->problem_mark;
    if (ps->error == YAML_READER_ERROR) m = mark_from_offset(text, len, ps->problem_offset);
    /* libyaml's message for a tab says nothing of tabs, the usual cause. */
    int tab = m.index < len && text[m.index] == '\t';
    snprintf(buf, n, "%zu:%zu: malformed YAML: %s%s%s%s", m.line + 1, m.column + 1,
             ps->problem ? ps->problem : "syntax error", ps->context ? " " : "", ps->context ? ps->context : "",
             tab ? " (a tab: YAML indents with spaces only)" : "");
}

static tw_status apply_document(load_ctx *c, const char *text, size_t len) {
    yaml_parser_t ps;
    yaml_document_t doc, extra;
    int have_doc = 0, have_extra = 0;
    tw_status st = TW_OK;
    char why[600];
    TW_ASSERT(yaml_parser_initialize(&ps));
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    if (!yaml_parser_load(&ps, &doc)) {
        parser_problem(why, sizeof why, &ps, text, len);
        st = tw_err_set(c->err, TW_E_FORMAT, "%s:%s", c->name, why);
        goto done;
    }
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) goto done;   /* an empty file: defaults only */
    if (!yaml_parser_load(&ps, &extra)) {
        parser_problem(why, sizeof why, &ps, text, len);
        st = tw_err_set(c->err, TW_E_FORMAT, "%s:%s", c->name, why);
        goto done;
    }
    have_extra = 1;
    yaml_node_t *extra_root = yaml_document_get_root_node(&extra);
    if (extra_root) {
        st = fail_at(c, TW_E_FORMAT, extra_root->start_mark, "(document)",
                     "a config file holds one YAML document; found a second one");
        goto done;
    }
    if (root->type != YAML_MAPPING_NODE) {
        st = fail_at(c, TW_E_FORMAT, root->start_mark, "(top level)",
                     "expected a mapping of sections (run:, data:, optim:, ...)");
        goto done;
    }
    st = walk_mapping(c, &doc, root, "");
done:
    if (have_extra) yaml_document_delete(&extra);
    if (have_doc) yaml_document_delete(&doc);
    yaml_parser_delete(&ps);
    return st;
}

/* Sets key k from YAML text (an override's right-hand side or a default). label names the
 * source in errors: "override 'optim.lr=-1'". */
static tw_status apply_value(load_ctx *c, const tw_cfg_key *k, const char *value, const char *label) {
    yaml_parser_t ps;
    yaml_document_t doc;
    int have_doc = 0;
    tw_status st = TW_OK;
    char why[600];
    size_t len = strlen(value);
    TW_ASSERT(yaml_parser_initialize(&ps));
    yaml_parser_set_input_string(&ps, (const unsigned char *)value, len);
    if (!yaml_parser_load(&ps, &doc)) {
        st = tw_err_set(c->err, TW_E_FORMAT, "%s: %s: malformed YAML value: %s", label, k->path,
                        ps.problem ? ps.problem : "syntax error");
        goto done;
    }
    have_doc = 1;
    yaml_node_t *node = yaml_document_get_root_node(&doc);
    yaml_node_t empty;
    if (!node) {   /* "key=" is YAML's empty plain scalar: null */
        memset(&empty, 0, sizeof empty);
        empty.type = YAML_SCALAR_NODE;
        empty.data.scalar.value = (yaml_char_t *)"";
        empty.data.scalar.style = YAML_PLAIN_SCALAR_STYLE;
        node = &empty;
    }
    if (tw_cfg_value_set(k, c->cfg, &doc, node, why, sizeof why)) {
        st = tw_err_set(c->err, TW_E_RANGE, "%s: %s: %s", label, k->path, why);
        goto done;
    }
done:
    if (have_doc) yaml_document_delete(&doc);
    yaml_parser_delete(&ps);
    return st;
}

static tw_status apply_override(load_ctx *c, const char *arg) {
    char label[400], path[PATH_MAX_LEN], hint[PATH_MAX_LEN + 32];
    snprintf(label, sizeof label, "override '%s'", arg);
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof path)
        return tw_err_set(c->err, TW_E_USAGE, "%s: expected key=value, e.g. optim.lr=0.01", label);
    memcpy(path, arg, (size_t)(eq - arg));
    path[eq - arg] = '\0';
    const tw_cfg_key *k = tw_cfg_key_find(c->s, path);
    if (!k) {
        const char *ex = section_example(c->s, path);
        if (ex) return tw_err_set(c->err, TW_E_UNKNOWN, "%s: %s is a section; set one of its keys, e.g. %s=...",
                                  label, path, ex);
        suggest(hint, sizeof hint, c->s, path);
        return tw_err_set(c->err, TW_E_UNKNOWN, "%s: %s: unknown key%s", label, path, hint);
    }
    tw_status st = apply_value(c, k, eq + 1, label);
    if (st != TW_OK) return st;
    origin *o = &c->origins[k - c->s->keys];
    o->set = 1;
    snprintf(o->where, sizeof o->where, "%s", label);
    return TW_OK;
}

static tw_status load_any(const tw_cfg_schema *s, void *cfg, const char *text, size_t len,
                          const char *name, int n_overrides, char *const *overrides, tw_err *err) {
    load_ctx c = {s, cfg, name ? name : "(defaults)", calloc((size_t)s->n_keys, sizeof(origin)), err};
    tw_status st = TW_OK;
    TW_ASSERT(c.origins);
    memset(cfg, 0, s->struct_size);
    tw_err derr;
    load_ctx dc = c;
    dc.err = &derr;
    for (int i = 0; i < s->n_keys; i++)   /* a default that fails its own checks is a table bug */
        if (apply_value(&dc, &s->keys[i], s->keys[i].def, "default") != TW_OK)
            tw_fatal(s->keys[i].path, derr.msg, __FILE__, __LINE__);
    if (text) {
        st = apply_document(&c, text, len);
        if (st != TW_OK) goto done;
    }
    for (int i = 0; i < n_overrides; i++) {
        st = apply_override(&c, overrides[i]);
        if (st != TW_OK) goto done;
    }
    for (int i = 0; i < s->n_keys; i++)
        if ((s->keys[i].flags & TW_CFG_REQUIRED) && !c.origins[i].set) {
            st = tw_err_set(err, TW_E_MISSING, "%s: %s: required key missing (%s); set it in the file or "
                            "as %s=... on the command line", c.name, s->keys[i].path, s->keys[i].help,
                            s->keys[i].path);
            goto done;
        }
    if (s->check) {
        char why[512];
        const char *bad = s->check(cfg, why, sizeof why);
        if (bad) {
            const tw_cfg_key *k = tw_cfg_key_find(s, bad);
            TW_ASSERT(k);
            const origin *o = &c.origins[k - s->keys];
            st = tw_err_set(err, TW_E_RANGE, "%s: %s: %s", o->set ? o->where : c.name, bad, why);
            goto done;
        }
    }
done:
    free(c.origins);
    return st;
}

tw_status tw_cfg_load_text(const tw_cfg_schema *s, void *cfg, const char *text, const char *name,
                           int n_overrides, char *const *overrides, tw_err *err) {
    return load_any(s, cfg, text, text ? strlen(text) : 0, name, n_overrides, overrides, err);
}

tw_status tw_cfg_load(const tw_cfg_schema *s, void *cfg, const char *path, int n_overrides,
                      char *const *overrides, tw_err *err) {
    char *text = NULL;
    size_t len = 0;
    tw_status st = TW_OK;
    FILE *f = NULL;
    if (path) {
        f = fopen(path, "rb");
        if (!f) return tw_err_set(err, TW_E_IO, "%s: cannot open config: %s", path, strerror(errno));
        size_t cap = 4096;
        text = malloc(cap);
        TW_ASSERT(text);
        size_t got;
        while ((got = fread(text + len, 1, cap - len - 1, f)) > 0) {
            len += got;
            if (len + 1 == cap) {
                cap *= 2;
                text = realloc(text, cap);
                TW_ASSERT(text);
            }
        }
        if (ferror(f)) {
            st = tw_err_set(err, TW_E_IO, "%s: cannot read config: %s", path, strerror(errno));
            goto done;
        }
        text[len] = '\0';
    }
    st = load_any(s, cfg, text, len, path, n_overrides, overrides, err);
done:
    if (f) fclose(f);
    free(text);
    return st;
}
