/* What the libFuzzer harnesses share: the entry point libFuzzer (or replay.c, which runs saved
 * inputs in ctest) calls, and a scratch file holding the input for readers that take a path. */
#ifndef TW_FUZZ_H
#define TW_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to this process's scratch file (made once, removed at exit) and returns its path. */
const char *tw_fuzz_file_write(const uint8_t *data, size_t size);

#endif
