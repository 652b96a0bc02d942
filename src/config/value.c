/* One YAML node into one typed config field (value.h), with type and range checks, and a field
 * back to YAML text (tw_cfg_value_format). Numbers and booleans must be plain scalars: in YAML a
 * quoted "0.1" is a string, and we say so rather than guess. */
#include "config/value.h"

#include "core/log.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *scalar_text(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static int is_plain(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static int is_null(const yaml_node_t *n) {
    if (!is_plain(n)) return 0;
    const char *t = scalar_text(n);
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

/* What the user wrote, in words, for "got ..." (long scalars are cut). */
static void describe_node(char *buf, size_t n, const yaml_node_t *node) {
    if (node->type == YAML_MAPPING_NODE) snprintf(buf, n, "a mapping");
    else if (node->type == YAML_SEQUENCE_NODE) snprintf(buf, n, "a sequence");
    else if (is_null(node)) snprintf(buf, n, "null");
    else if (is_plain(node)) snprintf(buf, n, "%.80s", scalar_text(node));
    else snprintf(buf, n, "the quoted string \"%.80s\"", scalar_text(node));
}

static void range_text(char *buf, size_t n, const tw_cfg_key *k) {
    int lo = k->flags & (TW_CFG_LO | TW_CFG_LO_EXCL), hi = k->flags & (TW_CFG_HI | TW_CFG_HI_EXCL);
    if (lo && hi)
        snprintf(buf, n, "in %c%.17g, %.17g%c", (k->flags & TW_CFG_LO_EXCL) ? '(' : '[', k->lo, k->hi,
                 (k->flags & TW_CFG_HI_EXCL) ? ')' : ']');
    else if (lo) snprintf(buf, n, "%s %.17g", (k->flags & TW_CFG_LO_EXCL) ? ">" : ">=", k->lo);
    else if (hi) snprintf(buf, n, "%s %.17g", (k->flags & TW_CFG_HI_EXCL) ? "<" : "<=", k->hi);
    else buf[0] = '\0';
}

static int in_range(const tw_cfg_key *k, double v) {
    if ((k->flags & TW_CFG_LO) && !(v >= k->lo)) return 0;
    if ((k->flags & TW_CFG_LO_EXCL) && !(v > k->lo)) return 0;
    if ((k->flags & TW_CFG_HI) && !(v <= k->hi)) return 0;
    if ((k->flags & TW_CFG_HI_EXCL) && !(v < k->hi)) return 0;
    return 1;
}

static const char *type_name(tw_cfg_type t) {
    switch (t) {
    case TW_CFG_INT: case TW_CFG_I64: return "integer";
    case TW_CFG_FLOAT: case TW_CFG_FLOATS: return "number";
    case TW_CFG_BOOL: return "boolean (true or false)";
    case TW_CFG_STRING: return "string";
    case TW_CFG_ENUM: return "enum";
    }
    return "?";
}

void tw_cfg_key_describe(char *buf, size_t n, const tw_cfg_key *k) {
    char range[96];
    range_text(range, sizeof range, k);
    if (k->type == TW_CFG_ENUM) {
        size_t used = (size_t)snprintf(buf, n, "one of ");
        for (int i = 0; k->names[i] && used < n; i++)
            used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? "|" : "", k->names[i]);
    } else if (k->type == TW_CFG_FLOATS) {
        snprintf(buf, n, "a list of %d numbers%s%s", k->count, range[0] ? ", each " : "", range);
    } else {
        snprintf(buf, n, "%s%s%s%s", type_name(k->type), range[0] ? " " : "", range,
                 (k->flags & TW_CFG_NULLABLE) ? " or null" : "");
    }
}

/* Parses one number for k (INT, I64, FLOAT or an element of FLOATS) from a plain scalar. */
static int parse_number(double *out_f, long long *out_i, const tw_cfg_key *k, const yaml_node_t *node,
                        char *why, size_t n_why) {
    char got[128], want[160];
    describe_node(got, sizeof got, node);
    tw_cfg_key_describe(want, sizeof want, k);
    if (!is_plain(node) || is_null(node)) {
        snprintf(why, n_why, "expected %s, got %s", want, got);
        return 1;
    }
    const char *t = scalar_text(node);
    char *end = NULL;
    errno = 0;
    if (k->type == TW_CFG_INT || k->type == TW_CFG_I64) {
        long long v = strtoll(t, &end, 10);
        if (end == t || *end) {
            snprintf(why, n_why, "expected %s, got %s", want, got);
            return 1;
        }
        if (errno == ERANGE || (k->type == TW_CFG_INT && (v < INT_MIN || v > INT_MAX))) {
            snprintf(why, n_why, "must be %s, got %s (too large)", want, got);
            return 1;
        }
        *out_i = v;
        *out_f = (double)v;
    } else {
        double v = strtod(t, &end);
        if (end == t || *end || !isfinite(v)) {
            snprintf(why, n_why, "expected %s (finite), got %s", want, got);
            return 1;
        }
        *out_f = v;
    }
    if (!in_range(k, *out_f)) {
        char range[96];
        range_text(range, sizeof range, k);
        snprintf(why, n_why, "must be %s, got %s", range, got);
        return 1;
    }
    return 0;
}

