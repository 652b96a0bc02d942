/* Status names and the error-message helpers declared in status.h. */
#include "core/status.h"

#include <stdio.h>
#include <string.h>

const char *tw_status_str(tw_status s) {
    switch (s) {
#define TW_STATUS_CASE(name, msg) case name: return msg;
        TW_STATUS_LIST(TW_STATUS_CASE)
#undef TW_STATUS_CASE
    }
    return "unknown status";
}

tw_status tw_err_set(tw_err *err, tw_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

tw_status tw_err_prefix(tw_err *err, const char *fmt, ...) {
    if (!err) return TW_OK;
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n_head = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n_head < 0) n_head = 0;
    size_t used = (size_t)n_head < sizeof err->msg ? (size_t)n_head : sizeof err->msg - 1;
    size_t room = sizeof err->msg - 1 - used;
    size_t n_old = strnlen(old, sizeof old - 1);
    if (n_old > room) n_old = room;
    memcpy(err->msg + used, old, n_old);
    err->msg[used + n_old] = '\0';
    return err->code;
}
