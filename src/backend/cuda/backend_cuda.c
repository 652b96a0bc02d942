/* The CUDA backend's lifetime, facts, memory, host values and CUDA graph recording, and its op
 * table. Each rank drives one GPU with one compute stream; the ops are in the sibling files
 * (conv.c, bn.c, pool.c, eltwise.c, dense.c, loss.c, optim.c), the kernels in kernels/. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

/* cuBLAS's own workspace: NVIDIA's recommended size for Hopper; a fixed workspace keeps cuBLAS
 * from allocating while a graph is being recorded. */
enum { TW_CUBLAS_WS_BYTES = 32 << 20 };

int tw_cuda_device_count(void) {
    int n = 0;
    /* No driver or no device is "0 devices", not an error. */
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

unsigned tw_cuda_grid(const tw_cuda_backend *cb, size_t n) {
    size_t blocks = (n + TW_K_THREADS - 1) / TW_K_THREADS;
    size_t cap = (size_t)cb->n_sms * 16;   /* enough blocks to fill the GPU; the rest is stride */
    if (blocks > cap) blocks = cap;
    return blocks ? (unsigned)blocks : 1u;
}

double *tw_cuda_val_slot(tw_cuda_backend *cb) {
    if (!cb->recording) return cb->dev_vals + TW_CUDA_VAL_DIRECT;
    TW_ASSERT(cb->n_recorded_vals < TW_CUDA_VAL_DIRECT);
    return cb->dev_vals + cb->n_recorded_vals++;
}

double tw_cuda_val_read(tw_cuda_backend *cb, double *slot) {
    if (cb->recording) return NAN;
    TW_CHECK_CUDA(cudaMemcpyAsync(cb->host_vals + TW_CUDA_VAL_DIRECT, slot, sizeof(double),
                                  cudaMemcpyDeviceToHost, cb->stream));
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));
    return cb->host_vals[TW_CUDA_VAL_DIRECT];
}

void tw_cuda_ws_reserve(tw_cuda_backend *cb, size_t n_bytes) {
    if (n_bytes <= cb->ws_bytes) return;
    TW_ASSERT(!cb->recording);
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));
    if (cb->ws && cb->graph_exec) {   /* the recorded graph holds the old pointer: keep it */
        TW_ASSERT(cb->n_ws_retired < (int)(sizeof cb->ws_retired / sizeof cb->ws_retired[0]));
        cb->ws_retired[cb->n_ws_retired++] = cb->ws;
    } else if (cb->ws) {
        TW_CHECK_CUDA(cudaFree(cb->ws));
    }
    TW_CHECK_CUDA(cudaMalloc(&cb->ws, n_bytes));
    cb->ws_bytes = n_bytes;
}

/* ---- lifetime ------------------------------------------------------------------------------ */

void tw_cuda_backend_free(tw_backend *be) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    if (cb->stream) cudaStreamSynchronize(cb->stream);
    if (cb->graph_exec) cudaGraphExecDestroy(cb->graph_exec);
    if (cb->graph) cudaGraphDestroy(cb->graph);
    if (cb->cublas) cublasDestroy(cb->cublas);
    if (cb->cudnn) cudnnDestroy(cb->cudnn);
    cudaFree(cb->cublas_ws);
    cudaFree(cb->ws);
    for (int i = 0; i < cb->n_ws_retired; i++) cudaFree(cb->ws_retired[i]);
    cudaFree(cb->dev_vals);
    cudaFree(cb->red_partial);
    if (cb->host_vals) cudaFreeHost(cb->host_vals);
    if (cb->stream) cudaStreamDestroy(cb->stream);
    free(cb->algos);
    free(cb);
}

void tw_cuda_backend_describe(const tw_backend *be, char *buf, size_t n_bytes) {
    const tw_cuda_backend *cb = (const tw_cuda_backend *)be;
    snprintf(buf, n_bytes, "cuda device=%d %s sm_%d%d sms=%d precision=%s", cb->device, cb->name,
             cb->cc_major, cb->cc_minor, cb->n_sms, cb->bf16 ? "bf16" : "fp32");
}

void tw_cuda_backend_sync(tw_backend *be) {
    TW_CHECK_CUDA(cudaStreamSynchronize(tw_cuda_of(be)->stream));
}

void *tw_cuda_backend_stream(tw_backend *be) { return tw_cuda_of(be)->stream; }

/* ---- memory: device memory, ordered on the compute stream ------------------------------------ */

void *tw_cuda_mem_alloc(tw_backend *be, size_t n_bytes) {
    void *p = NULL;
    TW_ASSERT(!tw_cuda_of(be)->recording);
    TW_CHECK_CUDA(cudaMalloc(&p, n_bytes ? n_bytes : 1));   /* 256-byte aligned */
    return p;
}

void tw_cuda_mem_free(tw_backend *be, void *p) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(!cb->recording);
    if (!p) return;
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));
    TW_CHECK_CUDA(cudaFree(p));
}

