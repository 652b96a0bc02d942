/* Pooling kernels: ResNet's 3x3 / 2 max pool with padding 1 on NHWC (NaN propagates, as in
 * torch.nn.MaxPool2d; the backward gathers instead of scattering, so it needs no atomics and is
 * deterministic), and the global average pool on NHWC or NCHW. Plans are in
 * src/backend/cuda/pool.c. */
#include "kcommon.cuh"

template <typename T>
__global__ void maxpool_fwd_kernel(T *y, uint8_t *argmax, const T *x, int n, int c, int h, int w,
                                   int oh, int ow) {
    size_t total = (size_t)n * oh * ow * c;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        size_t t = i;
        int ci = (int)(t % c); t /= c;
        int oj = (int)(t % ow); t /= ow;
        int oi = (int)(t % oh);
        int ni = (int)(t / oh);
        float best = -INFINITY;
        int best_k = -1;
        for (int k = 0; k < 9; k++) {
            int hi = oi * 2 - 1 + k / 3, wi = oj * 2 - 1 + k % 3;
            if (hi < 0 || hi >= h || wi < 0 || wi >= w) continue;
            float v = tw_ld(x, (((size_t)ni * h + hi) * w + wi) * c + ci);
            if (best_k < 0 || v > best || (v != v && best == best)) {
                best = v;
                best_k = k;
            }
        }
        tw_st(y, i, best);
        argmax[i] = (uint8_t)best_k;
    }
}

/* dx[h, w] = Σ over the (at most 2 x 2) windows that contain (h, w) and chose it. */
template <typename T>
__global__ void maxpool_bwd_kernel(T *dx, const T *dy, const uint8_t *argmax, int n, int c, int h,
                                   int w, int oh, int ow) {
    size_t total = (size_t)n * h * w * c;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        size_t t = i;
        int ci = (int)(t % c); t /= c;
        int wi = (int)(t % w); t /= w;
        int hi = (int)(t % h);
        int ni = (int)(t / h);
        float acc = 0.f;
        /* Output row oi covers input rows 2 oi - 1 .. 2 oi + 1, so oi is hi / 2 or (hi + 1) / 2. */
        int oi_lo = hi / 2, oi_hi = (hi + 1) / 2;
        int oj_lo = wi / 2, oj_hi = (wi + 1) / 2;
        for (int oi = oi_lo; oi <= oi_hi && oi < oh; oi++) {
            for (int oj = oj_lo; oj <= oj_hi && oj < ow; oj++) {
                size_t o = (((size_t)ni * oh + oi) * ow + oj) * c + ci;
                int k = (hi - (oi * 2 - 1)) * 3 + (wi - (oj * 2 - 1));
                if (argmax[o] == k) acc += tw_ld(dy, o);
            }
        }
        tw_st(dx, i, acc);
    }
}

extern "C" cudaError_t tw_k_maxpool_forward(cudaStream_t s, unsigned grid, void *y,
                                            uint8_t *argmax, const void *x, int bf16, int n, int c,
                                            int h, int w, int oh, int ow) {
    TW_K_DISPATCH(bf16, T, {
        maxpool_fwd_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)y, argmax, (const T *)x, n, c, h,
                                                            w, oh, ow);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_maxpool_backward(cudaStream_t s, unsigned grid, void *dx,
                                             const void *dy, const uint8_t *argmax, int bf16,
                                             int n, int c, int h, int w, int oh, int ow) {
    TW_K_DISPATCH(bf16, T, {
        maxpool_bwd_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)dx, (const T *)dy, argmax, n, c,
                                                            h, w, oh, ow);
    });
    return cudaGetLastError();
}

/* One thread per (n, c); NHWC reads are coalesced across c, NCHW reads walk one plane. */
template <typename T>
__global__ void avgpool_fwd_kernel(float *y, const T *x, int nhwc, int n, int c, int h, int w) {
    size_t nc = (size_t)n * c, hw = (size_t)h * w;
    for (size_t i = tw_gtid(); i < nc; i += tw_gstride()) {
        size_t ni = i / c, ci = i % c;
        float acc = 0.f;
        for (size_t p = 0; p < hw; p++)
            acc += tw_ld(x, nhwc ? (ni * hw + p) * c + ci : i * hw + p);
        y[i] = acc / (float)hw;
    }
}

template <typename T>
__global__ void avgpool_bwd_kernel(T *dx, const float *dy, int nhwc, int n, int c, int h, int w) {
    size_t hw = (size_t)h * w, total = (size_t)n * c * hw;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        size_t nc = nhwc ? (i / (hw * c)) * c + i % c : i / hw;
        tw_st(dx, i, dy[nc] / (float)hw);
    }
}

extern "C" cudaError_t tw_k_avgpool_forward(cudaStream_t s, float *y, const void *x, int bf16,
                                            int nhwc, int n, int c, int h, int w) {
    unsigned grid = (unsigned)(((size_t)n * c + TW_K_THREADS - 1) / TW_K_THREADS);
    TW_K_DISPATCH(bf16, T, {
        avgpool_fwd_kernel<T><<<grid, TW_K_THREADS, 0, s>>>(y, (const T *)x, nhwc, n, c, h, w);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_avgpool_backward(cudaStream_t s, unsigned grid, void *dx,
                                             const float *dy, int bf16, int nhwc, int n, int c,
                                             int h, int w) {
    TW_K_DISPATCH(bf16, T, {
        avgpool_bwd_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)dx, dy, nhwc, n, c, h, w);
    });
    return cudaGetLastError();
}
