/* Optimizer updates over the flat f32 parameter buffer: one grid row of TW_K_SEG_BLOCKS blocks per
 * parameter segment, so one launch updates the whole model. Formulas follow torch.optim.Adam /
 * AdamW and torch.optim.SGD (non-foreach paths) and the LARS of facebookresearch/barlowtwins
 * (main.py); 1-D segments (biases, BN) get no weight decay and no LARS adaptation. The segment
 * table and the host-side hyperparameter arithmetic are in src/backend/cuda/optim.c. */
#include "kcommon.cuh"

#define SEG_LOOP(i, seg)                                                                  \
    for (size_t i = (seg).offset + (size_t)blockIdx.x * blockDim.x + threadIdx.x;          \
         i < (seg).offset + (seg).n_elems; i += (size_t)gridDim.x * blockDim.x)

/* The step's values are read from device memory (a recorded step replays with each step's), and
 * a raised skip flag (a non-finite loss, statistic or gradient) leaves everything as it was. */
__global__ void adam_kernel(float *p, float *m, float *v, const float *g, const tw_k_seg *segs,
                            const tw_k_vals *vals, const int *skip, float one_minus_beta1,
                            float beta2, float one_minus_beta2, float eps, float weight_decay,
                            int decoupled) {
    if (skip && *skip) return;
    tw_k_seg seg = segs[blockIdx.y];
    const float step_size = vals->step_size, bias_corr2_sqrt = vals->bc2_sqrt;
    const float l2 = seg.is_1d || decoupled ? 0.f : weight_decay;
    const float shrink = seg.is_1d ? 1.f : vals->shrink;
    SEG_LOOP(i, seg) {
        float pi = p[i] * shrink, gi = g[i] + l2 * pi;
        float mi = m[i] + one_minus_beta1 * (gi - m[i]);   /* torch: exp_avg.lerp_(grad, 1 - beta1) */
        float vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (sqrtf(vi) / bias_corr2_sqrt + eps));
    }
}

extern "C" cudaError_t tw_k_adam(cudaStream_t s, float *p, float *m, float *v, const float *g,
                                 const tw_k_seg *segs, int n_segs, const tw_k_vals *vals,
                                 const int *skip, float one_minus_beta1, float beta2,
                                 float one_minus_beta2, float eps, float weight_decay,
                                 int decoupled) {
    adam_kernel<<<dim3(TW_K_SEG_BLOCKS, n_segs), TW_K_THREADS, 0, s>>>(
        p, m, v, g, segs, vals, skip, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
        decoupled);
    return cudaGetLastError();
}

__global__ void sgd_kernel(float *p, float *mu, const float *g, const tw_k_seg *segs,
                           const tw_k_vals *vals, const int *skip, float momentum,
                           float weight_decay, int nesterov) {
    if (skip && *skip) return;
    tw_k_seg seg = segs[blockIdx.y];
    const float lr = vals->lr;
    float wd = seg.is_1d ? 0.f : weight_decay;
    SEG_LOOP(i, seg) {
        float gi = g[i] + wd * p[i];
        if (momentum != 0.f) {
            float b = momentum * mu[i] + gi;   /* dampening 0; a zero buffer makes step 1 b = g */
            mu[i] = b;
            gi = nesterov ? gi + momentum * b : b;
        }
        p[i] -= lr * gi;
    }
}

extern "C" cudaError_t tw_k_sgd(cudaStream_t s, float *p, float *mu, const float *g,
                                const tw_k_seg *segs, int n_segs, const tw_k_vals *vals,
                                const int *skip, float momentum, float weight_decay,
                                int nesterov) {
    sgd_kernel<<<dim3(TW_K_SEG_BLOCKS, n_segs), TW_K_THREADS, 0, s>>>(p, mu, g, segs, vals, skip,
                                                                     momentum, weight_decay,
                                                                     nesterov);
    return cudaGetLastError();
}

/* partial[seg][block] = (Σ p², Σ (g + wd p)²) over this block's share of the segment. */
__global__ void lars_norms_kernel(float *partial, const float *p, const float *g,
                                  const tw_k_seg *segs, const int *skip, float weight_decay) {
    __shared__ float sh[2][TW_K_THREADS];
    if (skip && *skip) return;
    tw_k_seg seg = segs[blockIdx.y];
    float wd = seg.is_1d ? 0.f : weight_decay;
    float pp = 0.f, uu = 0.f;
    SEG_LOOP(i, seg) {
        float u = g[i] + wd * p[i];
        pp += p[i] * p[i];
        uu += u * u;
    }
    sh[0][threadIdx.x] = pp;
    sh[1][threadIdx.x] = uu;
    __syncthreads();
    for (int k = TW_K_THREADS / 2; k > 0; k /= 2) {
        if (threadIdx.x < k) {
            sh[0][threadIdx.x] += sh[0][threadIdx.x + k];
            sh[1][threadIdx.x] += sh[1][threadIdx.x + k];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        float *out = partial + ((size_t)blockIdx.y * gridDim.x + blockIdx.x) * 2;
        out[0] = sh[0][0];
        out[1] = sh[1][0];
    }
}

__global__ void lars_update_kernel(float *p, float *mu, const float *partial, const float *g,
                                   const tw_k_seg *segs, const tw_k_vals *vals, const int *skip,
                                   float momentum, float weight_decay, float eta) {
    if (skip && *skip) return;
    tw_k_seg seg = segs[blockIdx.y];
    const float lr = vals->lr;
    float wd = seg.is_1d ? 0.f : weight_decay;
    float q = 1.f;
    if (!seg.is_1d) {
        float pp = 0.f, uu = 0.f;
        const float *part = partial + (size_t)blockIdx.y * gridDim.x * 2;
        for (unsigned b = 0; b < gridDim.x; b++) {   /* every block sums in the same order */
            pp += part[2 * b];
            uu += part[2 * b + 1];
        }
        float p_norm = sqrtf(pp), u_norm = sqrtf(uu);
        if (p_norm > 0.f && u_norm > 0.f) q = eta * p_norm / u_norm;
    }
    SEG_LOOP(i, seg) {
        float u = (g[i] + wd * p[i]) * q;
        float b = momentum * mu[i] + u;
        mu[i] = b;
        p[i] -= lr * b;
    }
}

extern "C" cudaError_t tw_k_lars(cudaStream_t s, float *p, float *mu, float *partial,
                                 const float *g, const tw_k_seg *segs, int n_segs,
                                 const tw_k_vals *vals, const int *skip, float momentum,
                                 float weight_decay, float eta) {
    dim3 grid(TW_K_SEG_BLOCKS, n_segs);
    lars_norms_kernel<<<grid, TW_K_THREADS, 0, s>>>(partial, p, g, segs, skip, weight_decay);
    lars_update_kernel<<<grid, TW_K_THREADS, 0, s>>>(p, mu, partial, g, segs, vals, skip,
                                                     momentum, weight_decay, eta);
    return cudaGetLastError();
}