void tw_cuda_mem_zero(tw_backend *be, void *p, size_t n_bytes) {
    TW_CHECK_CUDA(cudaMemsetAsync(p, 0, n_bytes, tw_cuda_of(be)->stream));
}

void tw_cuda_mem_to_host(tw_backend *be, void *host, const void *src, size_t n_bytes) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(!cb->recording);
    TW_CHECK_CUDA(cudaMemcpyAsync(host, src, n_bytes, cudaMemcpyDeviceToHost, cb->stream));
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));
}

void tw_cuda_mem_from_host(tw_backend *be, void *dst, const void *host, size_t n_bytes) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(!cb->recording);
    TW_CHECK_CUDA(cudaMemcpyAsync(dst, host, n_bytes, cudaMemcpyHostToDevice, cb->stream));
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));   /* the caller may reuse host at once */
}

void tw_cuda_mem_copy(tw_backend *be, void *dst, const void *src, size_t n_bytes) {
    TW_CHECK_CUDA(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyDeviceToDevice,
                                  tw_cuda_of(be)->stream));
}

/* Pinned, so that cudaMemcpyAsync from it is a true DMA that overlaps the compute. */
void *tw_cuda_mem_host_alloc(tw_backend *be, size_t n_bytes) {
    void *p = NULL;
    TW_ASSERT(!tw_cuda_of(be)->recording);
    TW_CHECK_CUDA(cudaMallocHost(&p, n_bytes ? n_bytes : 1));
    return p;
}

void tw_cuda_mem_host_free(tw_backend *be, void *p) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(!cb->recording);
    if (!p) return;
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));   /* a queued upload may still read it */
    TW_CHECK_CUDA(cudaFreeHost(p));
}

void tw_cuda_mem_from_host_async(tw_backend *be, void *dst, const void *host, size_t n_bytes) {
    TW_CHECK_CUDA(cudaMemcpyAsync(dst, host, n_bytes, cudaMemcpyHostToDevice,
                                  tw_cuda_of(be)->stream));
}

/* ---- CUDA graphs ----------------------------------------------------------------------------- */

static void graph_drop(tw_cuda_backend *cb) {
    if (cb->graph_exec) TW_CHECK_CUDA(cudaGraphExecDestroy(cb->graph_exec));
    if (cb->graph) TW_CHECK_CUDA(cudaGraphDestroy(cb->graph));
    cb->graph_exec = NULL;
    cb->graph = NULL;
    cb->graph_n_vals = 0;
    for (int i = 0; i < cb->n_ws_retired; i++) TW_CHECK_CUDA(cudaFree(cb->ws_retired[i]));
    cb->n_ws_retired = 0;
}

tw_status tw_cuda_backend_graph_begin(tw_backend *be, tw_err *err) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    if (cb->recording)
        return tw_err_set(err, TW_E_USAGE, "cuda graph: begin while already recording");
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));
    graph_drop(cb);
    /* Thread-local: other host threads (the loader) may keep calling CUDA while we record. */
    cudaError_t e = cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess)
        return tw_err_set(err, TW_E_BACKEND, "cuda graph: cannot start recording: %s",
                          cudaGetErrorString(e));
    cb->recording = 1;
    cb->n_recorded_vals = 0;
    return TW_OK;
}

tw_status tw_cuda_backend_graph_end(tw_backend *be, tw_err *err) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    if (!cb->recording) return tw_err_set(err, TW_E_USAGE, "cuda graph: end without begin");
    int n_vals = cb->n_recorded_vals;
    cudaError_t e = cudaSuccess;
    if (n_vals > 0)
        e = cudaMemcpyAsync(cb->host_vals, cb->dev_vals, (size_t)n_vals * sizeof(double),
                            cudaMemcpyDeviceToHost, cb->stream);
    cudaGraph_t graph = NULL;
    cudaError_t e_end = cudaStreamEndCapture(cb->stream, &graph);
    cb->recording = 0;
    if (e == cudaSuccess) e = e_end;
    if (e != cudaSuccess) {
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        return tw_err_set(err, TW_E_BACKEND,
                          "cuda graph: recording failed (%s): an op synchronised, allocated or "
                          "used another stream without joining it",
                          cudaGetErrorString(e));
    }
    e = cudaGraphInstantiate(&cb->graph_exec, graph, 0);
    if (e != cudaSuccess) {
        cudaGraphDestroy(graph);
        cb->graph_exec = NULL;
        return tw_err_set(err, TW_E_BACKEND, "cuda graph: instantiation failed: %s",
                          cudaGetErrorString(e));
    }
    cb->graph = graph;
    cb->graph_n_vals = n_vals;
    return TW_OK;
}

