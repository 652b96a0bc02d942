/* core/atomic_file.h on targets that are not regular files: /dev/full is written in place and its
 * ENOSPC fails the write (it used to be renamed over: exit 0, nothing written, the device replaced
 * by a file when run as root); a regular file is replaced whole; seekable writers refuse devices. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../check.h"
#include "core/atomic_file.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_atomic_file DIR\n");
        return 2;
    }
    struct stat sb;
    if (stat("/dev/full", &sb) != 0 || !S_ISCHR(sb.st_mode)) {
        printf("SKIP: no /dev/full character device\n");
        return 77;
    }
    tw_err err = {0};
    tw_status st = tw_atomic_write_text("/dev/full", "patch,score\nx,1\n", &err);
    CHECK(st != TW_OK, "writing /dev/full succeeded");
    CHECK(strstr(err.msg, "/dev/full") != NULL, "the message does not name the file: %s", err.msg);
    CHECK(stat("/dev/full", &sb) == 0 && S_ISCHR(sb.st_mode), "/dev/full is no longer a character device");
    printf("  ok   /dev/full: %s\n", err.msg);

    memset(&err, 0, sizeof err);
    CHECK(tw_atomic_write_text("/dev/null", "x\n", &err) == TW_OK, "/dev/null: %s", err.msg);
    CHECK(stat("/dev/null", &sb) == 0 && S_ISCHR(sb.st_mode), "/dev/null is no longer a character device");
    CHECK(tw_atomic_target_check("/dev/null", &err) != TW_OK, "a seekable writer accepted /dev/null");
    CHECK(strstr(err.msg, "/dev/null") != NULL, "the message does not name the file: %s", err.msg);

    char path[4096];
    snprintf(path, sizeof path, "%s/atomic.txt", argv[1]);
    unlink(path);
    CHECK(tw_atomic_target_check(path, &err) == TW_OK, "a new file refused: %s", err.msg);
    CHECK(tw_atomic_write_text(path, "one\n", &err) == TW_OK, "%s", err.msg);
    CHECK(tw_atomic_write_text(path, "two\n", &err) == TW_OK, "%s", err.msg);
    CHECK(tw_atomic_target_check(path, &err) == TW_OK, "a regular file refused: %s", err.msg);
    char buf[16] = {0};
    FILE *f = fopen(path, "r");
    CHECK(f && fread(buf, 1, sizeof buf - 1, f) == 4 && !strcmp(buf, "two\n"), "replaced file holds '%s'", buf);
    if (f) fclose(f);
    unlink(path);
    printf("%s\n", n_fail ? "FAIL" : "PASS");
    return n_fail ? 1 : 0;
}
