/* Dispatch from comm.h to the communicator's table, the choice of kind, and the process-wide
 * abort hook: log.h's hook takes no context, so the live communicator is kept here (one per
 * process) for tw_fatal to end the whole job through it. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "dist/comm_impl.h"

static tw_comm *g_abort_comm = NULL;

static void abort_hook(int code) {
    if (g_abort_comm) g_abort_comm->ops->abort(g_abort_comm, code);
}

const char *tw_comm_kind_name(tw_comm_kind kind) {
    switch (kind) {
    case TW_COMM_SINGLE: return "single";
    case TW_COMM_MPI: return "mpi";
    case TW_COMM_NCCL: return "nccl";
    }
    return "?";
}

tw_comm_kind tw_comm_kind_auto(int on_gpu) {
#ifdef TW_HAVE_MPI
    int launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
#ifdef TW_HAVE_NCCL
    if (on_gpu) return TW_COMM_NCCL;
#endif
    (void)on_gpu;
    return launched ? TW_COMM_MPI : TW_COMM_SINGLE;
#else
    (void)on_gpu;
    return TW_COMM_SINGLE;
#endif
}

tw_status tw_comm_create(tw_comm **out, tw_comm_kind kind, int *argc, char ***argv, tw_err *err) {
    tw_status st = TW_OK;
    *out = NULL;
    switch (kind) {
    case TW_COMM_SINGLE:
        (void)argc;
        (void)argv;
        st = tw_comm_single_create(out, err);
        break;
    case TW_COMM_MPI:
#ifdef TW_HAVE_MPI
        st = tw_comm_mpi_create(out, argc, argv, err);
#else
        st = tw_err_set(err, TW_E_UNSUPPORTED, "this twinfuse was built without MPI (TW_MPI=OFF)");
#endif
        break;
    case TW_COMM_NCCL:
#ifdef TW_HAVE_NCCL
        st = tw_comm_nccl_create(out, argc, argv, err);
#else
        st = tw_err_set(err, TW_E_UNSUPPORTED, "this twinfuse was built without NCCL (needs TW_CUDA)");
#endif
        break;
    }
    if (st != TW_OK) return st;
    g_abort_comm = *out;
    tw_log_set_rank((*out)->rank);
    tw_log_set_abort(abort_hook);
    return TW_OK;
}

tw_status tw_comm_sim_wrap(tw_comm **c, double busbw_gbs, double alpha_us, tw_err *err) {
    for (int i = 0; i < TW_COMM_MAX_PENDING; i++) TW_ASSERT(!(*c)->busy[i]);   /* nothing pending */
    tw_comm *sim = NULL;
    tw_status st = tw_comm_sim_create(&sim, *c, busbw_gbs, alpha_us, err);
    if (st != TW_OK) return st;
    if (g_abort_comm == *c) g_abort_comm = sim;
    *c = sim;
    return TW_OK;
}

void tw_comm_free(tw_comm *c) {
    if (!c) return;
    if (g_abort_comm == c) {
        g_abort_comm = NULL;
        tw_log_set_abort(NULL);
    }
    c->ops->free(c);
}

int tw_comm_rank(const tw_comm *c) { return c->rank; }
int tw_comm_size(const tw_comm *c) { return c->size; }
int tw_comm_local_rank(const tw_comm *c) { return c->local_rank; }
tw_comm_kind tw_comm_kind_of(const tw_comm *c) { return c->kind; }

void tw_comm_allreduce(tw_comm *c, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op) {
    TW_ASSERT(dtype == TW_F32 || dtype == TW_F64 || dtype == TW_I64 || dtype == TW_I32);
    if (n_elems) c->ops->allreduce(c, buf, n_elems, dtype, op);
}

void tw_comm_broadcast(tw_comm *c, void *buf, size_t n_bytes, int root) {
    TW_ASSERT(root >= 0 && root < c->size);
    if (n_bytes) c->ops->broadcast(c, buf, n_bytes, root);
}

void tw_comm_allgather(tw_comm *c, void *buf, size_t n_bytes) {
    TW_ASSERT(n_bytes <= (size_t)INT_MAX);
    if (n_bytes && c->size > 1) c->ops->allgather(c, buf, n_bytes);
}

void tw_comm_barrier(tw_comm *c) { c->ops->barrier(c); }

void tw_comm_set_stream(tw_comm *c, void *stream) {
#ifdef TW_HAVE_NCCL
    if (c->kind == TW_COMM_NCCL) tw_comm_nccl_set_stream(c, stream);
#else
    (void)c;
    (void)stream;
#endif
}

void tw_comm_abort(tw_comm *c, int code) {
    c->ops->abort(c, code);
    abort();   /* an abort that returned is a bug in the communicator; never leave the job running */
}

tw_comm_req tw_comm_iallreduce(tw_comm *c, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op) {
    TW_ASSERT(dtype == TW_F32 || dtype == TW_F64 || dtype == TW_I64 || dtype == TW_I32);
    int slot = 0;
    while (slot < TW_COMM_MAX_PENDING && c->busy[slot]) slot++;
    TW_ASSERT(slot < TW_COMM_MAX_PENDING);
    c->busy[slot] = 1;
    if (n_elems) c->ops->istart(c, slot, buf, n_elems, dtype, op);
    else c->busy[slot] = 2;   /* nothing to reduce: complete at once */
    return slot;
}

int tw_comm_test(tw_comm *c, tw_comm_req r) {
    TW_ASSERT(r >= 0 && r < TW_COMM_MAX_PENDING && c->busy[r]);
    return c->busy[r] == 2 || c->ops->test(c, r);
}

void tw_comm_wait(tw_comm *c, tw_comm_req r) {
    TW_ASSERT(r >= 0 && r < TW_COMM_MAX_PENDING && c->busy[r]);
    if (c->busy[r] == 1) c->ops->wait(c, r);
    c->busy[r] = 0;
}

static void reducer_sum(void *ctx, double *buf, size_t n_elems) {
    tw_comm_allreduce(ctx, buf, n_elems, TW_F64, TW_REDUCE_SUM);
}

tw_reducer tw_comm_reducer(tw_comm *c) {
    return (tw_reducer){reducer_sum, c, tw_comm_size(c)};
}

/* The lowest failing rank's message travels by a broadcast from it (comm.h). */
tw_status tw_comm_agree(tw_comm *comm, tw_status st, tw_err *err) {
    int rank = tw_comm_rank(comm), world = tw_comm_size(comm);
    /* world - rank: the maximum over the failing ranks names the lowest of them. */
    int64_t bad = st != TW_OK ? world - rank : 0;
    tw_comm_allreduce(comm, &bad, 1, TW_I64, TW_REDUCE_MAX);
    if (!bad) return TW_OK;
    int root = world - (int)bad;
    struct { int64_t code; char msg[sizeof err->msg]; } m;
    memset(&m, 0, sizeof m);
    if (rank == root) {
        m.code = st;
        snprintf(m.msg, sizeof m.msg, "%s", err ? err->msg : tw_status_str(st));
    }
    tw_comm_broadcast(comm, &m, sizeof m, root);
    if (rank == root || (rank != 0 && st != TW_OK)) return st;   /* rank 0 prints the first failure */
    return tw_err_set(err, (tw_status)m.code, "rank %d: %s", root, m.msg);
}
