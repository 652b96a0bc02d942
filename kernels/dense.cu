/* Kernels on row-major f32 matrices [rows, cols]: the linear layers' bias and the projector's
 * synchronised 1-D batch norm (local column sums here; the all-reduce and the mean / inv_std
 * between the two steps are the caller's, src/loss/syncbn.c). GEMMs are cuBLAS's
 * (src/backend/cuda/dense.c). Column sums run 32 columns x 8 row lanes per block, in a fixed
 * order. */
#include "kcommon.cuh"

enum { COLS = 32, ROWS = 8 };

/* What one element contributes to the two column sums. */
enum { SUM_DY, SUM_X_X2, SUM_DY_DYXHAT };

template <int KIND>
__global__ void colsum_kernel(float *out0, float *out1, const float *a, const float *b,
                              const float *c_, const float *mean, const float *inv_std, int n,
                              int d, int relu) {
    __shared__ double sh[2][ROWS][COLS];
    int j = blockIdx.x * COLS + threadIdx.x;
    double s0 = 0.0, s1 = 0.0;   /* double, as the CPU backend: Σx² - N mean² must stay accurate */
    if (j < d) {
        for (int i = threadIdx.y; i < n; i += ROWS) {
            size_t k = (size_t)i * d + j;
            if (KIND == SUM_DY) {
                s0 += a[k];
            } else if (KIND == SUM_X_X2) {
                float x = a[k];
                s0 += x;
                s1 += (double)x * x;
            } else {   /* a = dy, b = y, c_ = x */
                float g = (!relu || b[k] > 0.f) ? a[k] : 0.f;
                s0 += g;
                s1 += (double)g * ((c_[k] - mean[j]) * inv_std[j]);
            }
        }
    }
    sh[0][threadIdx.y][threadIdx.x] = s0;
    sh[1][threadIdx.y][threadIdx.x] = s1;
    __syncthreads();
    if (threadIdx.y == 0 && j < d) {
        for (int k = 1; k < ROWS; k++) {
            s0 += sh[0][k][threadIdx.x];
            s1 += sh[1][k][threadIdx.x];
        }
        out0[j] = (float)s0;
        if (out1) out1[j] = (float)s1;
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
    colsum_kernel<SUM_DY><<<col_grid(n), dim3(COLS, ROWS), 0, s>>>(dbias, NULL, dy, NULL, NULL,
                                                                   NULL, NULL, m, n, 0);
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_bn1d_sums(cudaStream_t s, float *sums, const float *x, int n, int d) {
    colsum_kernel<SUM_X_X2><<<col_grid(d), dim3(COLS, ROWS), 0, s>>>(sums, sums + d, x, NULL, NULL,
                                                                     NULL, NULL, n, d, 0);
    return cudaGetLastError();
}

__global__ void bn1d_fwd_kernel(float *y, const float *x, const float *mean, const float *inv_std,
                                const float *gamma, const float *beta, int n, int d, int relu) {
    size_t total = (size_t)n * d;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        int j = (int)(i % d);
        float v = (x[i] - mean[j]) * inv_std[j];
        if (gamma) v *= gamma[j];
        if (beta) v += beta[j];
        if (relu && !(v > 0.f) && v == v) v = 0.f;
        y[i] = v;
    }
}

extern "C" cudaError_t tw_k_bn1d_forward(cudaStream_t s, unsigned grid, float *y, const float *x,
                                         const float *mean, const float *inv_std,
                                         const float *gamma, const float *beta, int n, int d,
                                         int relu) {
    bn1d_fwd_kernel<<<grid, TW_K_THREADS, 0, s>>>(y, x, mean, inv_std, gamma, beta, n, d, relu);
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_bn1d_backward_sums(cudaStream_t s, float *sums, const float *dy,
                                               const float *y, const float *x, const float *mean,
                                               const float *inv_std, int n, int d, int relu) {
    colsum_kernel<SUM_DY_DYXHAT><<<col_grid(d), dim3(COLS, ROWS), 0, s>>>(
        sums, sums + d, dy, y, x, mean, inv_std, n, d, relu);
    return cudaGetLastError();
}

/* dx = γ inv_std (dy' - Σdy'/N - x̂ Σdy'x̂/N), N the global row count. */
__global__ void bn1d_bwd_apply_kernel(float *dx, const float *dy, const float *y, const float *x,
                                      const float *mean, const float *inv_std, const float *gamma,
                                      const float *global_sums, float n_global, int n, int d,
                                      int relu) {
    size_t total = (size_t)n * d;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        int j = (int)(i % d);
        float g = (!relu || y[i] > 0.f) ? dy[i] : 0.f;
        float xhat = (x[i] - mean[j]) * inv_std[j];
        float scale = (gamma ? gamma[j] : 1.f) * inv_std[j];
        dx[i] = scale * (g - global_sums[j] / n_global - xhat * global_sums[d + j] / n_global);
    }
}

extern "C" cudaError_t tw_k_bn1d_backward_apply(cudaStream_t s, unsigned grid, float *dx,
                                                const float *dy, const float *y, const float *x,
                                                const float *mean, const float *inv_std,
                                                const float *gamma, const float *global_sums,
                                                float n_global, int n, int d, int relu) {
    bn1d_bwd_apply_kernel<<<grid, TW_K_THREADS, 0, s>>>(dx, dy, y, x, mean, inv_std, gamma,
                                                        global_sums, n_global, n, d, relu);
    return cudaGetLastError();
}