void tw_cuda_backend_graph_replay(tw_backend *be, double *values, int n_values) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_ASSERT(cb->graph_exec && !cb->recording);
    TW_ASSERT(n_values == cb->graph_n_vals);
    TW_CHECK_CUDA(cudaGraphLaunch(cb->graph_exec, cb->stream));
    if (n_values == 0) return;   /* nothing to hand back: let the host run ahead */
    TW_CHECK_CUDA(cudaStreamSynchronize(cb->stream));
    memcpy(values, cb->host_vals, (size_t)n_values * sizeof(double));
}

/* ---- the table ------------------------------------------------------------------------------- */

static const tw_backend_ops cuda_ops = {
#define TW_OP(ret, name, params, args) .name = tw_cuda_##name,
#define TW_OP_OPTIONAL(ret, name, params, args) .name = tw_cuda_##name,
#include "backend/ops.def"
};

/* Setup failures are the machine's (driver, device index), so they come back as a status. */
#define TW_CUDA_TRY(call, what)                                                         \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            st = tw_err_set(err, TW_E_BACKEND, "cuda device %d: %s: %s", device_index,  \
                            what, cudaGetErrorString(e_));                              \
            goto done;                                                                  \
        }                                                                               \
    } while (0)

tw_status tw_cuda_backend_create(tw_backend **out, tw_precision prec, int device_index,
                                 tw_err *err) {
    tw_status st = TW_OK;
    *out = NULL;
    int n_dev = tw_cuda_device_count();
    if (device_index < 0 || device_index >= n_dev)
        return tw_err_set(err, TW_E_UNSUPPORTED, "cuda device %d requested, %d visible",
                          device_index, n_dev);
    tw_cuda_backend *cb = calloc(1, sizeof *cb);
    if (!cb) return tw_err_set(err, TW_E_NOMEM, "cuda backend: out of host memory");
    cb->base.ops = &cuda_ops;
    cb->base.device = TW_DEVICE_CUDA;
    cb->device = device_index;

    struct cudaDeviceProp prop;
    TW_CUDA_TRY(cudaSetDevice(device_index), "cudaSetDevice");
    TW_CUDA_TRY(cudaGetDeviceProperties(&prop, device_index), "cudaGetDeviceProperties");
    snprintf(cb->name, sizeof cb->name, "%s", prop.name);
    cb->cc_major = prop.major;
    cb->cc_minor = prop.minor;
    cb->n_sms = prop.multiProcessorCount;
    /* bf16 tensor cores arrived with Ampere (sm_80). */
    int native_bf16 = prop.major >= 8;
    if (prec == TW_PREC_BF16 && !native_bf16) {
        st = tw_err_set(err, TW_E_UNSUPPORTED, "precision bf16: %s (sm_%d%d) has no bf16 tensor "
                        "cores; use fp32", cb->name, prop.major, prop.minor);
        goto done;
    }
    cb->bf16 = prec == TW_PREC_BF16 || (prec == TW_PREC_AUTO && native_bf16);
    cb->base.act_dtype = cb->bf16 ? TW_BF16 : TW_F32;

    TW_CUDA_TRY(cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking), "stream");
    TW_CUDA_TRY(cudaMalloc(&cb->cublas_ws, TW_CUBLAS_WS_BYTES), "cuBLAS workspace");
    TW_CUDA_TRY(cudaMalloc((void **)&cb->dev_vals, TW_CUDA_MAX_VALS * sizeof(double)), "values");
    TW_CUDA_TRY(cudaMalloc((void **)&cb->red_partial, TW_K_RED_BLOCKS * sizeof(double)),
                "reduction scratch");
    TW_CUDA_TRY(cudaMallocHost((void **)&cb->host_vals, TW_CUDA_MAX_VALS * sizeof(double)),
                "pinned values");
    cudnnStatus_t ds = cudnnCreate(&cb->cudnn);
    if (ds != CUDNN_STATUS_SUCCESS) {
        st = tw_err_set(err, TW_E_BACKEND, "cuda device %d: cudnnCreate: %s", device_index,
                        cudnnGetErrorString(ds));
        goto done;
    }
    TW_CHECK_CUDNN(cudnnSetStream(cb->cudnn, cb->stream));
    cublasStatus_t bs = cublasCreate(&cb->cublas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        st = tw_err_set(err, TW_E_BACKEND, "cuda device %d: cublasCreate: %s", device_index,
                        cublasGetStatusString(bs));
        goto done;
    }
    TW_CHECK_CUBLAS(cublasSetStream(cb->cublas, cb->stream));
    TW_CHECK_CUBLAS(cublasSetWorkspace(cb->cublas, cb->cublas_ws, TW_CUBLAS_WS_BYTES));
    /* The compute type of each GEMM says what it may use (dense.c): CUBLAS_COMPUTE_32F alone
     * never uses TF32 under the default math mode. */
    TW_CHECK_CUBLAS(cublasSetMathMode(cb->cublas, CUBLAS_DEFAULT_MATH));
    *out = &cb->base;
    cb = NULL;
done:
    if (cb) tw_cuda_backend_free(&cb->base);
    return st;
}
