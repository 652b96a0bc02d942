/* libFuzzer harness: a scene manifest (data/manifest.c) of arbitrary bytes. The first byte picks
 * the format (bit 0: JSON lines, else CSV, by the file's extension) and --on-error (bit 1: skip);
 * the rest is the file. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "data/manifest.h"
#include "fuzz.h"

static char links[2][4200];

static void unlink_links(void) {
    for (int i = 0; i < 2; i++)
        if (links[i][0]) unlink(links[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *path = tw_fuzz_file_write(data + 1, size - 1);
    if (!links[0][0]) {
        snprintf(links[0], sizeof links[0], "%s.csv", path);
        snprintf(links[1], sizeof links[1], "%s.jsonl", path);
        for (int i = 0; i < 2; i++)
            if (symlink(path, links[i]) != 0) abort();
        atexit(unlink_links);
    }
    tw_manifest m;
    tw_err err;
    if (tw_manifest_read(&m, links[data[0] & 1], (data[0] >> 1) & 1, 1, &err) == TW_OK) tw_manifest_free(&m);
    return 0;
}
