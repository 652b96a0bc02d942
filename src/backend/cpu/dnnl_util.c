/* oneDNN helpers shared by the CPU op files: dtype and layout mapping, memory descriptors and
 * objects bound at run time, and primitives that run on the backend's shared scratchpad. */
#include <stdlib.h>

#include "backend/cpu/cpu.h"

const char *tw_cpu_dnnl_status_str(dnnl_status_t s) {
    switch (s) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "oneDNN: out of memory";
    case dnnl_invalid_arguments: return "oneDNN: invalid arguments";
    case dnnl_unimplemented: return "oneDNN: unimplemented";
    case dnnl_last_impl_reached: return "oneDNN: last implementation reached";
    case dnnl_runtime_error: return "oneDNN: runtime error";
    case dnnl_not_required: return "oneDNN: not required";
    default: return "oneDNN: unknown status";
    }
}

dnnl_data_type_t tw_cpu_dnnl_dtype(tw_dtype t) {
    TW_ASSERT(t == TW_F32 || t == TW_BF16);
    return t == TW_F32 ? dnnl_f32 : dnnl_bf16;
}

dnnl_format_tag_t tw_cpu_dnnl_tag(tw_layout l) {
    switch (l) {
    case TW_LAYOUT_NCHW: return dnnl_nchw;
    case TW_LAYOUT_NHWC: return dnnl_nhwc;
    case TW_LAYOUT_NCHW8C: return dnnl_nChw8c;
    case TW_LAYOUT_NCHW16C: return dnnl_nChw16c;
    }
    TW_ASSERT(!"unknown tw_layout");
    return dnnl_nchw;
}

dnnl_primitive_attr_t tw_cpu_attr_make(void) {
    dnnl_primitive_attr_t attr;
    TW_CHECK_DNNL(dnnl_primitive_attr_create(&attr));
    TW_CHECK_DNNL(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    return attr;
}

dnnl_memory_desc_t tw_cpu_md_make(int n, int c, int h, int w, tw_dtype dt, tw_layout l) {
    dnnl_dims_t dims = {n, c, h, w};
    dnnl_memory_desc_t md;
    TW_CHECK_DNNL(dnnl_memory_desc_create_with_tag(&md, 4, dims, tw_cpu_dnnl_dtype(dt),
                                                   tw_cpu_dnnl_tag(l)));
    return md;
}

dnnl_memory_desc_t tw_cpu_md_vec(int n) {
    dnnl_dims_t dims = {n};
    dnnl_memory_desc_t md;
    TW_CHECK_DNNL(dnnl_memory_desc_create_with_tag(&md, 1, dims, dnnl_f32, dnnl_a));
    return md;
}

int tw_cpu_layout_of(const_dnnl_memory_desc_t md, int n, int c, int h, int w, tw_dtype dt,
                     tw_layout *out) {
    static const tw_layout all[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C,
                                    TW_LAYOUT_NCHW16C};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        dnnl_memory_desc_t ref = tw_cpu_md_make(n, c, h, w, dt, all[i]);
        int eq = dnnl_memory_desc_equal(md, ref);
        TW_CHECK_DNNL(dnnl_memory_desc_destroy(ref));
        if (eq) {
            *out = all[i];
            return 1;
        }
    }
    return 0;
}

dnnl_memory_t tw_cpu_mem_make(tw_cpu_backend *be, const_dnnl_memory_desc_t md) {
    dnnl_memory_t m;
    TW_CHECK_DNNL(dnnl_memory_create(&m, md, be->engine, DNNL_MEMORY_NONE));
    return m;
}

void tw_cpu_mem_bind(dnnl_memory_t m, const void *data) {
    /* oneDNN takes a non-const handle for every argument; inputs are only read. */
    TW_CHECK_DNNL(dnnl_memory_set_data_handle(m, (void *)data));
}

void tw_cpu_mem_destroy(dnnl_memory_t m) {
    if (m) TW_CHECK_DNNL(dnnl_memory_destroy(m));
}

void tw_cpu_prim_init(tw_cpu_backend *be, tw_cpu_prim *p, const_dnnl_primitive_desc_t pd) {
    TW_CHECK_DNNL(dnnl_primitive_create(&p->prim, pd));
    p->scratch_mem = NULL;
    const_dnnl_memory_desc_t smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t n_bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (n_bytes == 0) return;
    if (n_bytes > be->scratch_bytes) {
        tw_cpu_mem_free(&be->base, be->scratch);
        be->scratch = tw_cpu_mem_alloc(&be->base, n_bytes);
        be->scratch_bytes = n_bytes;
    }
    p->scratch_mem = tw_cpu_mem_make(be, smd);
}

void tw_cpu_prim_exec(tw_cpu_backend *be, tw_cpu_prim *p, int n_args, dnnl_exec_arg_t *args) {
    if (p->scratch_mem) {
        tw_cpu_mem_bind(p->scratch_mem, be->scratch);
        args[n_args].arg = DNNL_ARG_SCRATCHPAD;
        args[n_args].memory = p->scratch_mem;
        n_args++;
    }
    TW_CHECK_DNNL(dnnl_primitive_execute(p->prim, be->stream, n_args, args));
}

void tw_cpu_prim_destroy(tw_cpu_prim *p) {
    if (p->prim) TW_CHECK_DNNL(dnnl_primitive_destroy(p->prim));
    tw_cpu_mem_destroy(p->scratch_mem);
    p->prim = NULL;
    p->scratch_mem = NULL;
}

const char *tw_cpu_pd_impl(const_dnnl_primitive_desc_t pd) {
    const char *s = NULL;
    TW_CHECK_DNNL(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, (void *)&s));
    return s ? s : "?";
}
