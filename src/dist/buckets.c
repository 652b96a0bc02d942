/* Bucketed, overlapped gradient all-reduce (buckets.h). Bucket k covers the k-th slice from the
 * span's end; buckets start in k order on every rank (the order collectives must match in), and
 * at most TW_COMM_MAX_PENDING are pending: the oldest is waited for before one more starts. */
#include "dist/buckets.h"

#include <stdlib.h>
#include <time.h>

#include "core/log.h"

struct tw_buckets {
    tw_comm *comm;
    float *buf;
    size_t base, n_elems, bucket_elems;
    int n;                 /* buckets */
    int started, retired;  /* buckets [0, started) started; [0, retired) waited for */
    int recording;         /* this step is recorded: no tests */
    tw_comm_req *req;      /* [n] */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Bucket k: buf[lo, hi) with lo = n_elems - (k + 1) bucket_elems clamped at 0. */
static size_t bucket_lo(const tw_buckets *b, int k) {
    size_t top = (size_t)(k + 1) * b->bucket_elems;
    return top >= b->n_elems ? 0 : b->n_elems - top;
}

static size_t bucket_hi(const tw_buckets *b, int k) { return b->n_elems - (size_t)k * b->bucket_elems; }

tw_status tw_buckets_create(tw_buckets **out, tw_comm *c, float *buf, size_t base, size_t n_elems,
                            size_t bucket_elems, tw_err *err) {
    *out = NULL;
    tw_buckets *b = calloc(1, sizeof *b);
    if (!b) return tw_err_set(err, TW_E_NOMEM, "gradient buckets: out of memory");
    b->comm = c;
    b->buf = buf;
    b->base = base;
    b->n_elems = n_elems;
    b->bucket_elems = bucket_elems && bucket_elems < n_elems ? bucket_elems : (n_elems ? n_elems : 1);
    b->n = n_elems ? (int)((n_elems + b->bucket_elems - 1) / b->bucket_elems) : 0;
    b->req = calloc(b->n ? (size_t)b->n : 1, sizeof *b->req);
    if (!b->req) {
        int n = b->n;
        free(b);
        return tw_err_set(err, TW_E_NOMEM, "gradient buckets: out of memory for %d buckets", n);
    }
    *out = b;
    return TW_OK;
}

void tw_buckets_free(tw_buckets *b) {
    if (!b) return;
    TW_ASSERT(b->started == b->retired);   /* nothing pending: the buffer is the caller's again */
    free(b->req);
    free(b);
}

int tw_buckets_count(const tw_buckets *b) { return b->n; }

void tw_buckets_begin(tw_buckets *b, int recording) {
    TW_ASSERT(b->started == b->retired);
    b->started = b->retired = 0;
    b->recording = recording;
}

static void start_next(tw_buckets *b) {
    if (b->started - b->retired == TW_COMM_MAX_PENDING) tw_comm_wait(b->comm, b->req[b->retired++]);
    int k = b->started++;
    size_t lo = bucket_lo(b, k);
    b->req[k] = tw_comm_iallreduce(b->comm, b->buf + lo, bucket_hi(b, k) - lo, TW_F32, TW_REDUCE_SUM);
}

static void on_ready(void *ctx, size_t lo) {
    tw_buckets *b = ctx;
    size_t rel = lo <= b->base ? 0 : lo - b->base;   /* the span's offset of the final range */
    while (b->started < b->n && bucket_lo(b, b->started) >= rel) start_next(b);
    /* Progress: MPI moves pending reductions only inside MPI calls, so test them here, between
     * the layers of backward; the completed ones at the front are retired. */
    while (!b->recording && b->retired < b->started && tw_comm_test(b->comm, b->req[b->retired]))
        tw_comm_wait(b->comm, b->req[b->retired++]);
}

tw_grad_ready tw_buckets_hook(tw_buckets *b) { return (tw_grad_ready){on_ready, b}; }

double tw_buckets_wait(tw_buckets *b) {
    double t0 = now_s();
    while (b->started < b->n) start_next(b);
    while (b->retired < b->started) tw_comm_wait(b->comm, b->req[b->retired++]);
    return now_s() - t0;
}
