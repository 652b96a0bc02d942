/* The table each communicator fills in; private to src/dist/. comm.c dispatches the public calls
 * of comm.h through it, so single-process, MPI and NCCL (comm_nccl.c, the CUDA side) sit side by
 * side in one binary, as the backends do (backend_impl.h). */
#ifndef TW_COMM_IMPL_H
#define TW_COMM_IMPL_H

#include "dist/comm.h"

typedef struct tw_comm_ops {
    void (*free)(tw_comm *c);
    void (*allreduce)(tw_comm *c, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op);
    void (*broadcast)(tw_comm *c, void *buf, size_t n_bytes, int root);
    void (*barrier)(tw_comm *c);
    void (*abort)(tw_comm *c, int code);   /* must not return */
    /* The non-blocking all-reduce in slot (0 <= slot < TW_COMM_MAX_PENDING; comm.c hands out the
     * slots and never starts a busy one). */
    void (*istart)(tw_comm *c, int slot, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op);
    int (*test)(tw_comm *c, int slot);
    void (*wait)(tw_comm *c, int slot);
    /* In place: buf holds size blocks of n_bytes, this rank's at rank * n_bytes (<= INT_MAX). */
    void (*allgather)(tw_comm *c, void *buf, size_t n_bytes);
} tw_comm_ops;

/* Every communicator's struct starts with this header; the rest is its own. */
struct tw_comm {
    const tw_comm_ops *ops;
    tw_comm_kind kind;
    int rank, size;
    int local_rank, local_size;   /* among the ranks on this node */
    unsigned char busy[TW_COMM_MAX_PENDING];   /* slots of pending non-blocking calls */
};

tw_status tw_comm_single_create(tw_comm **out, tw_err *err);
/* comm_sim.c: inner (owned from then on) slowed to a simulated network (tw_comm_sim_wrap). */
tw_status tw_comm_sim_create(tw_comm **out, tw_comm *inner, double busbw_gbs, double alpha_us, tw_err *err);
#ifdef TW_HAVE_MPI
tw_status tw_comm_mpi_create(tw_comm **out, int *argc, char ***argv, tw_err *err);
#endif
#ifdef TW_HAVE_NCCL
/* comm_nccl.c: bootstraps over MPI (rank 0 makes the NCCL id and broadcasts it). */
tw_status tw_comm_nccl_create(tw_comm **out, int *argc, char ***argv, tw_err *err);
void tw_comm_nccl_set_stream(tw_comm *c, void *stream);   /* tw_comm_set_stream */
#endif

#endif
