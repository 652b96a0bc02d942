/* Batch norm with its statistics computed outside (the synchronised backbone BN, backend.h:
 * tw_bn_sums ...) over the rows of an NHWC tensor viewed as [m_rows, c]: per-channel sums of
 * x - shift and their squares, or of dy' and dy' (x - mean), in double per thread, combined over
 * the row lanes and then the row blocks in a fixed order (deterministic); and the element-wise
 * normalisation and backward with the statistics given. The plan is src/backend/cuda/bn.c. */
#include "kcommon.cuh"

enum { COLS = 32, ROWS = 8 };   /* a block: 32 channels x 8 row lanes */

/* partial[by][0..1][c] = the two sums over this row block's rows. grad = 0: v = x - ref,
 * (v, v²); grad = 1: d = dy' (dy where y > 0 when relu), (d, d (x - ref)). */
template <typename T>
__global__ void sums_kernel(double *partial, const T *x, const T *dy, const T *y,
                            const float *ref, int64_t m_rows, int c, int grad, int relu) {
    __shared__ double sh[2][ROWS][COLS];
    int ch = blockIdx.x * COLS + threadIdx.x;
    double a = 0.0, b = 0.0;
    if (ch < c) {
        double r0 = ref[ch];
        for (int64_t r = (int64_t)blockIdx.y * ROWS + threadIdx.y; r < m_rows;
             r += (int64_t)gridDim.y * ROWS) {
            size_t i = (size_t)r * c + ch;
            double v = (double)tw_ld(x, i) - r0;
            if (!grad) {
                a += v;
                b += v * v;
                continue;
            }
            double d = relu && !(tw_ld(y, i) > 0.f) ? 0.0 : (double)tw_ld(dy, i);
            a += d;
            b += d * v;
        }
    }
    sh[0][threadIdx.y][threadIdx.x] = a;
    sh[1][threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && ch < c) {
        for (int k = 1; k < ROWS; k++) {
            a += sh[0][k][threadIdx.x];
            b += sh[1][k][threadIdx.x];
        }
        double *p = partial + (size_t)blockIdx.y * 2 * c;
        p[ch] = a;
        p[c + ch] = b;
    }
}

/* sums = the row blocks' partials added in order; the second half times scale[ch] when given. */
__global__ void sums_finalize_kernel(float *sums, const double *partial, int n_blocks, int c,
                                     const float *scale) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double a = 0.0, b = 0.0;
    for (int k = 0; k < n_blocks; k++) {
        a += partial[(size_t)k * 2 * c + ch];
        b += partial[(size_t)k * 2 * c + c + ch];
    }
    sums[ch] = (float)a;
    sums[c + ch] = (float)(scale ? b * scale[ch] : b);
}

/* y = relu?(gamma inv_std (x - mean) + beta) */
template <typename T>
__global__ void fwd_stats_kernel(T *y, const T *x, const float *mean, const float *inv_std,
                                 const float *gamma, const float *beta, int64_t m_rows, int c,
                                 int relu) {
    size_t total = (size_t)m_rows * c;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        int ch = (int)(i % c);
        float v = (gamma ? gamma[ch] : 1.f) * inv_std[ch] * (tw_ld(x, i) - mean[ch]) +
                  (beta ? beta[ch] : 0.f);
        if (relu && !(v > 0.f) && v == v) v = 0.f;   /* NaN stays NaN, as torch's relu */
        tw_st(y, i, v);
    }
}

/* dx = A dy' - B (x - mean) - C, A = gamma inv_std, B = A inv_std S2 / N, C = A S1 / N. */
template <typename T>
__global__ void bwd_stats_kernel(T *dx, const T *dy, const T *x, const T *y, const float *mean,
                                 const float *inv_std, const float *gamma, const float *sums,
                                 float n_global, int64_t m_rows, int c, int relu) {
    size_t total = (size_t)m_rows * c;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        int ch = (int)(i % c);
        float s = inv_std[ch], A = (gamma ? gamma[ch] : 1.f) * s;
        float d = relu && !(tw_ld(y, i) > 0.f) ? 0.f : tw_ld(dy, i);
        tw_st(dx, i, A * (d - s * sums[c + ch] / n_global * (tw_ld(x, i) - mean[ch]) -
                          sums[ch] / n_global));
    }
}

static dim3 row_grid(int c) { return dim3((c + COLS - 1) / COLS, TW_K_BN_ROW_BLOCKS); }

extern "C" cudaError_t tw_k_bn_sums(cudaStream_t s, float *sums, double *partial, const void *x,
                                    const void *dy, const void *y, const float *ref,
                                    const float *scale, int bf16, int64_t m_rows, int c, int grad,
                                    int relu) {
    TW_K_DISPATCH(bf16, T, {
        sums_kernel<T><<<row_grid(c), dim3(COLS, ROWS), 0, s>>>(
            partial, (const T *)x, (const T *)dy, (const T *)y, ref, m_rows, c, grad, relu);
    });
    sums_finalize_kernel<<<(c + 127) / 128, 128, 0, s>>>(sums, partial, TW_K_BN_ROW_BLOCKS, c, scale);
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_bn_forward_stats(cudaStream_t s, unsigned grid, void *y, const void *x,
                                             const float *mean, const float *inv_std,
                                             const float *gamma, const float *beta, int bf16,
                                             int64_t m_rows, int c, int relu) {
    TW_K_DISPATCH(bf16, T, {
        fwd_stats_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)y, (const T *)x, mean, inv_std,
                                                          gamma, beta, m_rows, c, relu);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_bn_backward_stats(cudaStream_t s, unsigned grid, void *dx,
                                              const void *dy, const void *x, const void *y,
                                              const float *mean, const float *inv_std,
                                              const float *gamma, const float *sums,
                                              float n_global, int bf16, int64_t m_rows, int c,
                                              int relu) {
    TW_K_DISPATCH(bf16, T, {
        bwd_stats_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)dx, (const T *)dy, (const T *)x,
                                                          (const T *)y, mean, inv_std, gamma, sums,
                                                          n_global, m_rows, c, relu);
    });
    return cudaGetLastError();
}
