/* Sizes and names of tw_dtype. */
#include "core/dtype.h"

size_t tw_dtype_size(tw_dtype t) {
    switch (t) {
    case TW_F32: case TW_I32: return 4;
    case TW_BF16: case TW_F16: case TW_U16: return 2;
    case TW_I64: case TW_F64: return 8;
    case TW_U8: return 1;
    }
    return 0;
}

const char *tw_dtype_name(tw_dtype t) {
    switch (t) {
    case TW_F32: return "F32";
    case TW_BF16: return "BF16";
    case TW_F16: return "F16";
    case TW_I64: return "I64";
    case TW_I32: return "I32";
    case TW_U16: return "U16";
    case TW_U8: return "U8";
    case TW_F64: return "F64";
    }
    return "?";
}
