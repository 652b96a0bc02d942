/* The CPU backend's choice of the network's activation layout, made once per stem shape at plan
 * time: oneDNN's implementation names ranked by the ISA they run on, a representative layer scored
 * in each candidate layout (cached per shape), and the pick. conv.c makes the candidate plans. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* What an implementation name says about its speed: "ref:any" and "ref_..." 0, GEMM-based 1,
 * then the ISA after the colon ("jit:avx2" 3 ... "brgconv:avx512_core_amx" 6). */
int tw_cpu_impl_rank(const char *impl) {
    if (!impl || strncmp(impl, "ref", 3) == 0) return 0;
    if (strstr(impl, "gemm")) return 1;
    const char *isa = strchr(impl, ':');
    isa = isa ? isa + 1 : impl;
    if (strstr(isa, "amx")) return 6;
    if (strstr(isa, "avx512_core_bf16") || strstr(isa, "avx512_core_fp16")) return 5;
    if (strstr(isa, "avx512")) return 4;
    if (strstr(isa, "avx2") || strstr(isa, "avx")) return 3;
    if (strstr(isa, "sse41")) return 2;
    return 2;   /* "uni" and other ISA-agnostic JIT kernels */
}

int tw_cpu_layout_choose(const tw_cpu_layout_cand *c, int n_cands) {
    int best = -1;
    for (int i = 0; i < n_cands; i++) {
        if (!c[i].ok) continue;
        if (best < 0) {
            best = i;
            continue;
        }
        const tw_cpu_layout_cand *b = &c[best];
        /* The network's layers first (they are ~95% of the work), then a stem with no reference
         * or GEMM kernel, then the stem's ISA; a tie keeps the earlier (measured) candidate. */
        int better = c[i].net_rank != b->net_rank ? c[i].net_rank > b->net_rank
                     : c[i].slow != b->slow       ? !c[i].slow
                                                  : c[i].stem_rank > b->stem_rank;
        if (better) best = i;
    }
    return best;
}

static int pd_rank(dnnl_status_t s, dnnl_primitive_desc_t pd) {
    int r = s == dnnl_success ? tw_cpu_impl_rank(tw_cpu_pd_impl(pd)) : 0;
    if (pd) TW_CHECK_DNNL(dnnl_primitive_desc_destroy(pd));
    return r;
}

/* A 3x3 convolution c -> c (the first residual block's), its BN with ReLU and a max pool over it,
 * all in layout l: the sum of the passes' ranks, 0 when any of them has only reference code. */
static int net_rank_compute(tw_cpu_backend *be, int n, int c, int h, int w, tw_layout l) {
    tw_dtype act = be->base.act_dtype;
    dnnl_data_type_t dt = tw_cpu_dnnl_dtype(act);
    dnnl_memory_desc_t x = tw_cpu_md_make(n, c, h, w, act, l), wa = NULL, dwa = NULL;
    dnnl_dims_t wdims = {c, c, 3, 3}, one = {1, 1}, dil = {0, 0}, two = {2, 2}, k3 = {3, 3};
    TW_CHECK_DNNL(dnnl_memory_desc_create_with_tag(&wa, 4, wdims, dt, dnnl_format_tag_any));
    TW_CHECK_DNNL(dnnl_memory_desc_create_with_tag(&dwa, 4, wdims, dnnl_f32, dnnl_format_tag_any));
    dnnl_primitive_attr_t attr = tw_cpu_attr_make();
    dnnl_primitive_desc_t f = NULL, pd = NULL;
    int r[7] = {0}, total = 0;
    dnnl_status_t s = dnnl_convolution_forward_primitive_desc_create(
        &f, be->engine, dnnl_forward_training, dnnl_convolution_direct, x, wa, NULL, x, one, dil,
        one, one, attr);
    if (s == dnnl_success) {
        r[0] = tw_cpu_impl_rank(tw_cpu_pd_impl(f));
        s = dnnl_convolution_backward_data_primitive_desc_create(
            &pd, be->engine, dnnl_convolution_direct, x, wa, x, one, dil, one, one, f, attr);
        r[1] = pd_rank(s, pd);
        pd = NULL;
        s = dnnl_convolution_backward_weights_primitive_desc_create(
            &pd, be->engine, dnnl_convolution_direct, x, dwa, NULL, x, one, dil, one, one, f, attr);
        r[2] = pd_rank(s, pd);
        pd = NULL;
        TW_CHECK_DNNL(dnnl_primitive_desc_destroy(f));
        f = NULL;
    }
    unsigned flags = dnnl_use_scale | dnnl_use_shift | dnnl_fuse_norm_relu;
    s = dnnl_batch_normalization_forward_primitive_desc_create(&f, be->engine,
                                                               dnnl_forward_training, x, x, 1e-5f,
                                                               flags, attr);
    if (s == dnnl_success) {
        r[3] = tw_cpu_impl_rank(tw_cpu_pd_impl(f));
        s = dnnl_batch_normalization_backward_primitive_desc_create(
            &pd, be->engine, dnnl_backward, x, x, x, 1e-5f, flags, f, attr);
        r[4] = pd_rank(s, pd);
        pd = NULL;
        TW_CHECK_DNNL(dnnl_primitive_desc_destroy(f));
        f = NULL;
    }
    dnnl_memory_desc_t y = tw_cpu_md_make(n, c, (h - 1) / 2 + 1, (w - 1) / 2 + 1, act, l);
    s = dnnl_pooling_forward_primitive_desc_create(&f, be->engine, dnnl_forward_training,
                                                   dnnl_pooling_max, x, y, two, k3, dil, one, one,
                                                   attr);
    if (s == dnnl_success) {
        r[5] = tw_cpu_impl_rank(tw_cpu_pd_impl(f));
        s = dnnl_pooling_backward_primitive_desc_create(&pd, be->engine, dnnl_pooling_max, x, y,
                                                        two, k3, dil, one, one, f, attr);
        r[6] = pd_rank(s, pd);
        TW_CHECK_DNNL(dnnl_primitive_desc_destroy(f));
    }
    for (int i = 0; i < 7; i++) {
        if (r[i] == 0) {
            total = 0;
            break;
        }
        total += r[i];
    }
    TW_CHECK_DNNL(dnnl_primitive_attr_destroy(attr));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(x));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(y));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(wa));
    TW_CHECK_DNNL(dnnl_memory_desc_destroy(dwa));
    return total;
}

int tw_cpu_layout_net_rank(tw_cpu_backend *be, int n, int c, int h, int w, tw_layout l) {
    tw_tensor key = {NULL, n, c, h, w, be->base.act_dtype, l};
    for (int i = 0; i < be->n_net_ranks; i++) {
        const tw_tensor *k = &be->net_ranks[i].key;
        if (k->n == n && k->c == c && k->h == h && k->w == w && k->dtype == key.dtype &&
            k->layout == l)
            return be->net_ranks[i].rank;
    }
    int r = net_rank_compute(be, n, c, h, w, l);
    if (be->n_net_ranks < TW_CPU_NET_RANK_CACHE) {
        be->net_ranks[be->n_net_ranks].key = key;
        be->net_ranks[be->n_net_ranks++].rank = r;
    }
    return r;
}

int tw_cpu_layout_forced(tw_layout *out) {
    const char *env = getenv("TW_CPU_LAYOUT");
    if (!env || !*env) return 0;
    static const tw_layout all[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C,
                                    TW_LAYOUT_NCHW16C};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(env, tw_layout_name(all[i])) == 0) {
            *out = all[i];
            return 1;
        }
    }
    return -1;
}
