/* Device helpers shared by the kernels in kernels/: f32/bf16 loads and stores (bf16 rounded to
 * nearest even, as torch does) and grid-stride loop bounds. Kernel files include only this and
 * tw_kernels.h. */
#ifndef TW_KCOMMON_CUH
#define TW_KCOMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "tw_kernels.h"

template <typename T> __device__ __forceinline__ float tw_ld(const T *p, size_t i);
template <> __device__ __forceinline__ float tw_ld<float>(const float *p, size_t i) { return p[i]; }
template <> __device__ __forceinline__ float tw_ld<__nv_bfloat16>(const __nv_bfloat16 *p, size_t i) {
    return __bfloat162float(p[i]);
}

template <typename T> __device__ __forceinline__ void tw_st(T *p, size_t i, float v);
template <> __device__ __forceinline__ void tw_st<float>(float *p, size_t i, float v) { p[i] = v; }
template <> __device__ __forceinline__ void tw_st<__nv_bfloat16>(__nv_bfloat16 *p, size_t i, float v) {
    p[i] = __float2bfloat16_rn(v);
}

__device__ __forceinline__ size_t tw_gtid() { return (size_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ size_t tw_gstride() { return (size_t)gridDim.x * blockDim.x; }

/* Dispatches a templated launch on the dtype flag: TW_K_DISPATCH(bf16, T, { body using T }). */
#define TW_K_DISPATCH(bf16, T, ...)                   \
    do {                                              \
        if (bf16) {                                   \
            typedef __nv_bfloat16 T;                  \
            __VA_ARGS__                               \
        } else {                                      \
            typedef float T;                          \
            __VA_ARGS__                               \
        }                                             \
    } while (0)

#endif
