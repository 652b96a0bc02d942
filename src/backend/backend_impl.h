/* The table each backend fills in; private to src/backend/. The public functions in backend.h
 * dispatch through it (backend.c), so the CPU and CUDA backends live side by side in one binary. */
#ifndef TW_BACKEND_IMPL_H
#define TW_BACKEND_IMPL_H

#include "backend/backend.h"

/* One field per op of ops.def, named as the op without its tw_ prefix; the optional ones may be
 * NULL. */
typedef struct tw_backend_ops {
#define TW_OP(ret, name, params, args) ret (*name) params;
#define TW_OP_OPTIONAL(ret, name, params, args) ret (*name) params;
#include "backend/ops.def"
} tw_backend_ops;

/* Every backend's plan structs (conv, bn, pool) start with this header, filled in by the plan's
 * make function, so that the shape queries in backend.h need no dispatch. */
typedef struct tw_plan_head {
    tw_tensor x;          /* input shape, dtype and layout (conv and pool plans; data NULL) */
    tw_tensor y;          /* output shape, dtype and layout (data NULL) */
    size_t ws_bytes;      /* caller-owned per-call state (see tw_bn_plan_ws_bytes) */
    char impl[TW_PLAN_IMPL_BYTES];   /* the kernels chosen, per pass ("" when not reported) */
    char choice[TW_PLAN_CHOICE_BYTES];   /* a stem's layout decision (tw_conv_plan_choice) */
} tw_plan_head;

/* Every backend's struct starts with this header; the rest is its own. */
struct tw_backend {
    const tw_backend_ops *ops;
    tw_device device;
    tw_dtype act_dtype;
};

tw_status tw_cpu_backend_create(tw_backend **out, tw_precision prec, tw_err *err);
#ifdef TW_HAVE_CUDA
tw_status tw_cuda_backend_create(tw_backend **out, tw_precision prec, int device_index, tw_err *err);
int tw_cuda_device_count(void);
#endif

#endif
