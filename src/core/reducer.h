/* A sum over the ranks of a job, as a layer sees it. Layers whose statistics span every rank
 * (the synchronised batch norm) take one of these instead of a communicator, so model code never
 * includes dist/: dist/comm.h makes one from a communicator (tw_comm_reducer). */
#ifndef TW_REDUCER_H
#define TW_REDUCER_H

#include <stddef.h>

typedef struct tw_reducer {
    /* buf (n_elems f64, in the backend's memory) = its sum over every rank, in place; every rank
     * calls it with the same n_elems. f64: the synchronised BN's sums of x and x² about a shift
     * keep the variance exact in one collective (f32 would cancel it away where the mean is far
     * from the shift). */
    void (*sum_f64)(void *ctx, double *buf, size_t n_elems);
    void *ctx;
    int n_ranks;
} tw_reducer;

static inline void tw_reducer_sum(const tw_reducer *r, double *buf, size_t n_elems) {
    r->sum_f64(r->ctx, buf, n_elems);
}

#endif
