/* The CPU backend's activation-layout choice (cpu/layout.c): implementation names ranked by ISA,
 * the pick over fake candidates (an AMX machine's, with none needed here), and on this machine
 * that a free stem takes the candidate whose representative layer ranks best, or the forced one. */
#include <stdio.h>
#include <stdlib.h>

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
    /* What oneDNN 3.2 reports for a 2-channel bf16 stem on an AMX Xeon (order nchw, nhwc,
     * nChw16c, nChw8c): nChw16c's network runs jit_bf16, NHWC's the AMX kernels. */
    tw_cpu_layout_cand amx[4] = {{1, 0, 10, 35}, {1, 0, 12, 38}, {1, 1, 0, 38}, {1, 1, 0, 38}};
    CHECK(tw_cpu_layout_choose(amx, 4) == 1);
    /* fp32 on AVX-512: every layout ranks alike, so the measured order decides (the first). */
    tw_cpu_layout_cand even[4] = {{1, 0, 12, 28}, {1, 0, 12, 28}, {1, 0, 12, 28}, {1, 0, 12, 28}};
    CHECK(tw_cpu_layout_choose(even, 4) == 0);
    /* A slow stem loses at equal network rank, wins at a better one; failed plans never count. */
    tw_cpu_layout_cand slow[3] = {{1, 1, 9, 21}, {1, 0, 8, 21}, {0, 0, 99, 99}};
    CHECK(tw_cpu_layout_choose(slow, 3) == 1);
    slow[0].net_rank = 22;
    CHECK(tw_cpu_layout_choose(slow, 3) == 0);
    tw_cpu_layout_cand none[2] = {{0, 0, 5, 5}, {0, 0, 5, 5}};
    CHECK(tw_cpu_layout_choose(none, 2) == -1);
}

/* A 7x7/2 stem on [4, c, 64, 64]; returns the plan's input layout. */
static tw_layout stem_layout(tw_backend *be, int c, tw_layout *y_layout) {
    tw_conv_desc d = {4, c, 64, 64, 64, 7, 2, 3, 0, TW_LAYOUT_NCHW, 1};
    tw_conv_plan *p = NULL;
    tw_err err = {0};
    if (tw_conv_plan_make(be, &p, &d, &err) != TW_OK) {
        printf("FAIL stem plan: %s\n", err.msg);
        fails++;
        return TW_LAYOUT_NCHW;
    }
    tw_layout l = tw_conv_plan_x(p).layout;
    *y_layout = tw_conv_plan_y(p).layout;
    printf("# %s stem c=%d: %s input, %s output, %s\n", tw_backend_act_dtype(be) == TW_BF16 ? "bf16" : "fp32",
           c, tw_layout_name(l), tw_layout_name(*y_layout), tw_conv_plan_impl(p));
    tw_conv_plan_free(be, p);
    return l;
}

static void test_machine(tw_precision prec) {
    tw_backend *base = NULL;
    tw_err err = {0};
    if (tw_backend_create(&base, TW_DEVICE_CPU, prec, 0, &err) != TW_OK) {
        printf("# %s: %s (skipped)\n", prec == TW_PREC_BF16 ? "bf16" : "fp32", err.msg);
        return;
    }
    tw_cpu_backend *be = tw_cpu_be(base);
    static const tw_layout all[] = {TW_LAYOUT_NCHW, TW_LAYOUT_NHWC, TW_LAYOUT_NCHW8C,
                                    TW_LAYOUT_NCHW16C};
    for (int c = 2; c <= 12; c += 10) {
        tw_layout y;
        stem_layout(base, c, &y);
        /* The stem's output is [4, 64, 32, 32]; the representative layer sits after the pool. */
        int chosen = tw_cpu_layout_net_rank(be, 4, 64, 16, 16, y);
        for (int i = 0; i < 4; i++) {
            int r = tw_cpu_layout_net_rank(be, 4, 64, 16, 16, all[i]);
            printf("#   net_rank %s = %d\n", tw_layout_name(all[i]), r);
            setenv("TW_CPU_LAYOUT", tw_layout_name(all[i]), 1);
            tw_layout forced_y;
            stem_layout(base, c, &forced_y);
            CHECK(forced_y == all[i]);
            unsetenv("TW_CPU_LAYOUT");
            /* A layout some stem can feed without reference code may not rank higher. */
            if (all[i] != TW_LAYOUT_NCHW) CHECK(r <= chosen);
        }
    }
    setenv("TW_CPU_LAYOUT", "nchw16", 1);
    tw_conv_desc d = {4, 2, 64, 64, 64, 7, 2, 3, 0, TW_LAYOUT_NCHW, 1};
    tw_conv_plan *p = NULL;
    CHECK(tw_conv_plan_make(base, &p, &d, &err) == TW_E_RANGE && !p);
    unsetenv("TW_CPU_LAYOUT");
    tw_backend_free(base);
}

int main(void) {
    unsetenv("TW_CPU_LAYOUT");
    test_rank();
    test_choose();
    test_machine(TW_PREC_FP32);
    test_machine(TW_PREC_BF16);
    printf("%s\n", fails ? "FAIL" : "PASS");
    return fails ? 1 : 0;
}
