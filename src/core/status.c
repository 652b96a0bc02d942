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
    char head[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", head, old);
    return err->code;
}
