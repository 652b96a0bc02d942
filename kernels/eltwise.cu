/* Element-wise kernels of the CUDA backend: layout/dtype reorders, add (+ReLU), ReLU backward,
 * the convolution weight packing for cuDNN's NHWC filters, and the scale-and-check of gradients.
 * The ops that call them (shape checks, dispatch) are in src/backend/cuda/eltwise.c and conv.c. */
#include "kcommon.cuh"

template <typename TD, typename TS>
__global__ void reorder_kernel(TD *dst, int dst_nhwc, const TS *src, int src_nhwc, int n, int c,
                               int h, int w, int c_pad) {
    size_t total = (size_t)n * (dst_nhwc ? c_pad : c) * h * w;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        /* i walks dst; decode it in dst's layout, then find the same element in src's. */
        size_t r = i;
        int ci, hi, wi, ni;
        if (dst_nhwc) {
            ci = (int)(r % c_pad); r /= c_pad; wi = (int)(r % w); r /= w; hi = (int)(r % h); ni = (int)(r / h);
        } else {
            wi = (int)(r % w); r /= w; hi = (int)(r % h); r /= h; ci = (int)(r % c); ni = (int)(r / c);
        }
        if (ci >= c) {   /* a padding channel */
            tw_st(dst, i, 0.f);
            continue;
        }
        size_t j = src_nhwc ? (((size_t)ni * h + hi) * w + wi) * c_pad + ci
                            : (((size_t)ni * c + ci) * h + hi) * w + wi;
        tw_st(dst, i, tw_ld(src, j));
    }
}

extern "C" cudaError_t tw_k_reorder(cudaStream_t s, unsigned grid, void *dst, int dst_bf16,
                                    int dst_nhwc, const void *src, int src_bf16, int src_nhwc,
                                    int n, int c, int h, int w, int c_pad) {
    TW_K_DISPATCH(dst_bf16, TD, TW_K_DISPATCH(src_bf16, TS, {
        reorder_kernel<TD, TS><<<grid, TW_K_THREADS, 0, s>>>((TD *)dst, dst_nhwc, (const TS *)src,
                                                            src_nhwc, n, c, h, w, c_pad);
    }););
    return cudaGetLastError();
}

template <typename T>
__global__ void add_kernel(T *y, const T *a, const T *b, size_t n, int relu) {
    for (size_t i = tw_gtid(); i < n; i += tw_gstride()) {
        float v = tw_ld(a, i) + tw_ld(b, i);
        if (relu) v = v > 0.f ? v : (v != v ? v : 0.f);   /* NaN stays NaN, as torch's relu */
        tw_st(y, i, v);
    }
}

extern "C" cudaError_t tw_k_add(cudaStream_t s, unsigned grid, void *y, const void *a,
                                const void *b, size_t n_elems, int bf16, int relu) {
    TW_K_DISPATCH(bf16, T, {
        add_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)y, (const T *)a, (const T *)b, n_elems, relu);
    });
    return cudaGetLastError();
}

template <typename T>
__global__ void relu_backward_kernel(T *dx, const T *dy, const T *y, size_t n) {
    for (size_t i = tw_gtid(); i < n; i += tw_gstride())
        tw_st(dx, i, tw_ld(y, i) > 0.f ? tw_ld(dy, i) : 0.f);
}

extern "C" cudaError_t tw_k_relu_backward(cudaStream_t s, unsigned grid, void *dx, const void *dy,
                                          const void *y, size_t n_elems, int bf16) {
    TW_K_DISPATCH(bf16, T, {
        relu_backward_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)dx, (const T *)dy, (const T *)y,
                                                              n_elems);
    });
    return cudaGetLastError();
}

template <typename T>
__global__ void weight_pack_kernel(T *dst, const float *src, int k, int c, int r, int q,
                                   int c_pad) {
    size_t total = (size_t)k * c_pad * r * q;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        size_t t = i;   /* i walks dst [k, r, q, c_pad] */
        int ci = (int)(t % c_pad); t /= c_pad;
        int qi = (int)(t % q); t /= q;
        int ri = (int)(t % r);
        int ki = (int)(t / r);
        tw_st(dst, i, ci < c ? src[(((size_t)ki * c + ci) * r + ri) * q + qi] : 0.f);
    }
}

template <typename T>
__global__ void weight_unpack_kernel(float *dst, const T *src, int k, int c, int r, int q,
                                     int c_pad) {
    size_t total = (size_t)k * c * r * q;
    for (size_t i = tw_gtid(); i < total; i += tw_gstride()) {
        size_t t = i;   /* i walks dst [k, c, r, q] */
        int qi = (int)(t % q); t /= q;
        int ri = (int)(t % r); t /= r;
        int ci = (int)(t % c);
        int ki = (int)(t / c);
        dst[i] = tw_ld(src, (((size_t)ki * r + ri) * q + qi) * c_pad + ci);
    }
}

extern "C" cudaError_t tw_k_weight_pack(cudaStream_t s, unsigned grid, void *dst, int dst_bf16,
                                        const float *src, int k, int c, int r, int q, int c_pad) {
    TW_K_DISPATCH(dst_bf16, T, {
        weight_pack_kernel<T><<<grid, TW_K_THREADS, 0, s>>>((T *)dst, src, k, c, r, q, c_pad);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t tw_k_weight_unpack(cudaStream_t s, unsigned grid, float *dst,
                                          const void *src, int src_bf16, int k, int c, int r,
                                          int q, int c_pad) {
    TW_K_DISPATCH(src_bf16, T, {
        weight_unpack_kernel<T><<<grid, TW_K_THREADS, 0, s>>>(dst, (const T *)src, k, c, r, q,
                                                              c_pad);
    });
    return cudaGetLastError();
}

__global__ void scale_check_kernel(int *flag, float *x, size_t n, float a) {
    int bad = 0;
    for (size_t i = tw_gtid(); i < n; i += tw_gstride()) {
        float v = x[i];
        bad |= !isfinite(v);
        x[i] = v * a;
    }
    if (__syncthreads_or(bad) && threadIdx.x == 0) atomicOr(flag, 1);
}

extern "C" cudaError_t tw_k_scale_check(cudaStream_t s, unsigned grid, int *flag, float *x,
                                        size_t n, float a) {
    scale_check_kernel<<<grid, TW_K_THREADS, 0, s>>>(flag, x, n, a);
    return cudaGetLastError();
}

__global__ void read_flag_kernel(double *out, const int *flag) { *out = *flag != 0 ? 1.0 : 0.0; }

extern "C" cudaError_t tw_k_read_flag(cudaStream_t s, double *out, const int *flag) {
    read_flag_kernel<<<1, 1, 0, s>>>(out, flag);
    return cudaGetLastError();
}
