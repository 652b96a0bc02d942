/* libFuzzer harness: the BigEarthNet v2.0 metadata that `twinfuse convert --layout 2` reads
 * (JSON lines from tools/reben_metadata.py, which is pyarrow; this is the C side that consumes
 * them: data/convert_list.c), arbitrary bytes, skipping bad patches or stopping at the first. */
#include "data/convert.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tw_convert_opts o = {.layout = 2, .root = "/nonexistent", .metadata = tw_fuzz_file_write(data, size)};
    o.stop_on_error = size > 0 && (data[0] & 1);
    o.keep_snow = size > 0 && (data[0] & 2);
    tw_convert_summary sum = {0};
    tw_patch_list list;
    tw_err err;
    if (tw_convert_list(&list, &sum, &o, &err) == TW_OK) tw_patch_list_free(&list);
    return 0;
}
