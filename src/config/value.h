/* Private to src/config/: turning one YAML node into the typed field a schema key describes, with
 * the type and range checks, and the reverse (a field as YAML text). load.c walks documents and
 * reports positions; this file only knows values. */
#ifndef TW_CONFIG_VALUE_H
#define TW_CONFIG_VALUE_H

#include <yaml.h>

#include "config/config.h"

/* Sets key k in cfg from node. Returns 0 on success; otherwise 1 with the reason in why
 * ("must be > 0, got -1"), without position or key path. */
int tw_cfg_value_set(const tw_cfg_key *k, void *cfg, yaml_document_t *doc, yaml_node_t *node,
                     char *why, size_t n_why);
/* The key's type and range in words: "float > 0", "enum adam|adamw|lars|sgd". */
void tw_cfg_key_describe(char *buf, size_t n_bytes, const tw_cfg_key *k);

#endif
