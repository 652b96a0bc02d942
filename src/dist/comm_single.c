/* The single-process communicator: rank 0 of 1, so reductions and broadcasts leave the buffer as
 * it is, and abort ends this process with the code. */
#include <stdio.h>
#include <stdlib.h>

#include "dist/comm_impl.h"

static void single_free(tw_comm *c) { free(c); }

static void single_allreduce(tw_comm *c, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op) {
    (void)c; (void)buf; (void)n_elems; (void)dtype; (void)op;
}

static void single_broadcast(tw_comm *c, void *buf, size_t n_bytes, int root) {
    (void)c; (void)buf; (void)n_bytes; (void)root;
}

static void single_barrier(tw_comm *c) { (void)c; }

static void single_abort(tw_comm *c, int code) {
    (void)c;
    fflush(NULL);
    _Exit(code);
}

/* One rank: a started reduction is already complete. */
static void single_istart(tw_comm *c, int slot, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op) {
    (void)c; (void)slot; (void)buf; (void)n_elems; (void)dtype; (void)op;
}

static int single_test(tw_comm *c, int slot) {
    (void)c; (void)slot;
    return 1;
}

static void single_wait(tw_comm *c, int slot) { (void)c; (void)slot; }

static void single_allgather(tw_comm *c, void *buf, size_t n_bytes) { (void)c; (void)buf; (void)n_bytes; }

static const tw_comm_ops single_ops = {
    single_free, single_allreduce, single_broadcast, single_barrier, single_abort,
    single_istart, single_test, single_wait, single_allgather,
};

tw_status tw_comm_single_create(tw_comm **out, tw_err *err) {
    tw_comm *c = calloc(1, sizeof *c);
    if (!c) return tw_err_set(err, TW_E_NOMEM, "communicator: out of memory");
    c->ops = &single_ops;
    c->kind = TW_COMM_SINGLE;
    c->rank = 0;
    c->size = 1;
    c->local_rank = 0;
    c->local_size = 1;
    *out = c;
    return TW_OK;
}
