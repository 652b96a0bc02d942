/* The NCCL communicator: one GPU per rank (the node-local rank picks it), bootstrapped over the
 * MPI communicator it wraps (rank 0 makes the NCCL id, MPI_Bcast sends it). Collectives on device
 * buffers run on a communication stream of their own, ordered after the compute stream's work by
 * an event and making later compute work wait by another, so the host never blocks and the calls
 * can be recorded into a CUDA graph. Host buffers (counters, metrics) go through MPI. */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdlib.h>

#include "core/log.h"
#include "dist/comm_impl.h"

#define TW_CHECK_NCCL(call)                                                            \
    do {                                                                               \
        ncclResult_t r_ = (call);                                                      \
        if (r_ != ncclSuccess) tw_fatal(#call, ncclGetErrorString(r_), __FILE__, __LINE__); \
    } while (0)
#define TW_CHECK_CUDA(call)                                                            \
    do {                                                                               \
        cudaError_t e_ = (call);                                                       \
        if (e_ != cudaSuccess) tw_fatal(#call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)

typedef struct nccl_comm {
    struct tw_comm base;
    tw_comm *mpi;                 /* bootstrap, host buffers, barrier, abort */
    ncclComm_t nccl;
    int device;
    cudaStream_t comm_stream;
    cudaStream_t compute_stream;  /* the backend's (tw_comm_set_stream); NULL until bound */
    cudaEvent_t ev_ready, ev_done;
    int warned_unbound;
    /* Non-blocking calls, by slot: the event recorded on the communication stream after the
     * collective (made on the slot's first use), or the slot went to MPI (a host buffer). */
    cudaEvent_t ev_req[TW_COMM_MAX_PENDING];
    unsigned char on_host[TW_COMM_MAX_PENDING];
} nccl_comm;

static int on_device(const void *p) {
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

/* Orders the collective after the compute stream's work queued so far. Without a bound stream
 * (the caller never called tw_comm_set_stream) the whole device is drained instead: correct,
 * but it blocks the host, so say so once. */
static void enter(nccl_comm *c) {
    if (c->compute_stream) {
        TW_CHECK_CUDA(cudaEventRecord(c->ev_ready, c->compute_stream));
        TW_CHECK_CUDA(cudaStreamWaitEvent(c->comm_stream, c->ev_ready, 0));
        return;
    }
    if (!c->warned_unbound && c->base.rank == 0) {
        tw_warn("nccl: no compute stream bound (tw_comm_set_stream); collectives synchronise "
                "the device\n");
        c->warned_unbound = 1;
    }
    TW_CHECK_CUDA(cudaDeviceSynchronize());
}

/* Makes the compute stream's later work wait for the collective. */
static void leave(nccl_comm *c) {
    if (c->compute_stream) {
        TW_CHECK_CUDA(cudaEventRecord(c->ev_done, c->comm_stream));
        TW_CHECK_CUDA(cudaStreamWaitEvent(c->compute_stream, c->ev_done, 0));
        return;
    }
    TW_CHECK_CUDA(cudaStreamSynchronize(c->comm_stream));
}

static ncclDataType_t nccl_type(tw_dtype t) {
    switch (t) {
    case TW_F32: return ncclFloat32;
    case TW_I64: return ncclInt64;
    case TW_F64: return ncclFloat64;
    case TW_I32: return ncclInt32;
    default: break;
    }
    TW_ASSERT(!"dtype without an NCCL reduction");
    return ncclFloat32;
}

static void nccl_allreduce(tw_comm *c_, void *buf, size_t n_elems, tw_dtype dtype,
                           tw_reduce_op op) {
    nccl_comm *c = (nccl_comm *)c_;
    if (!on_device(buf)) {
        c->mpi->ops->allreduce(c->mpi, buf, n_elems, dtype, op);
        return;
    }
    enter(c);
    TW_CHECK_NCCL(ncclAllReduce(buf, buf, n_elems, nccl_type(dtype),
                                op == TW_REDUCE_SUM ? ncclSum : ncclMax, c->nccl, c->comm_stream));
    leave(c);
}

/* Queued on the communication stream after the compute stream's work so far; the slot's event
 * marks its end, so test and wait never touch the device as a whole. */
static void nccl_istart(tw_comm *c_, int slot, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op) {
    nccl_comm *c = (nccl_comm *)c_;
    c->on_host[slot] = !on_device(buf);
    if (c->on_host[slot]) {
        c->mpi->ops->istart(c->mpi, slot, buf, n_elems, dtype, op);
        return;
    }
    if (!c->ev_req[slot]) TW_CHECK_CUDA(cudaEventCreateWithFlags(&c->ev_req[slot], cudaEventDisableTiming));
    enter(c);
    TW_CHECK_NCCL(ncclAllReduce(buf, buf, n_elems, nccl_type(dtype), op == TW_REDUCE_SUM ? ncclSum : ncclMax,
                                c->nccl, c->comm_stream));
    TW_CHECK_CUDA(cudaEventRecord(c->ev_req[slot], c->comm_stream));
}

static int nccl_test(tw_comm *c_, int slot) {
    nccl_comm *c = (nccl_comm *)c_;
    if (c->on_host[slot]) return c->mpi->ops->test(c->mpi, slot);
    cudaError_t e = cudaEventQuery(c->ev_req[slot]);
    if (e == cudaErrorNotReady) return 0;
    TW_CHECK_CUDA(e);
    return 1;
}

/* The compute stream's later work waits for the slot's collective; unbound, the host waits for
 * that one event (never the whole device). */
static void nccl_wait(tw_comm *c_, int slot) {
    nccl_comm *c = (nccl_comm *)c_;
    if (c->on_host[slot]) {
        c->mpi->ops->wait(c->mpi, slot);
        return;
    }
    if (c->compute_stream) TW_CHECK_CUDA(cudaStreamWaitEvent(c->compute_stream, c->ev_req[slot], 0));
    else TW_CHECK_CUDA(cudaEventSynchronize(c->ev_req[slot]));
}

static void nccl_broadcast(tw_comm *c_, void *buf, size_t n_bytes, int root) {
    nccl_comm *c = (nccl_comm *)c_;
    if (!on_device(buf)) {
        c->mpi->ops->broadcast(c->mpi, buf, n_bytes, root);
        return;
    }
    enter(c);
    TW_CHECK_NCCL(ncclBroadcast(buf, buf, n_bytes, ncclUint8, root, c->nccl, c->comm_stream));
    leave(c);
}

/* In place: NCCL's all-gather reads this rank's block where it lands (sendbuff = recvbuff +
 * rank * count). */
static void nccl_allgather(tw_comm *c_, void *buf, size_t n_bytes) {
    nccl_comm *c = (nccl_comm *)c_;
    if (!on_device(buf)) {
        c->mpi->ops->allgather(c->mpi, buf, n_bytes);
        return;
    }
    enter(c);
    TW_CHECK_NCCL(ncclAllGather((char *)buf + (size_t)c_->rank * n_bytes, buf, n_bytes, ncclUint8, c->nccl,
                                c->comm_stream));
    leave(c);
}

static void nccl_barrier(tw_comm *c_) {
    nccl_comm *c = (nccl_comm *)c_;
    c->mpi->ops->barrier(c->mpi);
}

void tw_comm_nccl_set_stream(tw_comm *c_, void *stream) {
    TW_ASSERT(c_->kind == TW_COMM_NCCL);
    ((nccl_comm *)c_)->compute_stream = (cudaStream_t)stream;
}

static void nccl_abort(tw_comm *c_, int code) {
    nccl_comm *c = (nccl_comm *)c_;
    /* Tear NCCL down without waiting for peers that may be gone, then end every MPI process. */
    if (c->nccl) ncclCommAbort(c->nccl);
    c->nccl = NULL;
    c->mpi->ops->abort(c->mpi, code);
}

static void nccl_free(tw_comm *c_) {
    nccl_comm *c = (nccl_comm *)c_;
    if (c->comm_stream) cudaStreamSynchronize(c->comm_stream);
    if (c->nccl) TW_CHECK_NCCL(ncclCommDestroy(c->nccl));
    if (c->ev_ready) cudaEventDestroy(c->ev_ready);
    if (c->ev_done) cudaEventDestroy(c->ev_done);
    for (int i = 0; i < TW_COMM_MAX_PENDING; i++)
        if (c->ev_req[i]) cudaEventDestroy(c->ev_req[i]);
    if (c->comm_stream) cudaStreamDestroy(c->comm_stream);
    if (c->mpi) c->mpi->ops->free(c->mpi);
    free(c);
}

static const tw_comm_ops nccl_ops = {
    .free = nccl_free,
    .allreduce = nccl_allreduce,
    .broadcast = nccl_broadcast,
    .barrier = nccl_barrier,
    .abort = nccl_abort,
    .istart = nccl_istart,
    .test = nccl_test,
    .wait = nccl_wait,
    .allgather = nccl_allgather,
};

tw_status tw_comm_nccl_create(tw_comm **out, int *argc, char ***argv, tw_err *err) {
    tw_status st = TW_OK;
    *out = NULL;
    nccl_comm *c = calloc(1, sizeof *c);
    if (!c) return tw_err_set(err, TW_E_NOMEM, "nccl communicator: out of memory");
    if ((st = tw_comm_mpi_create(&c->mpi, argc, argv, err)) != TW_OK) {
        free(c);
        return st;
    }
    c->base = *c->mpi;             /* rank, size, local rank from MPI */
    c->base.ops = &nccl_ops;
    c->base.kind = TW_COMM_NCCL;

    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess) n_dev = 0;
    cudaGetLastError();
    /* Decide collectively: one rank without a GPU must not leave the others in ncclCommInitRank. */
    int32_t ok = c->base.local_rank < n_dev;
    c->mpi->ops->allreduce(c->mpi, &ok, 1, TW_I32, TW_REDUCE_SUM);
    if (ok != c->base.size) {
        st = tw_err_set(err, TW_E_UNSUPPORTED,
                        "nccl: every rank needs its own GPU; rank %d has local rank %d and sees %d "
                        "GPU(s), and %d of %d ranks found theirs", c->base.rank,
                        c->base.local_rank, n_dev, (int)ok, c->base.size);
        goto done;
    }
    c->device = c->base.local_rank;
    TW_CHECK_CUDA(cudaSetDevice(c->device));
    TW_CHECK_CUDA(cudaStreamCreateWithFlags(&c->comm_stream, cudaStreamNonBlocking));
    TW_CHECK_CUDA(cudaEventCreateWithFlags(&c->ev_ready, cudaEventDisableTiming));
    TW_CHECK_CUDA(cudaEventCreateWithFlags(&c->ev_done, cudaEventDisableTiming));

    ncclUniqueId id;
    if (c->base.rank == 0) TW_CHECK_NCCL(ncclGetUniqueId(&id));
    c->mpi->ops->broadcast(c->mpi, &id, sizeof id, 0);
    ncclResult_t r = ncclCommInitRank(&c->nccl, c->base.size, id, c->base.rank);
    if (r != ncclSuccess) {
        c->nccl = NULL;
        st = tw_err_set(err, TW_E_COMM, "nccl: ncclCommInitRank on rank %d (GPU %d): %s",
                        c->base.rank, c->device, ncclGetErrorString(r));
        goto done;
    }
    *out = &c->base;
    c = NULL;
done:
    if (c) nccl_free(&c->base);
    return st;
}
