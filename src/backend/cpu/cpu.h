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

/* ---- the ops, one group per file ---------------------------------------------------------- */

/* mem.c */
void *tw_cpu_mem_alloc(tw_backend *be, size_t n_bytes);
void tw_cpu_mem_free(tw_backend *be, void *p);
void tw_cpu_mem_zero(tw_backend *be, void *p, size_t n_bytes);
void tw_cpu_mem_to_host(tw_backend *be, void *host, const void *src, size_t n_bytes);
void tw_cpu_mem_from_host(tw_backend *be, void *dst, const void *host, size_t n_bytes);
void tw_cpu_mem_copy(tw_backend *be, void *dst, const void *src, size_t n_bytes);
void tw_cpu_reorder(tw_backend *be, tw_tensor *dst, const tw_tensor *src);
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
/* Adds or replaces key's line, atomically (temporary file + rename); failures only warn. */
void tw_cpu_layout_cache_put(const char *key, tw_layout x, tw_layout y, const char *report);
int tw_cpu_layout_forced(tw_layout *out);

/* Every tw_layout is [n][cb][h w][blk] with channel cb blk + k: NCHW has blk 1, NHWC one block
 * of all c channels, nChw8c/16c blocks of 8/16 (the channels past c are padding). The plain
 * loops over activations (act.c, bn_sync.c) walk tensors through this. */
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

/* conv.c */
/* conv.c's plan for a fixed input layout; y_force >= 0 forces the output layout. */
tw_status tw_cpu_conv_plan_make_fixed(tw_backend *be, tw_conv_plan **out, const tw_conv_desc *d,
                                      int y_force, tw_err *err);
const tw_conv_desc *tw_cpu_conv_plan_desc(const tw_conv_plan *p);
tw_status tw_cpu_conv_plan_make(tw_backend *be, tw_conv_plan **out, const tw_conv_desc *d,
                                tw_err *err);
void tw_cpu_conv_plan_free(tw_backend *be, tw_conv_plan *p);
void tw_cpu_conv_forward(tw_backend *be, tw_conv_plan *p, tw_tensor *y, const tw_tensor *x,
                         const float *w);
void tw_cpu_conv_backward_data(tw_backend *be, tw_conv_plan *p, tw_tensor *dx,
                               const tw_tensor *dy, const float *w);
void tw_cpu_conv_backward_weights(tw_backend *be, tw_conv_plan *p, float *dw,
                                  const tw_tensor *dy, const tw_tensor *x);

/* bn.c */
tw_status tw_cpu_bn_plan_make(tw_backend *be, tw_bn_plan **out, const tw_bn_desc *d, tw_err *err);
void tw_cpu_bn_plan_free(tw_backend *be, tw_bn_plan *p);
void tw_cpu_bn_forward_train(tw_backend *be, tw_bn_plan *p, tw_tensor *y, float *save_mean,
                             float *save_var, void *ws, const tw_tensor *x, const float *gamma,
                             const float *beta, float *run_mean, float *run_var);
void tw_cpu_bn_forward_eval(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x,
                            const float *gamma, const float *beta, const float *run_mean,
                            const float *run_var);
void tw_cpu_bn_backward(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, float *dgamma,
                        float *dbeta, const tw_tensor *dy, const tw_tensor *x,
                        const float *save_mean, const float *save_var, const void *ws,
                        const float *gamma);

/* eltwise.c */
void tw_cpu_add_relu_forward(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b);
void tw_cpu_relu_backward(tw_backend *be, tw_tensor *dx, const tw_tensor *dy, const tw_tensor *y);
void tw_cpu_add(tw_backend *be, tw_tensor *y, const tw_tensor *a, const tw_tensor *b);

/* bn_sync.c: batch norm with statistics from outside (backend.h: tw_bn_sums ...). */
int tw_cpu_bn_plan_relu(const tw_bn_plan *p);
/* The plan's scratch for 4 x n_ch per-channel floats (n_ch: the padded channel count). */
float *tw_cpu_bn_plan_coefs(tw_bn_plan *p, int n_ch);
void tw_cpu_bn_sums(tw_backend *be, tw_bn_plan *p, double *sums, const tw_tensor *x, const float *shift);
void tw_cpu_bn_stats_finish(tw_backend *be, float *mean, float *inv_std, double *stats, int *bad,
                            const double *sums, const float *shift, int c, double n_global, float eps);
