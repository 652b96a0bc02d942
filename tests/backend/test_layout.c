/* The CPU backend's activation-layout choice (cpu/layout.c, layout_cache.c): the pick over fake
 * candidates and timings, the on-disk cache (read back, invalidated by every part of its key,
 * corrupt files ignored), and on this machine the timed choice and the forced one.
 * usage: test_layout WORK_DIR (the cache lives there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

static int fails = 0;

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
            fails++;                                                        \
        }                                                                   \
    } while (0)

static void test_rank(void) {
    CHECK(tw_cpu_impl_rank("ref:any") == 0);
    CHECK(tw_cpu_impl_rank("ref_fused:any") == 0);
    CHECK(tw_cpu_impl_rank("gemm:jit") == 1);
    CHECK(tw_cpu_impl_rank("jit:uni") == 2);
    CHECK(tw_cpu_impl_rank("jit:avx2") == 3);
    CHECK(tw_cpu_impl_rank("brgconv:avx512_core") == 4);
    CHECK(tw_cpu_impl_rank("jit:avx512_core") == 4);
    CHECK(tw_cpu_impl_rank("jit_bf16:avx512_core_bf16") == 5);
    CHECK(tw_cpu_impl_rank("bnorm_jit:avx512_core_bf16") == 5);
    CHECK(tw_cpu_impl_rank("brgconv:avx512_core_amx") == 6);
    CHECK(tw_cpu_impl_rank("brg_fwd:avx512_core_amx+brgconv:avx512_core_amx") == 6);
}

static void test_choose(void) {
    /* Fakes: {ok, has_ref, ms, x, y, what}. The fastest wins. */
    tw_cpu_layout_cand fast[3] = {{1, 0, 30.0, TW_LAYOUT_NCHW, TW_LAYOUT_NCHW8C, ""},
                                  {1, 0, 20.0, TW_LAYOUT_NHWC, TW_LAYOUT_NHWC, ""},
                                  {1, 0, 25.0, TW_LAYOUT_NCHW8C, TW_LAYOUT_NCHW8C, ""}};
    CHECK(tw_cpu_layout_choose(fast, 3) == 1);
    /* A candidate with a reference pass is never chosen while another has none, however fast
     * its timed part looked; a tie keeps the earlier; failed plans never count. */
    tw_cpu_layout_cand ref[3] = {{1, 1, 1.0, TW_LAYOUT_NCHW, TW_LAYOUT_NCHW8C, "conv"},
                                 {1, 0, 9.0, TW_LAYOUT_NHWC, TW_LAYOUT_NHWC, ""},
                                 {0, 0, 0.5, TW_LAYOUT_NCHW16C, TW_LAYOUT_NCHW16C, ""}};
    CHECK(tw_cpu_layout_choose(ref, 3) == 1);
    ref[2].ok = 1;
    ref[2].ms = 9.0;
    CHECK(tw_cpu_layout_choose(ref, 3) == 1);
    ref[1].has_ref = 1;
    ref[2].has_ref = 1;
    CHECK(tw_cpu_layout_choose(ref, 3) == 0);   /* all have one: the fastest */
    tw_cpu_layout_cand none[2] = {{0, 0, 1.0, TW_LAYOUT_NCHW, TW_LAYOUT_NCHW, ""},
                                  {0, 0, 1.0, TW_LAYOUT_NHWC, TW_LAYOUT_NHWC, ""}};
    CHECK(tw_cpu_layout_choose(none, 2) == -1);
    CHECK(tw_cpu_impl_has_ref("fwd=jit:avx2 bwd_d=ref:any bwd_w=jit:avx2"));
    CHECK(tw_cpu_impl_has_ref("ref:any"));
    CHECK(!tw_cpu_impl_has_ref("fwd=brgconv:avx512_core bwd_w=gemm:jit"));
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* The on-disk cache: read back, a key per machine fact and shape, corrupt files never trusted. */
static void test_cache(const char *dir) {
    setenv("TW_CACHE_DIR", dir, 1);
    char path[1024];
    snprintf(path, sizeof path, "%s/layouts.tsv", dir);
    remove(path);
    tw_backend *base = NULL;
    tw_err err = {0};
    TW_ASSERT(tw_backend_create(&base, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) == TW_OK);
    tw_cpu_backend *be = tw_cpu_be(base);
    tw_conv_desc stem = {4, 3, 32, 32, 64, 7, 2, 3, 0, TW_LAYOUT_NCHW, 1, NULL};
    tw_net_shape net = {1, 1, {{4, 64, 8, 8, 64, 3, 1, 1, 1, TW_LAYOUT_NCHW, 0, NULL}}, {4}};
    char key[1024], other[1024], report[256];
    tw_layout x, y;
    tw_cpu_layout_key(be, &stem, &net, key, sizeof key);
    printf("# key %s\n", key);
    CHECK(strstr(key, "onednn=3.") && strstr(key, "dtype=f32") && strstr(key, "threads="));
    CHECK(!tw_cpu_layout_cache_get(key, &x, &y, report, sizeof report));
    tw_layout px = TW_LAYOUT_NCHW, py = TW_LAYOUT_NHWC;
    char rep[256] = "nchw->nhwc 1.00 ms (chosen)";
    CHECK(!tw_cpu_layout_cache_put(key, &px, &py, rep, sizeof rep));
    CHECK(tw_cpu_layout_cache_get(key, &x, &y, report, sizeof report));
    CHECK(x == TW_LAYOUT_NCHW && y == TW_LAYOUT_NHWC && strstr(report, "(chosen)"));
    /* Every part of the key invalidates: shapes, the later layers, threads, ISA, dtype. */
    for (int part = 0; part < 6; part++) {
        tw_conv_desc s2 = stem;
        tw_net_shape n2 = net;
        tw_cpu_backend b2 = *be;
        if (part == 0) s2.c_in = 12;
        if (part == 1) s2.h_in = 64;
        if (part == 2) n2.count[0] = 3;
        if (part == 3) b2.n_threads = be->n_threads + 1;
        if (part == 4) b2.isa = dnnl_cpu_isa_avx2;
        if (part == 5) b2.base.act_dtype = TW_BF16;
        tw_cpu_layout_key(&b2, &s2, &n2, other, sizeof other);
        if (part == 4 && be->isa == dnnl_cpu_isa_avx2) continue;
        CHECK(strcmp(other, key) != 0);
        CHECK(!tw_cpu_layout_cache_get(other, &x, &y, report, sizeof report));
    }
    /* A second key is added beside the first; a later decision for a key does not replace the
     * first (another rank timed the same shape first): the first comes back to its caller. */
    tw_cpu_layout_key(be, &stem, NULL, other, sizeof other);
    px = py = TW_LAYOUT_NCHW8C;
    snprintf(rep, sizeof rep, "r2");
    CHECK(!tw_cpu_layout_cache_put(other, &px, &py, rep, sizeof rep));
    px = py = TW_LAYOUT_NHWC;
    snprintf(rep, sizeof rep, "r3");
    CHECK(tw_cpu_layout_cache_put(key, &px, &py, rep, sizeof rep));
    CHECK(px == TW_LAYOUT_NCHW && py == TW_LAYOUT_NHWC && !strcmp(rep, "nchw->nhwc 1.00 ms (chosen)"));
    CHECK(tw_cpu_layout_cache_get(other, &x, &y, report, sizeof report) && y == TW_LAYOUT_NCHW8C);
    CHECK(tw_cpu_layout_cache_get(key, &x, &y, report, sizeof report) && x == TW_LAYOUT_NCHW &&
          y == TW_LAYOUT_NHWC);
    /* Corrupt files are ignored (with a warning on stderr), never trusted, and rewritten. */
    static const char *corrupt[] = {
        "garbage\n",
        "# twinfuse layout cache v1\nkey-without-fields\n",
        "# twinfuse layout cache v1\nK\tnhwc\tnChw99c\treport\n",
        "# twinfuse layout cache v1\nK\tnhwc\tnhwc\treport",   /* cut short */
    };
    for (size_t i = 0; i < sizeof corrupt / sizeof corrupt[0]; i++) {
        char text[2048];
        snprintf(text, sizeof text, "%s", corrupt[i]);
        /* Even a line for our key is not trusted inside a corrupt file. */
        if (i == 0) snprintf(text, sizeof text, "%s\tnhwc\tnhwc\tr\ngarbage\n", key);
        write_file(path, text);
        CHECK(!tw_cpu_layout_cache_get(key, &x, &y, report, sizeof report));
        CHECK(!tw_cpu_layout_cache_get("K", &x, &y, report, sizeof report));
        px = py = TW_LAYOUT_NCHW8C;
        snprintf(rep, sizeof rep, "fresh");
        CHECK(!tw_cpu_layout_cache_put(key, &px, &py, rep, sizeof rep));
        CHECK(tw_cpu_layout_cache_get(key, &x, &y, report, sizeof report) && !strcmp(report, "fresh"));
    }
    tw_backend_free(base);
}

