/* Batch norm over the rows of an NHWC tensor viewed as [m_rows, c], with the ReLU fused in, as
 * torch.nn.BatchNorm2d (training: biased variance to normalise, unbiased into the running
 * variance; https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html). Statistics use
 * Welford's update per thread and Chan et al.'s pairwise combination across threads and blocks,
 * in a fixed order, so there is no E[x²] - E[x]² cancellation and no run-to-run variation. The
 * plan (shapes, scratch) is in src/backend/cuda/bn.c. */
#include "kcommon.cuh"

enum { COLS = 32, ROWS = 8 };   /* a block: 32 channels x 8 row lanes */

struct welford { float n, mean, m2; };

__device__ __forceinline__ welford welford_merge(welford a, welford b) {
    float n = a.n + b.n;
    if (n == 0.f) return a;
    float delta = b.mean - a.mean;
    float fb = b.n / n;
    welford r = {n, a.mean + delta * fb, a.m2 + b.m2 + delta * delta * a.n * fb};
    return r;
}

/* partial[by][0..2][c] = (count, mean, m2) of the rows by*ROWS + ty + k*gridDim.y*ROWS. */
template <typename T>
__global__ void stats_kernel(float *partial, const T *x, int64_t m_rows, int c) {
    __shared__ welford sh[ROWS][COLS];
    int ch = blockIdx.x * COLS + threadIdx.x;
    welford acc = {0.f, 0.f, 0.f};
    if (ch < c) {
        for (int64_t r = (int64_t)blockIdx.y * ROWS + threadIdx.y; r < m_rows;
             r += (int64_t)gridDim.y * ROWS) {
            float v = tw_ld(x, (size_t)r * c + ch);
            acc.n += 1.f;
            float delta = v - acc.mean;
            acc.mean += delta / acc.n;
            acc.m2 += delta * (v - acc.mean);
        }
    }
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && ch < c) {
        for (int k = 1; k < ROWS; k++) acc = welford_merge(acc, sh[k][threadIdx.x]);
        float *p = partial + (size_t)blockIdx.y * 3 * c;
        p[ch] = acc.n;
        p[c + ch] = acc.mean;
        p[2 * c + ch] = acc.m2;
    }
}

/* Combines the row blocks' statistics; coef = [scale, shift] for the apply kernel. */
__global__ void finalize_kernel(float *save_mean, float *save_var, float *coef,
                                const float *partial, int n_blocks, const float *gamma,
                                const float *beta, float *run_mean, float *run_var, int c,
                                float eps, float momentum) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    welford acc = {0.f, 0.f, 0.f};
    for (int b = 0; b < n_blocks; b++) {
        const float *p = partial + (size_t)b * 3 * c;
        welford w = {p[ch], p[c + ch], p[2 * c + ch]};
        acc = welford_merge(acc, w);
    }
    float var = acc.m2 / acc.n;
    save_mean[ch] = acc.mean;
    save_var[ch] = var;
    float unbiased = acc.n > 1.f ? acc.m2 / (acc.n - 1.f) : var;
    run_mean[ch] = (1.f - momentum) * run_mean[ch] + momentum * acc.mean;
    run_var[ch] = (1.f - momentum) * run_var[ch] + momentum * unbiased;
    float scale = gamma[ch] * rsqrtf(var + eps);
    coef[ch] = scale;
    coef[c + ch] = beta[ch] - acc.mean * scale;
}

__global__ void eval_coef_kernel(float *coef, const float *gamma, const float *beta,
                                 const float *run_mean, const float *run_var, int c, float eps) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    float scale = gamma[ch] * rsqrtf(run_var[ch] + eps);
    coef[ch] = scale;
    coef[c + ch] = beta[ch] - run_mean[ch] * scale;
}

/* y = relu?(x scale + shift). The grid stride is a multiple of 32, so each warp covers 32
 * consecutive elements and one ballot gives one mask word. */
template <typename T>
__global__ void apply_kernel(T *y, uint32_t *mask, const T *x, const float *coef, int64_t m_rows,
                             int c, int relu) {
    size_t total = (size_t)m_rows * c;
    size_t rounded = (total + 31) / 32 * 32;
    for (size_t i = tw_gtid(); i < rounded; i += tw_gstride()) {
        int valid = i < total;
        float v = 0.f;
        if (valid) {
            int ch = (int)(i % c);
            v = tw_ld(x, i) * coef[ch] + coef[c + ch];
        }
        int keep = v > 0.f;
        if (relu) {
            unsigned bits = __ballot_sync(0xffffffffu, valid && keep);
            if (mask && (threadIdx.x & 31) == 0) mask[i / 32] = bits;
            if (!keep && v == v) v = 0.f;   /* NaN stays NaN, as torch's relu */
        }
        if (valid) tw_st(y, i, v);
    }
}

__device__ __forceinline__ float masked_dy(float dy, const uint32_t *mask, size_t i) {
    return (mask && !((mask[i / 32] >> (i % 32)) & 1u)) ? 0.f : dy;
}