int tw_cfg_value_set(const tw_cfg_key *k, void *cfg, yaml_document_t *doc, yaml_node_t *node,
                     char *why, size_t n_why) {
    char *field = (char *)cfg + k->offset;
    char got[128], want[160];
    describe_node(got, sizeof got, node);
    tw_cfg_key_describe(want, sizeof want, k);
    double f;
    long long i;

    if ((k->flags & TW_CFG_NULLABLE) && is_null(node)) {
        if (k->type == TW_CFG_INT) *(int *)field = TW_CFG_UNSET;
        else *(int64_t *)field = TW_CFG_UNSET;
        return 0;
    }
    switch (k->type) {
    case TW_CFG_INT:
        if (parse_number(&f, &i, k, node, why, n_why)) return 1;
        *(int *)field = (int)i;
        return 0;
    case TW_CFG_I64:
        if (parse_number(&f, &i, k, node, why, n_why)) return 1;
        *(int64_t *)field = (int64_t)i;
        return 0;
    case TW_CFG_FLOAT:
        if (parse_number(&f, &i, k, node, why, n_why)) return 1;
        *(double *)field = f;
        return 0;
    case TW_CFG_BOOL:
        if (is_plain(node) && (!strcmp(scalar_text(node), "true") || !strcmp(scalar_text(node), "false"))) {
            *(int *)field = !strcmp(scalar_text(node), "true");
            return 0;
        }
        snprintf(why, n_why, "expected %s, got %s", want, got);
        return 1;
    case TW_CFG_STRING:
        if (node->type != YAML_SCALAR_NODE || is_null(node)) {
            snprintf(why, n_why, "expected a string, got %s", got);
            return 1;
        }
        if (node->data.scalar.length >= TW_CFG_STR_MAX || strlen(scalar_text(node)) != node->data.scalar.length) {
            snprintf(why, n_why, "string too long or holding a NUL byte (at most %d bytes)", TW_CFG_STR_MAX - 1);
            return 1;
        }
        memcpy(field, scalar_text(node), node->data.scalar.length + 1);
        return 0;
    case TW_CFG_ENUM:
        if (node->type == YAML_SCALAR_NODE)
            for (int e = 0; k->names[e]; e++)
                if (!strcmp(scalar_text(node), k->names[e])) {
                    *(int *)field = e;
                    return 0;
                }
        snprintf(why, n_why, "expected %s, got %s", want, got);
        return 1;
    case TW_CFG_FLOATS: {
        int n_items = node->type == YAML_SEQUENCE_NODE
                          ? (int)(node->data.sequence.items.top - node->data.sequence.items.start) : -1;
        if (n_items != k->count) {
            if (n_items < 0) snprintf(why, n_why, "expected %s, got %s", want, got);
            else snprintf(why, n_why, "expected %s, got a list of %d", want, n_items);
            return 1;
        }
        double vals[16];
        TW_ASSERT(k->count <= (int)(sizeof vals / sizeof vals[0]));
        for (int e = 0; e < n_items; e++) {
            yaml_node_t *item = yaml_document_get_node(doc, node->data.sequence.items.start[e]);
            char inner[256];
            if (parse_number(&vals[e], &i, k, item, inner, sizeof inner)) {
                snprintf(why, n_why, "element %d: %s", e, inner);
                return 1;
            }
        }
        memcpy(field, vals, sizeof(double) * (size_t)n_items);
        return 0;
    }
    }
    TW_ASSERT(!"unknown config type");
    return 1;
}

/* The shortest %.Ng text that reads back to exactly v. */
static void format_double(char *buf, size_t n, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* A bare "1" or "1e-05" reads back as a number either way; keep YAML's float look. */
    if (!strpbrk(buf, ".eEn")) {
        size_t len = strlen(buf);
        if (len + 2 < n) memcpy(buf + len, ".0", 3);
    }
}

void tw_cfg_value_format(char *buf, size_t n, const tw_cfg_key *k, const void *cfg) {
    const char *field = (const char *)cfg + k->offset;
    switch (k->type) {
    case TW_CFG_INT: {
        int v = *(const int *)field;
        if ((k->flags & TW_CFG_NULLABLE) && v == TW_CFG_UNSET) snprintf(buf, n, "null");
        else snprintf(buf, n, "%d", v);
        return;
    }
    case TW_CFG_I64: {
        int64_t v = *(const int64_t *)field;
        if ((k->flags & TW_CFG_NULLABLE) && v == TW_CFG_UNSET) snprintf(buf, n, "null");
        else snprintf(buf, n, "%lld", (long long)v);
        return;
    }
    case TW_CFG_FLOAT: format_double(buf, n, *(const double *)field); return;
    case TW_CFG_BOOL: snprintf(buf, n, "%s", *(const int *)field ? "true" : "false"); return;
    case TW_CFG_ENUM: snprintf(buf, n, "%s", k->names[*(const int *)field]); return;
    case TW_CFG_STRING: {
        /* Double-quoted YAML: escape the backslash, the quote and control bytes. */
        size_t used = 0;
        if (n < 3) { buf[0] = '\0'; return; }
        buf[used++] = '"';
        for (const unsigned char *c = (const unsigned char *)field; *c && used + 6 < n; c++) {
            if (*c == '"' || *c == '\\') { buf[used++] = '\\'; buf[used++] = (char)*c; }
            else if (*c < 0x20) used += (size_t)snprintf(buf + used, n - used, "\\x%02x", *c);
            else buf[used++] = (char)*c;
        }
        buf[used++] = '"';
        buf[used] = '\0';
        return;
    }
    case TW_CFG_FLOATS: {
        size_t used = (size_t)snprintf(buf, n, "[");
        for (int e = 0; e < k->count && used < n; e++) {
            char one[40];
            format_double(one, sizeof one, ((const double *)field)[e]);
            used += (size_t)snprintf(buf + used, n - used, "%s%s", e ? ", " : "", one);
        }
        if (used < n) snprintf(buf + used, n - used, "]");
        return;
    }
    }
    snprintf(buf, n, "?");
}