/* A 7x7/2 stem on [4, c, 64, 64] followed by net; returns the plan's input layout. */
static tw_layout stem_layout(tw_backend *be, int c, const tw_net_shape *net, tw_layout *y_layout) {
    tw_conv_desc d = {4, c, 64, 64, 64, 7, 2, 3, 0, TW_LAYOUT_NCHW, 1, net};
    tw_conv_plan *p = NULL;
    tw_err err = {0};
    if (tw_conv_plan_make(be, &p, &d, &err) != TW_OK) {
        printf("FAIL stem plan: %s\n", err.msg);
        fails++;
        return TW_LAYOUT_NCHW;
    }
    tw_layout l = tw_conv_plan_x(p).layout;
    *y_layout = tw_conv_plan_y(p).layout;
    printf("# %s stem c=%d: %s input, %s output, %s\n#   %s\n",
           tw_backend_act_dtype(be) == TW_BF16 ? "bf16" : "fp32", c, tw_layout_name(l),
           tw_layout_name(*y_layout), tw_conv_plan_impl(p), tw_conv_plan_choice(p));
    if (!net || !getenv("TW_CPU_LAYOUT")) CHECK(strstr(tw_conv_plan_choice(p), "(chosen)") != NULL);
    tw_conv_plan_free(be, p);
    return l;
}

