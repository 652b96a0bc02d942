/* tw_cfg_schema_build (config.h): one command's key table from the shared sections and its own
 * keys, built once when the command first asks for its schema. */
#include <string.h>

#include "config/config.h"
#include "core/log.h"

void tw_cfg_schema_build(tw_cfg_schema *out, tw_cfg_key *storage, int cap, const char *kind,
                         size_t struct_size, const char *(*check)(const void *, char *, size_t),
                         const tw_cfg_part *parts, int n_parts, const tw_cfg_default *defaults,
                         int n_defaults) {
    int n = 0;
    for (int p = 0; p < n_parts; p++)
        for (int i = 0; i < parts[p].n_keys; i++) {
            TW_ASSERT(n < cap);
            storage[n] = parts[p].keys[i];
            storage[n].offset += parts[p].base;
            TW_ASSERT(storage[n].offset < struct_size);
            n++;
        }
    for (int d = 0; d < n_defaults; d++) {
        int found = 0;
        for (int i = 0; i < n && !found; i++)
            if (!strcmp(storage[i].path, defaults[d].path)) {
                storage[i].def = defaults[d].def;
                found = 1;
            }
        TW_ASSERT(found);
    }
    *out = (tw_cfg_schema){kind, storage, n, struct_size, check};
}
