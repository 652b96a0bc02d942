/* Dense algebra on row-major f32 matrices: GEMM through oneDNN's dnnl_sgemm (row-major, like
 * tw_gemm), and the bias add and its gradient as OpenMP loops. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* C = alpha op(A) op(B) + beta C. dnnl_sgemm is row-major with the same argument order as
 * tw_gemm ('N'/'T', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); beta = 0 ignores C, as BLAS. */
void tw_cpu_gemm(tw_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    (void)be;
    TW_ASSERT(m >= 0 && n >= 0 && k >= 0);
    TW_ASSERT(lda >= (trans_a ? m : k) && ldb >= (trans_b ? k : n) && ldc >= n);
    if (m == 0 || n == 0) return;
    TW_CHECK_DNNL(dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                             lda > 0 ? lda : 1, b, ldb > 0 ? ldb : 1, beta, c, ldc > 0 ? ldc : 1));
}

/* y[i, j] += bias[j]. */
void tw_cpu_bias_forward(tw_backend *be, float *y, const float *bias, int m, int n) {
    (void)be;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < m; i++) {
        float *yi = y + (size_t)i * n;
#pragma omp simd
        for (int j = 0; j < n; j++) yi[j] += bias[j];
    }
}

/* dbias[j] = Σ_i dy[i, j] (=). Threads take column blocks so each sums rows in order and no
 * reduction across threads is needed. */
void tw_cpu_bias_backward(tw_backend *be, float *dbias, const float *dy, int m, int n) {
    (void)be;
    enum { BLK = 64 };
    int n_blk = (n + BLK - 1) / BLK;
#pragma omp parallel for schedule(static)
    for (int jb = 0; jb < n_blk; jb++) {
        int j0 = jb * BLK, j1 = j0 + BLK < n ? j0 + BLK : n;
        float acc[BLK] = {0};
        for (int i = 0; i < m; i++) {
            const float *r = dy + (size_t)i * n;
#pragma omp simd
            for (int j = j0; j < j1; j++) acc[j - j0] += r[j];
        }
        for (int j = j0; j < j1; j++) dbias[j] = acc[j - j0];
    }
}
