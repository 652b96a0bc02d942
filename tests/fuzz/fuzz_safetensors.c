/* libFuzzer harness: the safetensors reader (core/safetensors.c) on arbitrary bytes: open and
 * validate the header, then read every tensor and look up every metadata key. */
#include <stdlib.h>

#include "core/safetensors.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tw_st_file *f = NULL;
    tw_err err;
    if (tw_st_open(&f, tw_fuzz_file_write(data, size), &err) != TW_OK) return 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const tw_st_tensor *t = &f->tensors[i];
        void *buf = malloc(t->end - t->begin + 1);
        if (buf && tw_st_find(f, t->name) == t) (void)tw_st_read(f, buf, t, &err);
        free(buf);
    }
    for (int i = 0; i < f->n_meta; i++) (void)tw_st_meta_get(f, f->meta[i].key);
    tw_st_close(f);
    return 0;
}
