/* The generic, table-driven configuration mechanism: a schema is an array of keys, each with a
 * dotted path, a type, an offsetof into the config struct, a default, a range and help text.
 * YAML (libyaml) and "a.b=value" overrides go through the same checks; errors name the file,
 * line and column (or the override) and the key path. The shared sections' tables live in
 * sections.c, each command's own in pretrain.c, finetune.c; tw_cfg_schema_build joins them
 * (compose.c); printing and serialisation are in emit.c. */
#ifndef TW_CONFIG_H
#define TW_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

/* Capacity of a string value, terminator included; longer values are an error. */
#define TW_CFG_STR_MAX 512
/* What a nullable INT or I64 key holds when set to null (its range must start at 0 or above). */
#define TW_CFG_UNSET (-1)

typedef enum {
    TW_CFG_INT,      /* int */
    TW_CFG_I64,      /* int64_t */
    TW_CFG_FLOAT,    /* double */
    TW_CFG_BOOL,     /* int, 0 or 1; YAML true / false */
    TW_CFG_STRING,   /* char[TW_CFG_STR_MAX] */
    TW_CFG_ENUM,     /* int, the index into names */
    TW_CFG_FLOATS    /* double[count], a YAML sequence of exactly count numbers */
} tw_cfg_type;

/* Range flags: which bounds apply and whether they are exclusive. */
enum {
    TW_CFG_LO = 1,         /* value >= lo */
    TW_CFG_LO_EXCL = 2,    /* value > lo */
    TW_CFG_HI = 4,         /* value <= hi */
    TW_CFG_HI_EXCL = 8,    /* value < hi */
    TW_CFG_REQUIRED = 16,  /* must be given (file or override); the default is only a placeholder */
    TW_CFG_NULLABLE = 32   /* INT / I64 may be null (stored as TW_CFG_UNSET) */
};

typedef struct tw_cfg_key {
    const char *path;               /* "optim.lr" */
    tw_cfg_type type;
    size_t offset;                  /* offsetof(struct, field) */
    int count;                      /* TW_CFG_FLOATS: number of elements; otherwise 1 */
    const char *const *names;       /* TW_CFG_ENUM: NULL-terminated value names */
    const char *def;                /* default, as YAML text parsed by the same code */
    int flags;                      /* TW_CFG_LO | ... */
    double lo, hi;
    const char *help;
} tw_cfg_key;

typedef struct tw_cfg_schema {
    const char *kind;               /* "pretrain" */
    const tw_cfg_key *keys;
    int n_keys;
    size_t struct_size;
    /* Rules that span several keys. Returns NULL when cfg is fine, else the path of the key to
     * blame with the reason written to why. May be NULL. */
    const char *(*check)(const void *cfg, char *why, size_t n_why);
} tw_cfg_schema;

/* A part of a command's schema: a key table whose offsets are relative to a struct that sits at
 * `base` in the command's config struct. */
typedef struct tw_cfg_part {
    const tw_cfg_key *keys;
    int n_keys;
    size_t base;
} tw_cfg_part;

/* A command's own default for a shared key (path must be one of the parts' keys). */
typedef struct tw_cfg_default {
    const char *path, *def;
} tw_cfg_default;

/* out = the parts' keys in order, offsets moved by each part's base, with the defaults replaced;
 * storage holds cap keys. Too small a storage or an unknown default path is a bug (TW_ASSERT). */
void tw_cfg_schema_build(tw_cfg_schema *out, tw_cfg_key *storage, int cap, const char *kind,
                         size_t struct_size, const char *(*check)(const void *, char *, size_t),
                         const tw_cfg_part *parts, int n_parts, const tw_cfg_default *defaults,
                         int n_defaults);

/* Fills cfg (schema->struct_size bytes) with the defaults, then the YAML file at path (NULL:
 * defaults only), then each "a.b=value" override in order (later ones win); then checks the
 * required keys and the schema's cross-key rules. On error cfg is left half-filled. */
tw_status tw_cfg_load(const tw_cfg_schema *s, void *cfg, const char *path, int n_overrides,
                      char *const *overrides, tw_err *err);
/* The same from YAML text held in memory (a serialised config from a run directory or a
 * checkpoint); name labels the errors ("ckpt-100.safetensors:config"). */
tw_status tw_cfg_load_text(const tw_cfg_schema *s, void *cfg, const char *text, const char *name,
                           int n_overrides, char *const *overrides, tw_err *err);

/* Looks a key up by path; NULL if the schema has none. */
const tw_cfg_key *tw_cfg_key_find(const tw_cfg_schema *s, const char *path);
/* The value of key k in cfg as YAML text (strings double-quoted, floats the shortest text that
 * reads back to the same double, null for an unset nullable key). */
void tw_cfg_value_format(char *buf, size_t n_bytes, const tw_cfg_key *k, const void *cfg);

/* The effective configuration, every key once, on lines starting with "#", grouped by the first
 * path component: "#   optim.name=adam optim.lr=0.001 ...". */
void tw_cfg_print(FILE *f, const tw_cfg_schema *s, const void *cfg);
/* Serialises every key as block YAML that tw_cfg_load_text reads back to an identical struct.
 * Returns a malloc'd string; the caller frees it. */
char *tw_cfg_to_yaml(const tw_cfg_schema *s, const void *cfg);
/* One entry per key: path, type, default, range and help (for `twinfuse <cmd> --help`). */
void tw_cfg_help(FILE *f, const tw_cfg_schema *s);

#endif
