/* The CPU backend's lifetime: oneDNN engine and stream, run-time ISA and native-bf16 detection,
 * the thread count, the precision choice, and the ops table. The ops themselves live in the
 * other files of this folder (conv.c, bn.c, bn_sync.c, eltwise.c, pool.c, dense.c, loss.c, optim.c). */
#include <cpuid.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2_vnni_2: return "avx2_vnni_2";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_fp16: return "avx512_core_fp16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_amx_fp16: return "avx512_core_amx_fp16";
    default: return "generic";
    }
}

/* The CPU's own bf16 instructions (CPUID leaf 7): AVX512_BF16 is subleaf 1 EAX bit 5,
 * AMX-BF16 is subleaf 0 EDX bit 22. */
static int cpu_has_bf16_insns(void) {
    unsigned a, b, c, d;
    int has = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        if (d & (1u << 22)) has = 1;
        if (a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5))) has = 1;
    }
    return has;
}

/* Native bf16 needs both the instructions and oneDNN dispatching to them: DNNL_MAX_CPU_ISA (or
 * an OS without AVX-512 state) can keep oneDNN below avx512_core_bf16, and then bf16 would be a
 * slow emulation. oneDNN's ISA values are bit masks that contain their predecessors. */
static int native_bf16(dnnl_cpu_isa_t isa) {
    unsigned want = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    return cpu_has_bf16_insns() && (((unsigned)isa & want) == want);
}

/* OMP_NUM_THREADS when set; otherwise every core this process may run on. */
static int pick_threads(void) {
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && *env) return omp_get_max_threads();
    cpu_set_t set;
    CPU_ZERO(&set);
    int n = 1;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    return n;
}

void tw_cpu_backend_free(tw_backend *base) {
    tw_cpu_backend *be = tw_cpu_be(base);
    tw_cpu_reorder_cache_free(be);
    tw_cpu_mem_free(base, be->scratch);
    if (be->stream) TW_CHECK_DNNL(dnnl_stream_destroy(be->stream));
    if (be->engine) TW_CHECK_DNNL(dnnl_engine_destroy(be->engine));
    free(be);
}

void tw_cpu_backend_describe(const tw_backend *base, char *buf, size_t n_bytes) {
    const tw_cpu_backend *be = (const tw_cpu_backend *)base;
    snprintf(buf, n_bytes, "cpu isa=%s threads=%d precision=%s native_bf16=%s",
             isa_name(be->isa), be->n_threads, base->act_dtype == TW_BF16 ? "bf16" : "fp32",
             be->native_bf16 ? "yes" : "no");
}

void tw_cpu_backend_sync(tw_backend *base) {
    TW_CHECK_DNNL(dnnl_stream_wait(tw_cpu_be(base)->stream));
}

static const tw_backend_ops cpu_ops = {
#define TW_OP(ret, name, params, args) .name = tw_cpu_##name,
#include "backend/ops.def"
};

tw_status tw_cpu_backend_create(tw_backend **out, tw_precision prec, tw_err *err) {
    *out = NULL;
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    int bf16 = native_bf16(isa);
    if (prec == TW_PREC_BF16 && !bf16)
        return tw_err_set(err, TW_E_UNSUPPORTED,
                          "precision bf16: this CPU (oneDNN ISA %s) has no native bf16 "
                          "(needs AVX512_BF16 or AMX-BF16); use precision fp32 or auto",
                          isa_name(isa));
    tw_cpu_backend *be = calloc(1, sizeof *be);
    if (!be) return tw_err_set(err, TW_E_NOMEM, "cpu backend: out of memory");
    be->base.ops = &cpu_ops;
    be->base.device = TW_DEVICE_CPU;
    be->base.act_dtype = (prec == TW_PREC_FP32 || !bf16) ? TW_F32 : TW_BF16;
    be->isa = isa;
    be->native_bf16 = bf16;
    be->n_threads = pick_threads();
    TW_CHECK_DNNL(dnnl_engine_create(&be->engine, dnnl_cpu, 0));
    TW_CHECK_DNNL(dnnl_stream_create(&be->stream, be->engine, dnnl_stream_default_flags));
    *out = &be->base;
    return TW_OK;
}
