/* CPU backend creation: precision AUTO resolves to bf16 exactly where bf16 is native, FP32 is
 * always f32, BF16 without native bf16 is TW_E_UNSUPPORTED with a message (never a slow path),
 * and the description names the ISA, the thread count (OMP_NUM_THREADS when set) and the
 * precision. "Native" is judged here from /proc/cpuinfo and DNNL_MAX_CPU_ISA, independently of
 * the backend's own cpuid probe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb.h"

/* 1 when /proc/cpuinfo lists avx512_bf16 or amx_bf16, 0 when it lists neither, -1 unreadable. */
static int cpuinfo_bf16(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return -1;
    char line[8192];
    int found = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0) {
            found = strstr(line, " avx512_bf16") || strstr(line, " amx_bf16");
            break;
        }
    fclose(f);
    return found;
}

int main(void) {
    int info = cpuinfo_bf16();
    if (info < 0) {
        printf("SKIP: /proc/cpuinfo unreadable\n");
        return TW_TEST_SKIP;
    }
    /* A DNNL_MAX_CPU_ISA below avx512_core_bf16 keeps oneDNN off the bf16 instructions. */
    const char *cap = getenv("DNNL_MAX_CPU_ISA");
    int capped = cap && *cap && strncmp(cap, "AVX512_CORE_BF16", 16) != 0 &&
                 strncmp(cap, "AVX512_CORE_FP16", 16) != 0 && strncmp(cap, "AVX512_CORE_AMX", 15) != 0 &&
                 strcmp(cap, "ALL") != 0;
    int native = info && !capped;
    printf("# cpuinfo bf16=%d DNNL_MAX_CPU_ISA=%s -> native bf16 expected: %d\n", info,
           cap ? cap : "(unset)", native);
    int ok = 1;

    tw_backend *be = NULL;
    tw_err err = {0};
    tw_status st = tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_BF16, 0, &err);
    if (native) {
        if (st != TW_OK || tw_backend_act_dtype(be) != TW_BF16) {
            printf("FAIL: precision bf16 on a native-bf16 CPU: status %d (%s)\n", st, err.msg);
            ok = 0;
        } else {
            printf("PASS precision bf16 accepted\n");
        }
        tw_backend_free(be);
    } else if (st != TW_E_UNSUPPORTED || be != NULL || strstr(err.msg, "bf16") == NULL) {
        printf("FAIL: precision bf16 without native bf16 gave status %d, msg '%s'\n", st, err.msg);
        ok = 0;
    } else {
        printf("PASS precision bf16 refused: %s\n", err.msg);
    }

    be = NULL;
    if (tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_AUTO, 0, &err) != TW_OK) {
        printf("FAIL: precision auto: %s\n", err.msg);
        return TW_TEST_FAIL;
    }
    tw_dtype want = native ? TW_BF16 : TW_F32;
    if (tw_backend_act_dtype(be) != want) {
        printf("FAIL: precision auto gave %s, want %s\n", tw_dtype_name(tw_backend_act_dtype(be)),
               tw_dtype_name(want));
        ok = 0;
    } else {
        printf("PASS precision auto -> %s\n", tw_dtype_name(want));
    }
    char line[256];
    tw_backend_describe(be, line, sizeof line);
    printf("# %s\n", line);
    char expect[64];
    snprintf(expect, sizeof expect, "precision=%s", native ? "bf16" : "fp32");
    if (strncmp(line, "cpu isa=", 8) != 0 || !strstr(line, expect) || !strstr(line, "threads=")) {
        printf("FAIL: description '%s' lacks isa / threads / %s\n", line, expect);
        ok = 0;
    }
    const char *omp = getenv("OMP_NUM_THREADS");
    if (omp && *omp) {
        snprintf(expect, sizeof expect, "threads=%s ", omp);
        if (!strstr(line, expect)) {
            printf("FAIL: OMP_NUM_THREADS=%s not honoured: '%s'\n", omp, line);
            ok = 0;
        } else {
            printf("PASS OMP_NUM_THREADS=%s honoured\n", omp);
        }
    }
    tw_backend_free(be);

    if (tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) != TW_OK ||
        tw_backend_act_dtype(be) != TW_F32) {
        printf("FAIL: precision fp32\n");
        ok = 0;
    } else {
        printf("PASS precision fp32 -> F32\n");
    }
    tw_backend_free(be);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? TW_TEST_PASS : TW_TEST_FAIL;
}
