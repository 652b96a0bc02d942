/* The losses' hot loops: Barlow Twins on the cross-correlation matrix (Zbontar et al. 2021,
 * eq. 1: Σ_i (t_i - c_ii)² + λ Σ_{i≠j} c_ij², t_i 1 for the first `common` dimensions and 0 after,
 * all times a scale) and multi-label BCE with logits (the log-sum-exp form
 * of torch.nn.BCEWithLogitsLoss, mean reduction). Each writes its gradient (=) and the loss to a
 * device f64, summed in a fixed order: per-thread f32 terms, f64 block sums, one final block. */
#include "kcommon.cuh"

/* Sums v over the block into thread 0's return value (f64, fixed order). */
__device__ double block_sum(double v) {
    __shared__ double sh[TW_K_THREADS];
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int k = TW_K_THREADS / 2; k > 0; k /= 2) {
        if (threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    return sh[0];
}

__global__ void final_sum_kernel(double *val, const double *partial, double scale) {
    double v = 0.0;
    for (int b = threadIdx.x; b < TW_K_RED_BLOCKS; b += TW_K_THREADS) v += partial[b];
    v = block_sum(v);
    if (threadIdx.x == 0) *val = v * scale;
}

__global__ void bt_loss_kernel(double *partial, float *dc, const float *c, int d, int common,
                               float lambda, float scale) {
    size_t total = (size_t)d * d;
    double acc = 0.0;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        float v = c[i];
        size_t row = i / d;
        if (row == i % d) {
            float t = row < (size_t)common ? 1.f : 0.f;
            acc += (double)((t - v) * (t - v));
            dc[i] = 2.f * scale * (v - t);
        } else {
            acc += (double)(lambda * v * v);
            dc[i] = 2.f * scale * lambda * v;
        }
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

extern "C" cudaError_t tw_k_bt_loss(cudaStream_t s, double *val, double *partial, float *dc,
                                    const float *c, int d, int common, float lambda, float scale) {
    bt_loss_kernel<<<TW_K_RED_BLOCKS, TW_K_THREADS, 0, s>>>(partial, dc, c, d, common, lambda, scale);
    final_sum_kernel<<<1, TW_K_THREADS, 0, s>>>(val, partial, (double)scale);
    return cudaGetLastError();
}

/* loss = max(x, 0) - x t + log(1 + exp(-|x|)); d/dx = sigmoid(x) - t. */
__global__ void bce_kernel(double *partial, float *dlogits, const float *logits,
                           const float *targets, size_t n) {
    double acc = 0.0;
    float inv_n = 1.f / (float)n;
    for (size_t i = tw_gtid(); i < n; i += tw_gstride()) {
        float x = logits[i], t = targets[i];
        acc += (double)(fmaxf(x, 0.f) - x * t + log1pf(expf(-fabsf(x))));
        float sig = 1.f / (1.f + expf(-x));
        dlogits[i] = (sig - t) * inv_n;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

extern "C" cudaError_t tw_k_bce_logits(cudaStream_t s, double *val, double *partial,
                                       float *dlogits, const float *logits, const float *targets,
                                       size_t n_elems) {
    bce_kernel<<<TW_K_RED_BLOCKS, TW_K_THREADS, 0, s>>>(partial, dlogits, logits, targets, n_elems);
    final_sum_kernel<<<1, TW_K_THREADS, 0, s>>>(val, partial, 1.0 / (double)n_elems);
    return cudaGetLastError();
}
