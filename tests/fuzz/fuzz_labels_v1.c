/* libFuzzer harness: a BigEarthNet v1.0 label file (data/labels_v1.c) of arbitrary bytes. */
#include "data/labels.h"
#include "data/labels_v1.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t l19[TW_N_CLASSES] = {0}, l43[TW_N_CLASSES43] = {0};
    tw_err err;
    (void)tw_labels_v1_read(l19, l43, tw_fuzz_file_write(data, size), &err);
    return 0;
}
