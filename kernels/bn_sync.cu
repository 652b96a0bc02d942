/* Batch norm with its statistics computed outside (the synchronised BN, backend.h: tw_bn_sums
 * ...) over the rows of an NHWC tensor viewed as [m_rows, c]: per-channel sums of x - shift and
 * their squares, or of dy' and dy' (x - mean), in double per thread, combined over the row lanes
 * and then the row blocks in a fixed order (deterministic); the global statistics from the
 * all-reduced sums and the running statistics' update, one thread per channel; and the
 * element-wise normalisation and backward. Nothing goes through the host. The plan is
 * src/backend/cuda/bn.c. */
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

/* sums = the row blocks' partials added in order, the second half times scale[ch] when given;
 * with dgamma/dbeta also those as f32 (accumulate: added). */
__global__ void sums_finalize_kernel(double *sums, float *dgamma, float *dbeta, int accumulate,
                                     const double *partial, int n_blocks, int c, const float *scale) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double a = 0.0, b = 0.0;
    for (int k = 0; k < n_blocks; k++) {
        a += partial[(size_t)k * 2 * c + ch];
        b += partial[(size_t)k * 2 * c + c + ch];
    }
    if (scale) b *= scale[ch];
    sums[ch] = a;
    sums[c + ch] = b;
    if (!dgamma) return;
    dbeta[ch] = (float)(accumulate ? dbeta[ch] + a : a);
    dgamma[ch] = (float)(accumulate ? dgamma[ch] + b : b);
}

/* The global statistics from the global sums (one thread per channel). */
__global__ void stats_finish_kernel(float *mean, float *inv_std, double *stats, int *bad,
                                    const double *sums, const float *shift, int c, double n_global,
                                    float eps) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double s1 = sums[ch] / n_global, var = sums[c + ch] / n_global - s1 * s1;
    if (var < 0.0) var = 0.0;   /* rounding; NaN stays NaN */
    double m = shift[ch] + s1;
    stats[ch] = m;
    stats[c + ch] = var;
    mean[ch] = (float)m;
    inv_std[ch] = (float)(1.0 / sqrt(var + (double)eps));
    if (!isfinite(m) || !isfinite(var)) *bad = 1;
}

__global__ void running_update_kernel(float *run_mean, float *run_var, const double *stats, int c,
                                      float momentum, double unbias, const int *skip) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c || (skip && *skip)) return;
    double m = momentum;
    run_mean[ch] = (float)((1.0 - m) * run_mean[ch] + m * stats[ch]);
    run_var[ch] = (float)((1.0 - m) * run_var[ch] + m * stats[c + ch] * unbias);
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
                                 const float *inv_std, const float *gamma, const double *sums,
                                 double n_global, int64_t m_rows, int c, int relu) {
    size_t total = (size_t)m_rows * c;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        int ch = (int)(i % c);
        float s = inv_std[ch], A = (gamma ? gamma[ch] : 1.f) * s;
        float s1 = (float)(sums[ch] / n_global), s2 = (float)(sums[c + ch] / n_global);
        float d = relu && !(tw_ld(y, i) > 0.f) ? 0.f : tw_ld(dy, i);
        tw_st(dx, i, A * (d - s * s2 * (tw_ld(x, i) - mean[ch]) - s1));
    }
}

static dim3 row_grid(int c) { return dim3((c + COLS - 1) / COLS, TW_K_BN_ROW_BLOCKS); }

extern "C" cudaError_t tw_k_bn_sums(cudaStream_t s, double *sums, double *partial, float *dgamma,
                                    float *dbeta, int accumulate, const void *x, const void *dy,
                                    const void *y, const float *ref, const float *scale, int bf16,
                                    int64_t m_rows, int c, int grad, int relu) {
    TW_K_DISPATCH(bf16, T, {
        sums_kernel<T><<<row_grid(c), dim3(COLS, ROWS), 0, s>>>(
            partial, (const T *)x, (const T *)dy, (const T *)y, ref, m_rows, c, grad, relu);
    });
    sums_finalize_kernel<<<(c + 127) / 128, 128, 0, s>>>(sums, dgamma, dbeta, accumulate, partial,
                                                         TW_K_BN_ROW_BLOCKS, c, scale);
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_bn_stats_finish(cudaStream_t s, float *mean, float *inv_std,
                                            double *stats, int *bad, const double *sums,
                                            const float *shift, int c, double n_global, float eps) {
    stats_finish_kernel<<<(c + 127) / 128, 128, 0, s>>>(mean, inv_std, stats, bad, sums, shift, c,
                                                        n_global, eps);
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_bn_running_update(cudaStream_t s, float *run_mean, float *run_var,
                                              const double *stats, int c, float momentum,
                                              double unbias, const int *skip) {
    running_update_kernel<<<(c + 127) / 128, 128, 0, s>>>(run_mean, run_var, stats, c, momentum,
                                                          unbias, skip);
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
                                              const float *gamma, const double *sums,
                                              double n_global, int bf16, int64_t m_rows, int c,
                                              int relu) {
    TW_K_DISPATCH(bf16, T, {
        bwd_stats_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)dx, (const T *)dy, (const T *)x,
                                                          (const T *)y, mean, inv_std, gamma, sums,
                                                          n_global, m_rows, c, relu);
    });
    return cudaGetLastError();
}
