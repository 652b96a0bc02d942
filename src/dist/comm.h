/* The communicator: rank, size, all-reduce (blocking, or started and waited for), broadcast,
 * barrier, abort. Implementations: single
 * process (comm_single.c), MPI (comm_mpi.c), NCCL (comm_nccl.c, GPU buffers, bootstrapped over
 * MPI). Buffers live where the backend keeps its memory (host for the CPU backend, device for
 * CUDA). A failure is fatal and aborts every rank: a dead rank must never leave the others
 * hanging. */
#ifndef TW_COMM_H
#define TW_COMM_H

#include <stddef.h>

#include "core/dtype.h"
#include "core/reducer.h"
#include "core/status.h"

typedef enum { TW_COMM_SINGLE, TW_COMM_MPI, TW_COMM_NCCL } tw_comm_kind;
typedef enum { TW_REDUCE_SUM, TW_REDUCE_MAX } tw_reduce_op;

typedef struct tw_comm tw_comm;

/* The kind a run gets with backend.comm=auto: MPI when a launcher started this process (mpirun
 * or srun set OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK) and the build has MPI, NCCL instead
 * when on_gpu and the build has NCCL, else SINGLE. */
tw_comm_kind tw_comm_kind_auto(int on_gpu);
const char *tw_comm_kind_name(tw_comm_kind kind);   /* "single", "mpi", "nccl" */

/* Creates the communicator; for MPI and NCCL this initialises MPI if needed (argc/argv may be
 * NULL). Registers the rank and abort hook with log.h. */
tw_status tw_comm_create(tw_comm **out, tw_comm_kind kind, int *argc, char ***argv, tw_err *err);
void tw_comm_free(tw_comm *c);          /* finalises MPI if it initialised it */

int tw_comm_rank(const tw_comm *c);
int tw_comm_size(const tw_comm *c);
int tw_comm_local_rank(const tw_comm *c);    /* rank among the processes on this node */
tw_comm_kind tw_comm_kind_of(const tw_comm *c);

/* In place over n_elems elements of dtype: TW_F32 for tensors, TW_I64 for counters, TW_F64 for the
 * synchronised BN's sums (TW_I32 also works); every rank passes the same n_elems, dtype and op.
 * Other dtypes are a bug. */
void tw_comm_allreduce(tw_comm *c, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op);
/* A reducer (core/reducer.h) whose sum is tw_comm_allreduce(c, ..., TW_F64, TW_REDUCE_SUM): what
 * the synchronised layers of the model take. Valid while c lives. */
tw_reducer tw_comm_reducer(tw_comm *c);

/* Non-blocking all-reduce: starts what tw_comm_allreduce does and returns a handle at once; buf is
 * the communicator's until tw_comm_wait(c, handle) returns. Every rank starts the same collectives
 * in the same order, and at most TW_COMM_MAX_PENDING are pending at a time (more is a bug).
 * Progress: MPI moves a pending reduction only inside MPI calls, so whoever overlaps it with
 * computation calls tw_comm_test between pieces of that computation (train/: between the layers
 * of backward). NCCL runs it on the communication stream after the compute stream's work queued
 * so far. */
enum { TW_COMM_MAX_PENDING = 256 };
typedef int tw_comm_req;
tw_comm_req tw_comm_iallreduce(tw_comm *c, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op);
/* 1 when the reduction has completed (its handle is still to be waited for), else 0; never blocks. */
int tw_comm_test(tw_comm *c, tw_comm_req r);
/* Host communicators: returns when buf holds the result. NCCL: makes the compute stream's later
 * work wait for it (the host does not block). The handle is free again afterwards. */
void tw_comm_wait(tw_comm *c, tw_comm_req r);
void tw_comm_broadcast(tw_comm *c, void *buf, size_t n_bytes, int root);
/* In place: buf holds one block of n_bytes per rank, in rank order; each rank has written its own
 * (at rank * n_bytes) and afterwards holds every rank's. n_bytes is the same on every rank and at
 * most INT_MAX. (The Barlow Twins loss gathers the embeddings with it: loss.c_exchange.) */
void tw_comm_allgather(tw_comm *c, void *buf, size_t n_bytes);
void tw_comm_barrier(tw_comm *c);
/* Device communicators (NCCL) order each collective after the work already queued on `stream`
 * (a cudaStream_t: tw_backend_stream of the CUDA backend) and make its later work wait for it,
 * without blocking the host. Unbound, they drain the device instead. Host communicators ignore
 * it (stream may be NULL). */
void tw_comm_set_stream(tw_comm *c, void *stream);
/* Replaces *c by a communicator that gives the same results, each all-reduce (blocking or not)
 * also taking the time of a network of bus bandwidth busbw_gbs (GB/s, nccl-tests' definition)
 * and latency alpha_us, one collective at a time: imitates a slower interconnect on one machine,
 * to check the overlap of docs/scaling.md's model (bench/bt_step, SIM_BUSBW). On a bad value *c
 * stays as it was. */
tw_status tw_comm_sim_wrap(tw_comm **c, double busbw_gbs, double alpha_us, tw_err *err);
/* Ends every rank of the job with code (MPI_Abort); tw_fatal reaches it through log.h. */
_Noreturn void tw_comm_abort(tw_comm *c, int code);

/* Every rank reaches the same verdict: a failure on any rank fails them all. The lowest failing
 * rank's message reaches the others as "rank R: <its message>" (a failing rank other than 0 keeps
 * its own), so rank 0, which prints, names the rank and what went wrong there. */
tw_status tw_comm_agree(tw_comm *comm, tw_status st, tw_err *err);

#endif
