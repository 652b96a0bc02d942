/* Element types shared by tensors, shards and checkpoints, with bf16 <-> f32 conversion. */
#ifndef TW_DTYPE_H
#define TW_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* TW_F64 is for collectives only (the synchronised BN's sums); no tensor or shard holds it. */
typedef enum { TW_F32, TW_BF16, TW_F16, TW_I64, TW_I32, TW_U16, TW_U8, TW_F64 } tw_dtype;

size_t tw_dtype_size(tw_dtype t);
const char *tw_dtype_name(tw_dtype t);   /* safetensors names: "F32", "BF16", ... */

/* Round to nearest even, as torch and oneDNN do; a NaN stays a NaN. Written without a branch so
 * that the CPU backend's element-wise loops vectorise. */
static inline uint16_t tw_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x40u;
    return (uint16_t)(((u & 0x7fffffffu) > 0x7f800000u) ? nan : rounded);
}
static inline float tw_bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#endif
