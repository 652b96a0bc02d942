/* The machine's arithmetic peak with the threads the backend uses (OMP_NUM_THREADS, else the
 * cores this process may run on): fp32 FMA throughput from register-resident FMA chains (AVX-512
 * or AVX2, as oneDNN dispatches), and bf16 where the CPU has it natively (AMX: a large oneDNN bf16
 * matmul; AVX512_BF16 without AMX: vdpbf16ps chains). Prints `peak fp32=<GFLOP/s>
 * bf16=<GFLOP/s|none>`, the line the ResNet benchmark reads; the best of a few runs. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#define CHECK(call)                                                                   \
    do {                                                                              \
        dnnl_status_t s_ = (call);                                                    \
        if (s_ != dnnl_success) {                                                     \
            fprintf(stderr, "peak: %s failed (%d) at %s:%d\n", #call, (int)s_, __FILE__, __LINE__); \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* 12 independent chains cover the FMA latency x pipes of every core seen (4 cycles x 2). The
 * result is returned so the compiler keeps the work. */
#define CHAINS 12

__attribute__((target("avx512f"))) static float fma_avx512(long iters) {
    __m512 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps(0.001f * i);
    const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
    float s = 0;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s;
}

__attribute__((target("avx2,fma"))) static float fma_avx2(long iters) {
    __m256 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_set1_ps(0.001f * i);
    const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
    float out[8], s = 0;
    for (int i = 0; i < CHAINS; i++) {
        _mm256_storeu_ps(out, acc[i]);
        for (int k = 0; k < 8; k++) s += out[k];
    }
    return s;
}

/* vdpbf16ps: 16 lanes x 2 products x (mul + add) = 64 FLOP per instruction. */
__attribute__((target("avx512f,avx512bf16"))) static float dp_bf16(long iters) {
    __m512 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps(0.0f);
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3a80);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    float s = 0;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s;
}

/* GFLOP/s of fn over all threads: flop_per_iter per loop iteration per thread. */
static double run_chains(float (*fn)(long), double flop_per_iter, int n_threads) {
    const long iters = 20000000;
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
#pragma omp parallel num_threads(n_threads)
        {
            float s = fn(iters);
#pragma omp atomic
            sink += s;
        }
        double g = flop_per_iter * iters * n_threads / (now_s() - t0) * 1e-9;
        if (g > best) best = g;
    }
    (void)sink;
    return best;
}

/* A 4096^3 bf16 matmul (f32 out) through oneDNN, which uses AMX tiles where the CPU has them. */
static double matmul_bf16(void) {
    const dnnl_dim_t M = 4096, N = 4096, K = 4096;
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    dnnl_memory_desc_t a_md, b_md, b_any, c_md;
    dnnl_dims_t ad = {M, K}, bd = {K, N}, cd = {M, N};
    CHECK(dnnl_memory_desc_create_with_tag(&a_md, 2, ad, dnnl_bf16, dnnl_ab));
    CHECK(dnnl_memory_desc_create_with_tag(&b_md, 2, bd, dnnl_bf16, dnnl_ab));
    CHECK(dnnl_memory_desc_create_with_tag(&b_any, 2, bd, dnnl_bf16, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_create_with_tag(&c_md, 2, cd, dnnl_f32, dnnl_ab));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_matmul_primitive_desc_create(&pd, eng, a_md, b_any, NULL, c_md, NULL));
    dnnl_primitive_t mm;
    CHECK(dnnl_primitive_create(&mm, pd));
    const_dnnl_memory_desc_t bw_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_memory_t a, b, bw, c;
    CHECK(dnnl_memory_create(&a, a_md, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&b, b_md, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&bw, bw_md, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&c, c_md, eng, DNNL_MEMORY_ALLOCATE));
    void *pa, *pb;
    CHECK(dnnl_memory_get_data_handle(a, &pa));
    CHECK(dnnl_memory_get_data_handle(b, &pb));
    for (dnnl_dim_t i = 0; i < M * K; i++) ((unsigned short *)pa)[i] = 0x3f80;
    for (dnnl_dim_t i = 0; i < K * N; i++) ((unsigned short *)pb)[i] = 0x3a80;
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t ro;
    CHECK(dnnl_reorder_primitive_desc_create(&rpd, b_md, eng, bw_md, eng, NULL));
    CHECK(dnnl_primitive_create(&ro, rpd));
    dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, b}, {DNNL_ARG_TO, bw}};
    CHECK(dnnl_primitive_execute(ro, stream, 2, rargs));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, bw}, {DNNL_ARG_DST, c}};
    double best = 0;
    for (int rep = 0; rep < 4; rep++) {
        double t0 = now_s();
        CHECK(dnnl_primitive_execute(mm, stream, 3, args));
        CHECK(dnnl_stream_wait(stream));
        double g = 2.0 * M * N * K / (now_s() - t0) * 1e-9;
        if (rep > 0 && g > best) best = g;   /* rep 0 warms up */
    }
    dnnl_memory_t ms[] = {a, b, bw, c};
    for (int i = 0; i < 4; i++) CHECK(dnnl_memory_destroy(ms[i]));
    CHECK(dnnl_primitive_destroy(mm));
    CHECK(dnnl_primitive_destroy(ro));
    CHECK(dnnl_primitive_desc_destroy(pd));
    CHECK(dnnl_primitive_desc_destroy(rpd));
    dnnl_memory_desc_t mds[] = {a_md, b_md, b_any, c_md};
    for (int i = 0; i < 4; i++) CHECK(dnnl_memory_desc_destroy(mds[i]));
    CHECK(dnnl_stream_destroy(stream));
    CHECK(dnnl_engine_destroy(eng));
    return best;
}

int main(void) {
    int n_threads = omp_get_max_threads();
    __builtin_cpu_init();
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    unsigned amx = (unsigned)dnnl_cpu_isa_avx512_core_amx;
    unsigned bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    int has_amx = ((unsigned)isa & amx) == amx;
    int has_bf16 = __builtin_cpu_supports("avx512bf16") && ((unsigned)isa & bf16) == bf16;
    double fp32;
    const char *how;
    /* The vector width oneDNN dispatches to (DNNL_MAX_CPU_ISA can cap it below the CPU's). */
    unsigned avx512 = (unsigned)dnnl_cpu_isa_avx512_core;
    if (__builtin_cpu_supports("avx512f") && ((unsigned)isa & avx512) == avx512) {
        fp32 = run_chains(fma_avx512, CHAINS * 16 * 2.0, n_threads);
        how = "avx512 fma";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        fp32 = run_chains(fma_avx2, CHAINS * 8 * 2.0, n_threads);
        how = "avx2 fma";
    } else {
        printf("# no AVX2+FMA: this probe measures only AVX2/AVX-512 machines\n");
        printf("peak fp32=none bf16=none\n");
        return 0;
    }
    printf("# threads=%d fp32 via %s\n", n_threads, how);
    if (has_amx) {
        printf("# bf16 via oneDNN matmul 4096^3 (AMX)\n");
        printf("peak fp32=%.1f bf16=%.1f\n", fp32, matmul_bf16());
    } else if (has_bf16) {
        printf("# bf16 via vdpbf16ps chains (AVX512_BF16)\n");
        printf("peak fp32=%.1f bf16=%.1f\n", fp32, run_chains(dp_bf16, CHAINS * 64.0, n_threads));
    } else {
        printf("peak fp32=%.1f bf16=none\n", fp32);
    }
    return 0;
}
