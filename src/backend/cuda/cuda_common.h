/* Private to src/backend/cuda/: the CUDA backend's state (one device, one compute stream, the
 * cuDNN and cuBLAS handles, the shared workspace, the algorithm cache, the graph being recorded)
 * and the macros that check every CUDA, cuDNN and cuBLAS call. The ops live in the other files. */
#ifndef TW_CUDA_COMMON_H
#define TW_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "backend/backend_impl.h"
#include "core/log.h"

#define TW_CHECK_CUDA(call)                                                          \
    do {                                                                             \
        cudaError_t e_ = (call);                                                     \
        if (e_ != cudaSuccess) tw_fatal(#call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)
#define TW_CHECK_CUDNN(call)                                                         \
    do {                                                                             \
        cudnnStatus_t s_ = (call);                                                   \
        if (s_ != CUDNN_STATUS_SUCCESS)                                              \
            tw_fatal(#call, cudnnGetErrorString(s_), __FILE__, __LINE__);            \
    } while (0)
#define TW_CHECK_CUBLAS(call)                                                        \
    do {                                                                             \
        cublasStatus_t s_ = (call);                                                  \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                             \
            tw_fatal(#call, cublasGetStatusString(s_), __FILE__, __LINE__);          \
    } while (0)

/* The algorithms cuDNN picked for one convolution shape, found once (cudnnFind*, which runs them
 * like torch.backends.cudnn.benchmark) and reused by every plan of the same shape. */
typedef struct tw_cuda_conv_algo {
    int key[9];   /* n, c_in, h, w, c_out, kernel, stride, pad, dtype */
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t math_fwd, math_bwd_data, math_bwd_filter;
    size_t ws_bytes;   /* the largest of the three */
} tw_cuda_conv_algo;

/* Host values handed back by ops (losses, flags): slot TW_CUDA_VAL_DIRECT serves direct calls,
 * slots 0.. the ops recorded in a graph, in order. */
enum { TW_CUDA_MAX_VALS = 64, TW_CUDA_VAL_DIRECT = TW_CUDA_MAX_VALS - 1 };

typedef struct tw_cuda_backend {
    tw_backend base;
    int device;
    int bf16;                    /* activations and convolutions in bf16, f32 master weights */
    char name[256];
    int cc_major, cc_minor, n_sms;
    cudaStream_t stream;         /* every op runs here; the NCCL communicator has its own */
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    void *cublas_ws;             /* fixed, so cuBLAS never allocates inside a recorded graph */
    void *ws;                    /* the one cuDNN workspace, grown when a plan needs more */
    size_t ws_bytes;
    void *ws_retired[16];        /* outgrown workspaces a recorded graph still uses */
    int n_ws_retired;
    tw_cuda_conv_algo *algos;
    int n_algos, cap_algos;
    double *dev_vals;            /* [TW_CUDA_MAX_VALS] device */
    double *host_vals;           /* [TW_CUDA_MAX_VALS] pinned host */
    double *red_partial;         /* [TW_K_RED_BLOCKS] block sums of the loss reductions */
    /* CUDA graph recording (tw_backend_graph_*). */
    int recording;
    int n_recorded_vals;
    cudaGraph_t graph;
    cudaGraphExec_t graph_exec;
    int graph_n_vals;
} tw_cuda_backend;

static inline tw_cuda_backend *tw_cuda_of(tw_backend *be) { return (tw_cuda_backend *)be; }

/* The device slot an op returning a host value writes to: the next recorded slot while a graph
 * is being recorded, else the direct slot. */
double *tw_cuda_val_slot(tw_cuda_backend *cb);
/* The value written to slot by the op just queued: waits for the stream (direct calls), or NaN
 * while recording (the value comes back from tw_backend_graph_replay). */
double tw_cuda_val_read(tw_cuda_backend *cb, double *slot);
/* Makes the shared cuDNN workspace at least n_bytes (plan time only, never while recording). */
void tw_cuda_ws_reserve(tw_cuda_backend *cb, size_t n_bytes);
/* Grid size for an element-wise kernel over n elements with 256-thread blocks. */
unsigned tw_cuda_grid(const tw_cuda_backend *cb, size_t n);

/* The ops (backend/ops.def), one group per file; backend_cuda.c has the lifetime, memory and
 * graph ones and the table that points at them all. */
#define TW_OP(ret, name, params, args) ret tw_cuda_##name params;
#define TW_OP_OPTIONAL(ret, name, params, args) ret tw_cuda_##name params;
#include "backend/ops.def"

#endif
