/* Atomic file writes (atomic_file.h). */
#include "core/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

static tw_status write_all(int fd, const void *data, size_t n, const char *path, tw_err *err) {
    const char *p = data;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return tw_err_set(err, TW_E_IO, "%s: write failed: %s", path, k < 0 ? strerror(errno) : "no progress");
        p += k;
        n -= (size_t)k;
    }
    return TW_OK;
}

/* A device or FIFO: written where it is, since there is nothing to rename over. */
static tw_status write_in_place(const char *path, const void *const *data, const size_t *n_bytes, int n,
                                tw_err *err) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return tw_err_set(err, TW_E_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    tw_status st = TW_OK;
    for (int i = 0; i < n && st == TW_OK; i++) st = write_all(fd, data[i], n_bytes[i], path, err);
    if (close(fd) != 0 && st == TW_OK) st = tw_err_set(err, TW_E_IO, "%s: close: %s", path, strerror(errno));
    return st;
}

tw_status tw_atomic_target_check(const char *path, tw_err *err) {
    struct stat sb;
    if (stat(path, &sb) != 0 || S_ISREG(sb.st_mode)) return TW_OK;
    return tw_err_set(err, TW_E_IO, "%s: exists and is not a regular file (%s); this output is written to a "
                      "temporary file and renamed into place", path, S_ISDIR(sb.st_mode) ? "a directory" : "a device or FIFO");
}

tw_status tw_atomic_write(const char *path, const void *const *data, const size_t *n_bytes, int n,
                          tw_err *err) {
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode))
        return write_in_place(path, data, n_bytes, n, err);
    tw_status st = TW_OK;
    size_t n_path = strlen(path);
    char *tmp = malloc(n_path + 16), *dir_copy = NULL;
    TW_ASSERT(tmp);
    snprintf(tmp, n_path + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot create a temporary file next to it: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    for (int i = 0; i < n && st == TW_OK; i++) st = write_all(fd, data[i], n_bytes[i], tmp, err);
    if (st != TW_OK) goto done;
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        st = tw_err_set(err, TW_E_IO, "%s: fsync: %s", tmp, strerror(errno));
        goto done;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0 || rename(tmp, path) != 0) {
        st = tw_err_set(err, TW_E_IO, "%s: cannot move %s into place: %s", path, tmp, strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL;
    /* The rename is durable only once the directory entry is on disk. */
    dir_copy = strdup(path);
    TW_ASSERT(dir_copy);
    int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || fsync(dfd) != 0) st = tw_err_set(err, TW_E_IO, "%s: fsync of its directory: %s", path, strerror(errno));
    if (dfd >= 0) close(dfd);
done:
    if (fd >= 0) close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(dir_copy);
    return st;
}

tw_status tw_atomic_write_text(const char *path, const char *text, tw_err *err) {
    const void *data[1] = {text};
    size_t n[1] = {strlen(text)};
    return tw_atomic_write(path, data, n, 1, err);
}
