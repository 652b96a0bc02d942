/* Private to the CPU backend (src/backend/cpu/): the backend struct behind `tw_backend`, the
 * oneDNN error check, and the small helpers every op file shares (memory descriptors for
 * tw_tensor layouts, primitives that run on the backend's shared user-mode scratchpad). */
#ifndef TW_CPU_H
#define TW_CPU_H

#include <oneapi/dnnl/dnnl.h>

#include "backend/backend_impl.h"
#include "core/log.h"

#define TW_CHECK_DNNL(call)                                               \
    do {                                                                  \
        dnnl_status_t s_ = (call);                                        \
        if (s_ != dnnl_success)                                           \
            tw_fatal(#call, tw_cpu_dnnl_status_str(s_), __FILE__, __LINE__); \
    } while (0)

/* A primitive plus the memory object through which it reads the shared scratchpad. */
typedef struct tw_cpu_prim {
    dnnl_primitive_t prim;
    dnnl_memory_t scratch_mem;        /* NULL when the primitive needs no scratchpad */
} tw_cpu_prim;

/* A cached reorder between two tensor descriptions (tw_reorder has no plan). */
typedef struct tw_cpu_reorder_entry {
    tw_tensor src_key, dst_key;       /* data NULL: shape, dtype and layout only */
    tw_cpu_prim prim;
    dnnl_memory_t m_src, m_dst;
} tw_cpu_reorder_entry;

#define TW_CPU_REORDER_CACHE 32
/* One candidate activation layout for the network (layout.c): the stem's input layout and the
 * network's (the stem's output), timed over the whole network. */
typedef struct tw_cpu_layout_cand {
    int ok;                           /* every plan of the network could be made */
    int has_ref;                      /* some pass runs oneDNN's reference kernel (not timed) */
    double ms;                        /* one training pass over the network, timed */
    tw_layout x, y;                   /* the stem's input layout, the network's */
    char ref_what[96];                /* the first layer with a reference kernel */
} tw_cpu_layout_cand;

typedef struct tw_cpu_backend {
    struct tw_backend base;           /* must stay first: tw_backend * points here */
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_cpu_isa_t isa;
    int native_bf16;                  /* AVX512_BF16 or AMX-BF16, and oneDNN dispatches to it */
    int n_threads;
    /* One scratchpad shared by every primitive of every plan: ops run one at a time on one
     * stream, so the largest need is enough. Grown at plan time, never during a step. */
    void *scratch;
    size_t scratch_bytes;
    tw_cpu_reorder_entry reorders[TW_CPU_REORDER_CACHE];
    int n_reorders, next_evict;
    int quiet;                        /* 1 while candidate plans are made: no warnings */
} tw_cpu_backend;

static inline tw_cpu_backend *tw_cpu_be(tw_backend *be) { return (tw_cpu_backend *)be; }

const char *tw_cpu_dnnl_status_str(dnnl_status_t s);
dnnl_data_type_t tw_cpu_dnnl_dtype(tw_dtype t);
dnnl_format_tag_t tw_cpu_dnnl_tag(tw_layout l);

/* Attributes every primitive gets: user-mode scratchpad. Caller destroys. */
dnnl_primitive_attr_t tw_cpu_attr_make(void);
/* md for an [n, c, h, w] tensor of dtype in layout (caller destroys). */
dnnl_memory_desc_t tw_cpu_md_make(int n, int c, int h, int w, tw_dtype dt, tw_layout l);
/* md for a 1-D f32 vector of n elements. */
dnnl_memory_desc_t tw_cpu_md_vec(int n);
/* Which tw_layout md is (dims [n, c, h, w], dtype dt); returns 0 when it is none of them. */
int tw_cpu_layout_of(const_dnnl_memory_desc_t md, int n, int c, int h, int w, tw_dtype dt,
                     tw_layout *out);
/* A memory object on md with no data yet; bind a pointer with tw_cpu_mem_bind at run time. */
dnnl_memory_t tw_cpu_mem_make(tw_cpu_backend *be, const_dnnl_memory_desc_t md);
void tw_cpu_mem_bind(dnnl_memory_t m, const void *data);
void tw_cpu_mem_destroy(dnnl_memory_t m);

/* Creates the primitive of pd and its scratchpad binding, growing the backend's scratchpad. */
void tw_cpu_prim_init(tw_cpu_backend *be, tw_cpu_prim *p, const_dnnl_primitive_desc_t pd);
/* Runs it with args plus the scratchpad (args must have room for one more entry). */
void tw_cpu_prim_exec(tw_cpu_backend *be, tw_cpu_prim *p, int n_args, dnnl_exec_arg_t *args);
void tw_cpu_prim_destroy(tw_cpu_prim *p);
/* The oneDNN implementation name ("brg:avx512_core", "ref:any", ...). */
const char *tw_cpu_pd_impl(const_dnnl_primitive_desc_t pd);

/* ---- helpers shared by the op files ----------------------------------------------------------- */

/* mem.c */
void tw_cpu_reorder_cache_free(tw_cpu_backend *be);

/* layout.c. A speed rank from an implementation name, for logs: 0 reference, 1 GEMM-based, 2
 * and up by ISA (6: AMX). */
int tw_cpu_impl_rank(const char *impl);
/* 1 when a plan's "pass=name ..." string names a reference kernel. */
int tw_cpu_impl_has_ref(const char *impls);
/* The index of the candidate to take (-1 when none is ok): without a reference kernel if any is,
 * then the fastest; ties keep the earlier one. Pure: the selection test feeds it fakes. */
int tw_cpu_layout_choose(const tw_cpu_layout_cand *c, int n_cands);
/* Fills c for the stem plan's layouts: ok, has_ref (and what), and the time of one training pass
 * of the stem and of net's layers in the stem's output layout (at a batch of at most 16). */
void tw_cpu_layout_time(tw_cpu_backend *be, tw_conv_plan *stem, const tw_net_shape *net,
                        tw_cpu_layout_cand *c);
/* tw_warn once per process and message, on rank 0. */
void tw_cpu_warn_once(const char *msg);
/* layout_cache.c: decisions on disk, one line per key, under $TW_CACHE_DIR, else
 * $XDG_CACHE_HOME/twinfuse, else ~/.cache/twinfuse. The key names the CPU model, oneDNN's ISA and
 * version, the dtype, the thread count and every shape. */
void tw_cpu_layout_key(tw_cpu_backend *be, const tw_conv_desc *stem, const tw_net_shape *net,
                       char *key, size_t n_bytes);
/* 1 and *x, *y, the stored report when key is in the cache; 0 when absent (a corrupt file is
 * ignored with one warning). */
int tw_cpu_layout_cache_get(const char *key, tw_layout *x, tw_layout *y, char *report,
                            size_t n_report);
/* Stores *x, *y and report for key (under a lock; temporary file + rename; failures only warn),
 * unless the file holds a decision for key already: then that one wins, is copied into *x, *y and
 * report, and 1 is returned (another process of the job timed the same shape first). */
int tw_cpu_layout_cache_put(const char *key, tw_layout *x, tw_layout *y, char *report,
                            size_t n_report);
int tw_cpu_layout_forced(tw_layout *out);

/* Every tw_layout is [n][cb][h w][blk] with channel cb blk + k: NCHW has blk 1, NHWC one block
 * of all c channels, nChw8c/16c blocks of 8/16 (the channels past c are padding). The plain
 * loops over activations (bn_eval.c, bn_sync.c) walk tensors through this. */
typedef struct tw_cpu_geom {
    int n, c, blk, n_blk;
    size_t hw;
} tw_cpu_geom;

static inline tw_cpu_geom tw_cpu_geom_of(const tw_tensor *t) {
    tw_cpu_geom g = {t->n, t->c, 1, t->c, (size_t)t->h * t->w};
    if (t->layout == TW_LAYOUT_NHWC) {
        g.blk = t->c;
        g.n_blk = 1;
    } else if (t->layout != TW_LAYOUT_NCHW) {
        g.blk = (int)tw_layout_block(t->layout);
        g.n_blk = (t->c + g.blk - 1) / g.blk;
    }
    return g;
}

/* conv.c's plan for a fixed input layout; y_force >= 0 forces the output layout. */
tw_status tw_cpu_conv_plan_make_fixed(tw_backend *be, tw_conv_plan **out, const tw_conv_desc *d,
                                      int y_force, tw_err *err);
const tw_conv_desc *tw_cpu_conv_plan_desc(const tw_conv_plan *p);

/* bn.c, for bn_sync.c's loops: a BN plan's fused ReLU and its scratch. */
int tw_cpu_bn_plan_relu(const tw_bn_plan *p);
/* The plan's scratch for 4 x n_ch per-channel floats (n_ch: the padded channel count). */
float *tw_cpu_bn_plan_coefs(tw_bn_plan *p, int n_ch);

/* ---- the ops (backend/ops.def), one group per file: mem.c, conv.c, bn.c, bn_sync.c,
 * bn_eval.c, eltwise.c, pool.c, dense.c, dense_act.c, loss.c, optim.c; cpu_backend.c has the
 * lifetime ones ------------------------------------------------------------------------------ */

#define TW_OP(ret, name, params, args) ret tw_cpu_##name params;
#include "backend/ops.def"

#endif