void tw_cpu_bn_forward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *y, const tw_tensor *x,
                             const float *mean, const float *inv_std, const float *gamma,
                             const float *beta);
void tw_cpu_bn_backward_sums(tw_backend *be, tw_bn_plan *p, double *sums, float *dgamma, float *dbeta,
                             int accumulate, const tw_tensor *dy, const tw_tensor *x,
                             const tw_tensor *y, const float *mean, const float *inv_std);
void tw_cpu_bn_backward_stats(tw_backend *be, tw_bn_plan *p, tw_tensor *dx, const tw_tensor *dy,
                              const tw_tensor *x, const tw_tensor *y, const float *mean,
                              const float *inv_std, const float *gamma, const double *global_sums,
                              double n_global);
void tw_cpu_bn_running_update(tw_backend *be, float *run_mean, float *run_var, const double *stats, int c,
                              float momentum, double unbias, const int *skip);

/* act.c */
void tw_cpu_bn_backward_eval(tw_backend *be, tw_tensor *dx, float *dgamma, float *dbeta,
                             const tw_tensor *dy, const tw_tensor *x, const tw_tensor *y,
                             const float *gamma, const float *run_mean, const float *run_var,
                             float eps, int relu);
void tw_cpu_relu_forward_f32(tw_backend *be, float *y, const float *x, size_t n_elems);
void tw_cpu_relu_backward_f32(tw_backend *be, float *dx, const float *dy, const float *y,
                              size_t n_elems);
void tw_cpu_sigmoid_forward(tw_backend *be, float *y, const float *x, size_t n_elems);
void tw_cpu_sigmoid_backward(tw_backend *be, float *dx, const float *dy, const float *y,
                             size_t n_elems);
void tw_cpu_blend_forward(tw_backend *be, float *y, const float *g, const float *a,
                          const float *b, size_t n_elems);
void tw_cpu_blend_backward(tw_backend *be, float *dg, float *da, float *db, const float *dy,
                           const float *g, const float *a, const float *b, size_t n_elems);

/* pool.c */
tw_status tw_cpu_maxpool_plan_make(tw_backend *be, tw_pool_plan **out, int n, int c, int h,
                                   int w, tw_layout layout, tw_err *err);
void tw_cpu_maxpool_plan_free(tw_backend *be, tw_pool_plan *p);
void tw_cpu_maxpool_forward(tw_backend *be, tw_pool_plan *p, tw_tensor *y, void *ws,
                            const tw_tensor *x);
void tw_cpu_maxpool_backward(tw_backend *be, tw_pool_plan *p, tw_tensor *dx,
                             const tw_tensor *dy, const void *ws);
void tw_cpu_avgpool_forward(tw_backend *be, float *y, const tw_tensor *x);
void tw_cpu_avgpool_backward(tw_backend *be, tw_tensor *dx, const float *dy);

/* dense.c */
void tw_cpu_gemm(tw_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void tw_cpu_bias_forward(tw_backend *be, float *y, const float *bias, int m, int n);
void tw_cpu_bias_backward(tw_backend *be, float *dbias, const float *dy, int m, int n);

/* loss.c */
double tw_cpu_bt_loss(tw_backend *be, float *dc, const float *c, int d, float lambda);
double tw_cpu_bce_logits(tw_backend *be, float *dlogits, const float *logits,
                         const float *targets, int n, int k);

/* optim.c */
void tw_cpu_adam_update(tw_backend *be, float *p, float *m, float *v, const float *g,
                        const tw_param_seg *segs, int n_segs, const tw_adam_hparams *h,
                        const tw_update_vals *vals, const int *skip);
void tw_cpu_lars_update(tw_backend *be, float *p, float *mu, const float *g,
                        const tw_param_seg *segs, int n_segs, const tw_lars_hparams *h,
                        const tw_update_vals *vals, const int *skip);
void tw_cpu_sgd_update(tw_backend *be, float *p, float *mu, const float *g,
                       const tw_param_seg *segs, int n_segs, const tw_sgd_hparams *h,
                       const tw_update_vals *vals, const int *skip);
void tw_cpu_scale_check(tw_backend *be, float *x, size_t n, float a, int *bad);
double tw_cpu_read_flag(tw_backend *be, const int *flag);

#endif
