/* Kernels of the inference-mode batch norm backward (src/backend/cuda/bn_eval.c) on NHWC or NCHW
 * activations, f32 or bf16. */
#include "kcommon.cuh"

/* Element (row, ch) of an activation viewed as [m_rows = n h w, c]: NHWC is that matrix; NCHW
 * keeps each image's channel planes of hw values. */
__device__ __forceinline__ size_t bn_index(int64_t row, int ch, int c, int64_t hw, int nhwc) {
    if (nhwc) return (size_t)row * c + ch;
    int64_t img = row / hw, s = row % hw;
    return ((size_t)img * c + ch) * hw + s;
}

template <typename T>
__global__ void bn_bwd_eval_dx_kernel(T *dx, const T *dy, const T *y, const float *gamma,
                                      const float *run_var, int64_t m_rows, int c, int64_t hw,
                                      int nhwc, float eps) {
    size_t total = (size_t)m_rows * c;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        int ch = nhwc ? (int)(i % c) : (int)((i / hw) % c);
        float d = tw_ld(dy, i);
        if (y && !(tw_ld(y, i) > 0.f)) d = 0.f;
        tw_st(dx, i, gamma[ch] * rsqrtf(run_var[ch] + eps) * d);
    }
}

/* Block (32 channels x 16 row lanes); each lane sums its rows in order, then the 16 lane sums
 * are added in a fixed order: deterministic. */
enum { BN_CH = 32, BN_LANES = 16 };

template <typename T>
__global__ void bn_bwd_eval_w_kernel(float *dgamma, float *dbeta, const T *dy, const T *x,
                                     const T *y, const float *run_mean, const float *run_var,
                                     int64_t m_rows, int c, int64_t hw, int nhwc, float eps) {
    __shared__ double s_dy[BN_LANES][BN_CH], s_dyx[BN_LANES][BN_CH];
    int ch = blockIdx.x * BN_CH + threadIdx.x;
    double a = 0.0, b = 0.0;
    if (ch < c) {
        double mean = run_mean[ch];
        for (int64_t r = threadIdx.y; r < m_rows; r += BN_LANES) {
            size_t i = bn_index(r, ch, c, hw, nhwc);
            if (y && !(tw_ld(y, i) > 0.f)) continue;
            double d = tw_ld(dy, i);
            a += d;
            b += d * ((double)tw_ld(x, i) - mean);
        }
    }
    s_dy[threadIdx.y][threadIdx.x] = a;
    s_dyx[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && ch < c) {
        for (int l = 1; l < BN_LANES; l++) {
            a += s_dy[l][threadIdx.x];
            b += s_dyx[l][threadIdx.x];
        }
        dbeta[ch] = (float)a;
        dgamma[ch] = (float)(b / sqrt((double)run_var[ch] + (double)eps));
    }
}

extern "C" cudaError_t tw_k_bn_backward_eval(cudaStream_t s, unsigned grid, void *dx,
                                             float *dgamma, float *dbeta, const void *dy,
                                             const void *x, const void *y, const float *gamma,
                                             const float *run_mean, const float *run_var,
                                             int bf16, int64_t m_rows, int c, int64_t hw,
                                             int nhwc, float eps) {
    TW_K_DISPATCH(bf16, T, {
        bn_bwd_eval_dx_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)dx, (const T *)dy,
                                                               (const T *)y, gamma, run_var,
                                                               m_rows, c, hw, nhwc, eps);
        if (dgamma) {
            dim3 block(BN_CH, BN_LANES);
            bn_bwd_eval_w_kernel<T><<<(c + BN_CH - 1) / BN_CH, block, 0, s>>>(
                dgamma, dbeta, (const T *)dy, (const T *)x, (const T *)y, run_mean, run_var,
                m_rows, c, hw, nhwc, eps);
        }
    });
    return cudaGetLastError();
}
