/* Dense algebra on row-major f32 matrices: GEMM through cuBLAS (fp32 compute in fp32 mode; in bf16
 * mode CUBLAS_COMPUTE_32F_FAST_16BF, bf16 tensor-core products of the f32 operands with f32
 * accumulation, as torch's bf16 autocast of a linear layer) and the linear layers' bias
 * (kernels/dense.cu). */
#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

/* C = alpha op(A) op(B) + beta C, row-major. cuBLAS is column-major: a row-major [r, c] matrix is
 * its column-major transpose, so cuBLAS computes Cᵀ = op(B)ᵀ op(A)ᵀ with the operands swapped. */
void tw_cuda_gemm(tw_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c,
                  int ldc) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(m > 0 && n > 0 && k > 0);
    TW_ASSERT(lda >= (trans_a ? m : k) && ldb >= (trans_b ? k : n) && ldc >= n);
    cublasComputeType_t compute = cb->bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
    TW_CHECK_CUBLAS(cublasGemmEx(cb->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b,
                                 CUDA_R_32F, ldb, a, CUDA_R_32F, lda, &beta, c, CUDA_R_32F, ldc,
                                 compute, CUBLAS_GEMM_DEFAULT));
}

/* y[i, j] += bias[j]. */
void tw_cuda_bias_forward(tw_backend *be, float *y, const float *bias, int m, int n) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_CHECK_CUDA(tw_k_bias_forward(cb->stream, tw_cuda_grid(cb, (size_t)m * n), y, bias, m, n));
}

/* dbias[j] = Σ_i dy[i, j] (=). */
void tw_cuda_bias_backward(tw_backend *be, float *dbias, const float *dy, int m, int n) {
    TW_CHECK_CUDA(tw_k_bias_backward(tw_cuda_of(be)->stream, dbias, dy, m, n));
}