/* partial[by][0..1][c] = (Σ dy', Σ dy' x̂) over this row block. */
template <typename T>
__global__ void bwd_reduce_kernel(float *partial, const T *dy, const T *x, const uint32_t *mask,
                                  const float *mean, const float *var, int64_t m_rows, int c,
                                  float eps) {
    __shared__ float sh[2][ROWS][COLS];
    int ch = blockIdx.x * COLS + threadIdx.x;
    float s_dy = 0.f, s_dyx = 0.f;
    if (ch < c) {
        float mu = mean[ch], inv_std = rsqrtf(var[ch] + eps);
        for (int64_t r = (int64_t)blockIdx.y * ROWS + threadIdx.y; r < m_rows;
             r += (int64_t)gridDim.y * ROWS) {
            size_t i = (size_t)r * c + ch;
            float g = masked_dy(tw_ld(dy, i), mask, i);
            s_dy += g;
            s_dyx += g * (tw_ld(x, i) - mu) * inv_std;
        }
    }
    sh[0][threadIdx.y][threadIdx.x] = s_dy;
    sh[1][threadIdx.y][threadIdx.x] = s_dyx;
    __syncthreads();
    if (threadIdx.y == 0 && ch < c) {
        for (int k = 1; k < ROWS; k++) {
            s_dy += sh[0][k][threadIdx.x];
            s_dyx += sh[1][k][threadIdx.x];
        }
        float *p = partial + (size_t)blockIdx.y * 2 * c;
        p[ch] = s_dy;
        p[c + ch] = s_dyx;
    }
}

__global__ void bwd_finalize_kernel(float *dgamma, float *dbeta, const float *partial,
                                    int n_blocks, int c) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    float s_dy = 0.f, s_dyx = 0.f;
    for (int b = 0; b < n_blocks; b++) {
        s_dy += partial[(size_t)b * 2 * c + ch];
        s_dyx += partial[(size_t)b * 2 * c + c + ch];
    }
    dbeta[ch] = s_dy;
    dgamma[ch] = s_dyx;
}

/* dx = γ inv_std (dy' - Σdy'/M - x̂ Σdy'x̂/M). */
template <typename T>
__global__ void bwd_apply_kernel(T *dx, const T *dy, const T *x, const uint32_t *mask,
                                 const float *mean, const float *var, const float *gamma,
                                 const float *dgamma, const float *dbeta, int64_t m_rows, int c,
                                 float eps) {
    size_t total = (size_t)m_rows * c;
    float inv_m = 1.f / (float)m_rows;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        int ch = (int)(i % c);
        float inv_std = rsqrtf(var[ch] + eps);
        float xhat = (tw_ld(x, i) - mean[ch]) * inv_std;
        float g = masked_dy(tw_ld(dy, i), mask, i);
        tw_st(dx, i, gamma[ch] * inv_std * (g - dbeta[ch] * inv_m - xhat * dgamma[ch] * inv_m));
    }
}

static dim3 row_grid(int c) { return dim3((c + COLS - 1) / COLS, TW_K_BN_ROW_BLOCKS); }

extern "C" cudaError_t tw_k_bn_forward_train(cudaStream_t s, unsigned grid, void *y,
                                             float *save_mean, float *save_var, uint32_t *mask,
                                             float *partial, float *coef, const void *x,
                                             const float *gamma, const float *beta,
                                             float *run_mean, float *run_var, int bf16,
                                             int64_t m_rows, int c, int relu, float eps,
                                             float momentum) {
    TW_K_DISPATCH(bf16, T, {
        stats_kernel<T><<<row_grid(c), dim3(COLS, ROWS), 0, s>>>(partial, (const T *)x, m_rows, c);
        finalize_kernel<<<(c + 127) / 128, 128, 0, s>>>(save_mean, save_var, coef, partial,
                                                        TW_K_BN_ROW_BLOCKS, gamma, beta, run_mean,
                                                        run_var, c, eps, momentum);
        apply_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)y, mask, (const T *)x, coef, m_rows, c,
                                                      relu);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_bn_forward_eval(cudaStream_t s, unsigned grid, void *y, float *coef,
                                            const void *x, const float *gamma, const float *beta,
                                            const float *run_mean, const float *run_var, int bf16,
                                            int64_t m_rows, int c, int relu, float eps) {
    eval_coef_kernel<<<(c + 127) / 128, 128, 0, s>>>(coef, gamma, beta, run_mean, run_var, c, eps);
    TW_K_DISPATCH(bf16, T, {
        apply_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)y, NULL, (const T *)x, coef, m_rows, c,
                                                      relu);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_bn_backward(cudaStream_t s, unsigned grid, void *dx, float *dgamma,
                                        float *dbeta, float *partial, const void *dy,
                                        const void *x, const uint32_t *mask,
                                        const float *save_mean, const float *save_var,
                                        const float *gamma, int bf16, int64_t m_rows, int c,
                                        float eps) {
    TW_K_DISPATCH(bf16, T, {
        bwd_reduce_kernel<T><<<row_grid(c), dim3(COLS, ROWS), 0, s>>>(
            partial, (const T *)dy, (const T *)x, mask, save_mean, save_var, m_rows, c, eps);
        bwd_finalize_kernel<<<(c + 127) / 128, 128, 0, s>>>(dgamma, dbeta, partial,
                                                            TW_K_BN_ROW_BLOCKS, c);
        bwd_apply_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)dx, (const T *)dy, (const T *)x,
                                                          mask, save_mean, save_var, gamma, dgamma,
                                                          dbeta, m_rows, c, eps);
    });
    return cudaGetLastError();
}
