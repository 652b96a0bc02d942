/* The scratch file of fuzz.h: one per process, under TMPDIR, rewritten for every input. */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char g_path[512];

static void remove_scratch(void) {
    if (g_path[0]) unlink(g_path);
}

const char *tw_fuzz_file_write(const uint8_t *data, size_t size) {
    if (!g_path[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(g_path, sizeof g_path, "%s/tw_fuzz_XXXXXX", tmp && *tmp ? tmp : "/tmp");
        int fd = mkstemp(g_path);
        if (fd < 0) {
            perror(g_path);
            abort();
        }
        close(fd);
        atexit(remove_scratch);
    }
    FILE *f = fopen(g_path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(g_path);
        abort();
    }
    return g_path;
}
