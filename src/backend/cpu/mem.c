/* CPU memory: 64-byte aligned host allocations, copies, and tw_reorder (layout and dtype
 * conversion through a oneDNN reorder). tw_reorder has no plan, so the backend keeps a small
 * cache of reorder primitives keyed by shape, dtype and layout: only a first call allocates. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

void *tw_cpu_mem_alloc(tw_backend *be, size_t n_bytes) {
    (void)be;
    void *p = NULL;
    size_t rounded = (n_bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    if (posix_memalign(&p, 64, rounded) != 0 || !p)
        tw_fatal("tw_mem_alloc", "out of host memory", __FILE__, __LINE__);
    return p;
}

void tw_cpu_mem_free(tw_backend *be, void *p) {
    (void)be;
    free(p);
}

void tw_cpu_mem_zero(tw_backend *be, void *p, size_t n_bytes) {
    (void)be;
    memset(p, 0, n_bytes);
}

void tw_cpu_mem_to_host(tw_backend *be, void *host, const void *src, size_t n_bytes) {
    (void)be;
    memcpy(host, src, n_bytes);
}

void tw_cpu_mem_from_host(tw_backend *be, void *dst, const void *host, size_t n_bytes) {
    (void)be;
    memcpy(dst, host, n_bytes);
}

void tw_cpu_mem_copy(tw_backend *be, void *dst, const void *src, size_t n_bytes) {
    (void)be;
    memmove(dst, src, n_bytes);
}

static int same_key(const tw_tensor *a, const tw_tensor *b) {
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w && a->dtype == b->dtype &&
           a->layout == b->layout;
}

static void entry_free(tw_cpu_reorder_entry *e) {
    tw_cpu_prim_destroy(&e->prim);
    tw_cpu_mem_destroy(e->m_src);
    tw_cpu_mem_destroy(e->m_dst);
    memset(e, 0, sizeof *e);
}

static tw_cpu_reorder_entry *entry_get(tw_cpu_backend *be, const tw_tensor *dst,
                                       const tw_tensor *src) {
    for (int i = 0; i < be->n_reorders; i++) {
        tw_cpu_reorder_entry *e = &be->reorders[i];
        if (same_key(&e->src_key, src) && same_key(&e->dst_key, dst)) return e;
    }
    tw_cpu_reorder_entry *e;
    if (be->n_reorders < TW_CPU_REORDER_CACHE) {
        e = &be->reorders[be->n_reorders++];
    } else {
        e = &be->reorders[be->next_evict];
        be->next_evict = (be->next_evict + 1) % TW_CPU_REORDER_CACHE;
        entry_free(e);
    }
    e->src_key = *src;
    e->src_key.data = NULL;
    e->dst_key = *dst;
    e->dst_key.data = NULL;
    dnnl_memory_desc_t smd = tw_cpu_md_make(src->n, src->c, src->h, src->w, src->dtype, src->layout);
    dnnl_memory_desc_t dmd = tw_cpu_md_make(dst->n, dst->c, dst->h, dst->w, dst->dtype, dst->layout);
    dnnl_primitive_attr_t attr = tw_cpu_attr_make();
    dnnl_primitive_desc_t pd;
    TW_CHECK_DNNL(dnnl_reorder_primitive_desc_create(&pd, smd, be->engine, dmd, be->engine, attr));
    tw_cpu_prim_init(be, &e->prim, pd);
    TW_CHECK_DNNL(dnnl_primitive_desc_destroy(pd));
    TW_CHECK_DNNL(dnnl_primitive_attr_destroy(attr));
    e->m_src = tw_cpu_mem_make(be, smd);
    e->m_dst = tw_cpu_mem_make(be, dmd);
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(smd));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(dmd));
    return e;
}

void tw_cpu_reorder(tw_backend *base, tw_tensor *dst, const tw_tensor *src) {
    tw_cpu_backend *be = tw_cpu_be(base);
    TW_ASSERT(dst->n == src->n && dst->c == src->c && dst->h == src->h && dst->w == src->w);
    if (same_key(dst, src)) {
        if (dst->data != src->data) memmove(dst->data, src->data, tw_tensor_bytes(src));
        return;
    }
    tw_cpu_reorder_entry *e = entry_get(be, dst, src);
    tw_cpu_mem_bind(e->m_src, src->data);
    tw_cpu_mem_bind(e->m_dst, dst->data);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, e->m_src}, {DNNL_ARG_TO, e->m_dst}};
    tw_cpu_prim_exec(be, &e->prim, 2, args);
}

void tw_cpu_reorder_cache_free(tw_cpu_backend *be) {
    for (int i = 0; i < be->n_reorders; i++) entry_free(&be->reorders[i]);
    be->n_reorders = 0;
    be->next_evict = 0;
}