/* On this machine: a stem with layers after it takes a layout without reference kernels (the
 * later layers at 2x2 included), TW_CPU_LAYOUT forces the network's layout, and the second plan
 * of a shape comes from the cache. */
static void test_machine(tw_precision prec) {
    tw_backend *base = NULL;
    tw_err err = {0};
    if (tw_backend_create(&base, TW_DEVICE_CPU, prec, 0, &err) != TW_OK) {
        printf("# %s: %s (skipped)\n", prec == TW_PREC_BF16 ? "bf16" : "fp32", err.msg);
        return;
    }
    static const tw_layout all[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C,
                                    TW_LAYOUT_NCHW16C};
    /* After the stem and pool: 64 channels at 16x16, and a 512-channel layer at 2x2. */
    tw_net_shape net = {1, 2, {{4, 64, 16, 16, 64, 3, 1, 1, 1, TW_LAYOUT_NCHW, 0, NULL},
                               {4, 512, 2, 2, 512, 3, 1, 1, 1, TW_LAYOUT_NCHW, 0, NULL}}, {4, 3}};
    for (int c = 3; c <= 12; c += 9) {
        tw_layout y;
        stem_layout(base, c, &net, &y);
        tw_conv_plan *p = NULL;
        tw_conv_desc d = {4, c, 64, 64, 64, 7, 2, 3, 0, TW_LAYOUT_NCHW, 1, &net};
        CHECK(tw_conv_plan_make(base, &p, &d, &err) == TW_OK);
        if (p) {
            CHECK(strstr(tw_conv_plan_choice(p), "[cached]") != NULL);
            CHECK(tw_conv_plan_y(p).layout == y);
            tw_conv_plan_free(base, p);
        }
        for (int i = 0; i < 4; i++) {
            setenv("TW_CPU_LAYOUT", tw_layout_name(all[i]), 1);
            tw_layout forced_y;
            stem_layout(base, c, NULL, &forced_y);
            CHECK(forced_y == all[i]);
            unsetenv("TW_CPU_LAYOUT");
        }
    }
    setenv("TW_CPU_LAYOUT", "nchw16", 1);
    tw_conv_desc d = {4, 2, 64, 64, 64, 7, 2, 3, 0, TW_LAYOUT_NCHW, 1, NULL};
    tw_conv_plan *p = NULL;
    CHECK(tw_conv_plan_make(base, &p, &d, &err) == TW_E_RANGE && !p);
    unsetenv("TW_CPU_LAYOUT");
    tw_backend_free(base);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_layout WORK_DIR\n");
        return 1;
    }
    unsetenv("TW_CPU_LAYOUT");
    test_rank();
    test_choose();
    test_cache(argv[1]);
    test_machine(TW_PREC_FP32);
    test_machine(TW_PREC_BF16);
    printf("%s\n", fails ? "FAIL" : "PASS");
    return fails ? 1 : 0;
}
