/* Kernels on row-major f32 matrices [rows, cols]: the linear layers' bias. GEMMs are cuBLAS's
 * (src/backend/cuda/dense.c). The column sum runs 32 columns x 8 row lanes per block, in a fixed
 * order. (The projector's synchronised BN runs on a BN plan of f32 rows: bn_sync.cu.) */
#include "kcommon.cuh"

enum { COLS = 32, ROWS = 8 };

/* out[j] = Σ_i a[i, j] (=), in double. */
__global__ void colsum_kernel(float *out, const float *a, int n, int d) {
    __shared__ double sh[ROWS][COLS];
    int j = blockIdx.x * COLS + threadIdx.x;
    double s0 = 0.0;
    if (j < d)
        for (int i = threadIdx.y; i < n; i += ROWS) s0 += a[(size_t)i * d + j];
    sh[threadIdx.y][threadIdx.x] = s0;
    __syncthreads();
    if (threadIdx.y == 0 && j < d) {
        for (int k = 1; k < ROWS; k++) s0 += sh[k][threadIdx.x];
        out[j] = (float)s0;
    }
}

static dim3 col_grid(int d) { return dim3((d + COLS - 1) / COLS); }

__global__ void bias_fwd_kernel(float *y, const float *bias, int m, int n) {
    size_t total = (size_t)m * n;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) y[i] += bias[i % n];
}

extern "C" cudaError_t tw_k_bias_forward(cudaStream_t s, unsigned grid, float *y,
                                         const float *bias, int m, int n) {
    bias_fwd_kernel<<<grid, TW_K_THREADS, 0, s>>>(y, bias, m, n);
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_bias_backward(cudaStream_t s, float *dbias, const float *dy, int m,
                                          int n) {
    colsum_kernel<<<col_grid(n), dim3(COLS, ROWS), 0, s>>>(dbias, dy, m, n);
    return cudaGetLastError();
}
