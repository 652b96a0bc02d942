/* libFuzzer harness: the YAML configuration loader (src/config) with key=value overrides. The
 * input: one byte choosing the schema (pretrain, finetune, sweep), the YAML text up to a NUL,
 * then up to 8 overrides separated by NULs or newlines. A configuration that loads must also
 * read back from its own serialisation (tw_cfg_to_yaml), as config.h promises. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/finetune.h"
#include "config/pretrain.h"
#include "config/sweep.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const tw_cfg_schema *s = data[0] % 3 == 0 ? tw_pretrain_schema()
                           : data[0] % 3 == 1 ? tw_finetune_schema() : tw_sweep_schema();
    char *text = malloc(size);
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    char *ov[8];
    int n_ov = 0;
    char *p = text + strlen(text);
    while (p < text + size - 1 && n_ov < 8) {
        char *start = ++p;
        while (p < text + size - 1 && *p && *p != '\n') p++;
        *p = 0;
        ov[n_ov++] = start;
    }
    void *cfg = calloc(1, s->struct_size), *again = calloc(1, s->struct_size);
    tw_err err;
    if (cfg && again && tw_cfg_load_text(s, cfg, text, "fuzz.yaml", n_ov, ov, &err) == TW_OK) {
        char *yaml = tw_cfg_to_yaml(s, cfg);
        if (tw_cfg_load_text(s, again, yaml, "fuzz.yaml:serialised", 0, NULL, &err) != TW_OK) {
            fprintf(stderr, "a loaded configuration does not read back: %s\n--- serialised:\n%s\n", err.msg, yaml);
            abort();
        }
        free(yaml);
    }
    free(cfg);
    free(again);
    free(text);
    return 0;
}
