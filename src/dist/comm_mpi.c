/* The MPI communicator on host buffers: MPI_Init_thread when nobody has initialised MPI yet, a
 * private duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN (so a failure becomes tw_fatal naming
 * the rank and the call, then MPI_Abort of the whole job), the node-local rank from
 * MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), and in-place reductions (MPI_IN_PLACE). */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

#include "core/log.h"
#include "dist/comm_impl.h"

typedef struct mpi_comm {
    struct tw_comm base;
    MPI_Comm comm;        /* our duplicate of MPI_COMM_WORLD */
    int owns_init;        /* we called MPI_Init_thread, so we finalise */
    MPI_Request req[TW_COMM_MAX_PENDING];   /* the non-blocking calls' requests, by slot */
} mpi_comm;

static void check_mpi(int rc, const char *call, const char *file, int line) {
    if (rc == MPI_SUCCESS) return;
    char why[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(rc, why, &len) != MPI_SUCCESS) len = snprintf(why, sizeof why, "MPI error %d", rc);
    why[len] = '\0';
    tw_fatal(call, why, file, line);
}
#define TW_CHECK_MPI(call) do { check_mpi((call), #call, __FILE__, __LINE__); } while (0)

/* MPI counts are int; larger buffers go in pieces of at most this many elements. */
#define MAX_COUNT ((size_t)INT_MAX)

static MPI_Datatype mpi_type(tw_dtype t) {
    switch (t) {
    case TW_F32: return MPI_FLOAT;
    case TW_I64: return MPI_INT64_T;
    case TW_F64: return MPI_DOUBLE;
    case TW_I32: return MPI_INT32_T;
    default: break;
    }
    TW_ASSERT(!"dtype without an MPI reduction");
    return MPI_DATATYPE_NULL;
}

static void mpi_allreduce(tw_comm *c_, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op) {
    mpi_comm *c = (mpi_comm *)c_;
    MPI_Datatype type = mpi_type(dtype);
    MPI_Op mop = op == TW_REDUCE_SUM ? MPI_SUM : MPI_MAX;
    size_t elem = tw_dtype_size(dtype);
    for (size_t done = 0; done < n_elems; done += MAX_COUNT) {
        size_t n = n_elems - done < MAX_COUNT ? n_elems - done : MAX_COUNT;
        TW_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + done * elem, (int)n, type, mop, c->comm));
    }
}

/* MPI_Iallreduce in place. A non-blocking call is one request, so it takes at most INT_MAX
 * elements (the gradient buckets are far smaller; more is a bug). */
static void mpi_istart(tw_comm *c_, int slot, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op) {
    mpi_comm *c = (mpi_comm *)c_;
    TW_ASSERT(n_elems <= MAX_COUNT);
    TW_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n_elems, mpi_type(dtype), op == TW_REDUCE_SUM ? MPI_SUM : MPI_MAX,
                                c->comm, &c->req[slot]));
}

/* MPI_Test also moves the pending reductions on (Open MPI progresses only inside MPI calls). */
static int mpi_test(tw_comm *c_, int slot) {
    mpi_comm *c = (mpi_comm *)c_;
    int done = 0;
    if (c->req[slot] == MPI_REQUEST_NULL) return 1;
    TW_CHECK_MPI(MPI_Test(&c->req[slot], &done, MPI_STATUS_IGNORE));
    return done;
}

static void mpi_wait(tw_comm *c_, int slot) {
    mpi_comm *c = (mpi_comm *)c_;
    TW_CHECK_MPI(MPI_Wait(&c->req[slot], MPI_STATUS_IGNORE));
}

static void mpi_broadcast(tw_comm *c_, void *buf, size_t n_bytes, int root) {
    mpi_comm *c = (mpi_comm *)c_;
    for (size_t done = 0; done < n_bytes; done += MAX_COUNT) {
        size_t n = n_bytes - done < MAX_COUNT ? n_bytes - done : MAX_COUNT;
        TW_CHECK_MPI(MPI_Bcast((char *)buf + done, (int)n, MPI_BYTE, root, c->comm));
    }
}

static void mpi_allgather(tw_comm *c_, void *buf, size_t n_bytes) {
    mpi_comm *c = (mpi_comm *)c_;
    TW_CHECK_MPI(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)n_bytes, MPI_BYTE, c->comm));
}

static void mpi_barrier(tw_comm *c_) { TW_CHECK_MPI(MPI_Barrier(((mpi_comm *)c_)->comm)); }

static void mpi_abort(tw_comm *c_, int code) {
    (void)c_;
    fflush(NULL);
    /* On the world communicator: every process of the job goes, not just our duplicate's. */
    MPI_Abort(MPI_COMM_WORLD, code);
}

static void mpi_free(tw_comm *c_) {
    mpi_comm *c = (mpi_comm *)c_;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
        TW_CHECK_MPI(MPI_Comm_free(&c->comm));
        if (c->owns_init) TW_CHECK_MPI(MPI_Finalize());
    }
    free(c);
}

static const tw_comm_ops mpi_ops = {mpi_free,  mpi_allreduce, mpi_broadcast, mpi_barrier,
                                    mpi_abort, mpi_istart,    mpi_test,      mpi_wait,
                                    mpi_allgather};

tw_status tw_comm_mpi_create(tw_comm **out, int *argc, char ***argv, tw_err *err) {
    int inited = 0, finalized = 0, provided = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) return tw_err_set(err, TW_E_COMM, "MPI was already finalised in this process");
    mpi_comm *c = calloc(1, sizeof *c);
    if (!c) return tw_err_set(err, TW_E_NOMEM, "communicator: out of memory");
    if (!inited) {
        /* FUNNELED: only the main thread calls MPI (the loader's threads never do). */
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            free(c);
            return tw_err_set(err, TW_E_COMM, "MPI_Init_thread failed");
        }
        c->owns_init = 1;
    }
    TW_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    TW_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &c->comm));
    TW_CHECK_MPI(MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN));
    TW_CHECK_MPI(MPI_Comm_rank(c->comm, &c->base.rank));
    TW_CHECK_MPI(MPI_Comm_size(c->comm, &c->base.size));
    MPI_Comm node;
    TW_CHECK_MPI(MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->base.rank, MPI_INFO_NULL, &node));
    TW_CHECK_MPI(MPI_Comm_rank(node, &c->base.local_rank));
    TW_CHECK_MPI(MPI_Comm_size(node, &c->base.local_size));
    TW_CHECK_MPI(MPI_Comm_free(&node));
    for (int i = 0; i < TW_COMM_MAX_PENDING; i++) c->req[i] = MPI_REQUEST_NULL;
    c->base.ops = &mpi_ops;
    c->base.kind = TW_COMM_MPI;
    *out = &c->base;
    return TW_OK;
}
