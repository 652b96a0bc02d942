/* A communicator that imitates a slower interconnect (comm.h: tw_comm_sim_wrap): every all-reduce
 * goes through the wrapped communicator and then also takes the time nccl-tests' model gives a
 * network of the chosen bus bandwidth and latency, one collective at a time on one channel (as
 * NCCL's communication stream runs them). For checking the overlap of docs/scaling.md's model on
 * one machine; broadcast, barrier and abort pass through. */
#include <stdlib.h>
#include <time.h>

#include "core/log.h"
#include "dist/comm_impl.h"

typedef struct sim_comm {
    struct tw_comm base;
    tw_comm *inner;
    double busbw, alpha;                    /* bytes per second, seconds */
    double channel_free;                    /* when the simulated channel is next idle */
    double done_at[TW_COMM_MAX_PENDING];    /* each pending call's simulated end */
} sim_comm;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_until(double t) {
    double left = t - now_s();
    if (left <= 0) return;
    struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
    nanosleep(&ts, NULL);
}

/* The simulated end of a collective of n_bytes starting now: alpha + n_bytes 2(n-1)/n / busbw after
 * the channel is free (nccl-tests' bus bandwidth of an all-reduce). */
static double schedule(sim_comm *c, size_t n_bytes) {
    double n = c->base.size, start = now_s();
    if (c->channel_free > start) start = c->channel_free;
    c->channel_free = start + c->alpha + (double)n_bytes * 2.0 * (n - 1) / n / c->busbw;
    return c->channel_free;
}

static void sim_allreduce(tw_comm *c_, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op) {
    sim_comm *c = (sim_comm *)c_;
    double end = schedule(c, n_elems * tw_dtype_size(dtype));
    c->inner->ops->allreduce(c->inner, buf, n_elems, dtype, op);
    sleep_until(end);
}

static void sim_istart(tw_comm *c_, int slot, void *buf, size_t n_elems, tw_dtype dtype, tw_reduce_op op) {
    sim_comm *c = (sim_comm *)c_;
    c->done_at[slot] = schedule(c, n_elems * tw_dtype_size(dtype));
    c->inner->ops->istart(c->inner, slot, buf, n_elems, dtype, op);
}

static int sim_test(tw_comm *c_, int slot) {
    sim_comm *c = (sim_comm *)c_;
    return c->inner->ops->test(c->inner, slot) && now_s() >= c->done_at[slot];
}

static void sim_wait(tw_comm *c_, int slot) {
    sim_comm *c = (sim_comm *)c_;
    c->inner->ops->wait(c->inner, slot);
    sleep_until(c->done_at[slot]);
}

static void sim_allgather(tw_comm *c_, void *buf, size_t n_bytes) {
    sim_comm *c = (sim_comm *)c_;
    /* An all-gather of S bytes in all moves S (n - 1) / n per rank, half an all-reduce's. */
    double end = schedule(c, n_bytes * (size_t)c_->size / 2);
    c->inner->ops->allgather(c->inner, buf, n_bytes);
    sleep_until(end);
}

static void sim_broadcast(tw_comm *c_, void *buf, size_t n_bytes, int root) {
    tw_comm *in = ((sim_comm *)c_)->inner;
    in->ops->broadcast(in, buf, n_bytes, root);
}

static void sim_barrier(tw_comm *c_) {
    tw_comm *in = ((sim_comm *)c_)->inner;
    in->ops->barrier(in);
}

static void sim_abort(tw_comm *c_, int code) {
    tw_comm *in = ((sim_comm *)c_)->inner;
    in->ops->abort(in, code);
}

static void sim_free(tw_comm *c_) {
    sim_comm *c = (sim_comm *)c_;
    c->inner->ops->free(c->inner);
    free(c);
}

static const tw_comm_ops sim_ops = {sim_free,  sim_allreduce, sim_broadcast, sim_barrier,
                                    sim_abort, sim_istart,    sim_test,      sim_wait,
                                    sim_allgather};

tw_status tw_comm_sim_create(tw_comm **out, tw_comm *inner, double busbw_gbs, double alpha_us, tw_err *err) {
    if (!(busbw_gbs > 0) || !(alpha_us >= 0))
        return tw_err_set(err, TW_E_RANGE, "simulated network: bus bandwidth %g GB/s and latency %g us must be > 0 and >= 0",
                          busbw_gbs, alpha_us);
    sim_comm *c = calloc(1, sizeof *c);
    if (!c) return tw_err_set(err, TW_E_NOMEM, "simulated network: out of memory");
    c->base = *inner;
    for (int i = 0; i < TW_COMM_MAX_PENDING; i++) c->base.busy[i] = 0;
    c->base.ops = &sim_ops;
    c->inner = inner;
    c->busbw = busbw_gbs * 1e9;
    c->alpha = alpha_us * 1e-6;
    *out = &c->base;
    return TW_OK;
}
