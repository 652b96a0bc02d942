/* Status codes and error reports for bad input (YAML, shards, safetensors, the CLI).
 * Bugs use TW_ASSERT and library failures use the TW_CHECK_* macros (log.h); this file only
 * carries the recoverable kind: a code plus a message naming the file, key or line. */
#ifndef TW_STATUS_H
#define TW_STATUS_H

#include <stdarg.h>

/* One list of names and messages; the enum and tw_status_str are generated from it. */
#define TW_STATUS_LIST(X)                                  \
    X(TW_OK, "ok")                                         \
    X(TW_E_IO, "input/output error")                       \
    X(TW_E_FORMAT, "malformed input")                      \
    X(TW_E_SHAPE, "wrong shape")                           \
    X(TW_E_DTYPE, "wrong dtype")                           \
    X(TW_E_MISSING, "missing item")                        \
    X(TW_E_UNKNOWN, "unknown item")                        \
    X(TW_E_RANGE, "value out of range")                    \
    X(TW_E_NONFINITE, "non-finite value")                  \
    X(TW_E_NOMEM, "out of memory")                         \
    X(TW_E_UNSUPPORTED, "unsupported on this machine")     \
    X(TW_E_BACKEND, "backend failure")                     \
    X(TW_E_COMM, "communication failure")                  \
    X(TW_E_USAGE, "bad command line")                      \
    X(TW_E_INTERNAL, "internal error")

typedef enum {
#define TW_STATUS_ENUM(name, msg) name,
    TW_STATUS_LIST(TW_STATUS_ENUM)
#undef TW_STATUS_ENUM
} tw_status;

/* A status with its human message. Functions that can fail on bad input take a `tw_err *`
 * (which may be NULL when the caller does not want the text) and return the status. */
typedef struct tw_err {
    tw_status code;
    char msg[1024];
} tw_err;

const char *tw_status_str(tw_status s);

/* Fills err (if non-NULL) with code and a printf-style message; returns code so that callers
 * can write `return tw_err_set(err, TW_E_IO, "%s: %s", path, strerror(errno));`. */
tw_status tw_err_set(tw_err *err, tw_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends context ("while loading X: ") to an existing message. */
tw_status tw_err_prefix(tw_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
