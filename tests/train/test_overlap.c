/* The loop's gradient path through the real models: backward with the gradient buckets started
 * from its "final" calls (core/grad_ready.h, dist/buckets.h) against the same backward and one
 * flat all-reduce, for the Barlow Twins model (2 BN groups: the accumulating backward), the
 * cross-modal model and the feature-fusion classifier (two backbones, gated head), with a bucket
 * far smaller than a layer. Run under mpirun -np 2 and -np 3: the reduced gradients must be equal
 * bit for bit on 2 ranks and within 1e-6 (relative) on 3 (MPI's per-element sum order may differ).
 * usage: [mpirun -np N] test_overlap */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/finetune.h"
#include "core/log.h"
#include "core/rng.h"
#include "dist/buckets.h"
#include "train/bt_task.h"
#include "train/classifier_run.h"

enum { SIZE = 32, N_LOCAL = 4, DIM = 32, BUCKET = 20000 };

static void fill(tw_backend *be, float *dst, size_t n, uint32_t stream, int rank) {
    float *h = malloc(n * sizeof(float));
    TW_ASSERT(h);
    tw_rng r;
    tw_rng_init(&r, 3, stream, (uint32_t)rank, 0);
    for (size_t i = 0; i < n; i++) h[i] = tw_rng_normal(&r);
    tw_mem_from_host(be, dst, h, n * sizeof(float));
    free(h);
}

/* What the model under test does: its forward-backward with a listener (or none). */
typedef struct subject {
    const char *name;
    double (*fb)(void *m, const tw_grad_ready *ready);
    void *m;
    tw_params *P;
    size_t offset, n_elems;   /* the trained gradients' span */
} subject;

static double task_fb(void *m, const tw_grad_ready *r) {
    tw_task *t = m;
    return t->step(t, r);
}
static double cls_fb(void *m, const tw_grad_ready *r) {
    tw_classifier_run *c = m;
    tw_classifier_forward(&c->acts, c->x_s1, c->x_s2, &c->m, c->plans, 1);
    double loss = tw_bce_logits(c->be, c->acts.dlogits, c->acts.logits, c->targets, c->n_local, c->k);
    tw_classifier_backward(&c->m, &c->acts, c->acts.dlogits, c->plans, r);
    return loss;
}

/* Flat, then bucketed; returns 1 when the reduced gradients agree. The forward runs twice on the
 * same inputs, parameters and BN buffers (put back in between: a synchronised BN's sums are taken
 * about the running mean). */
static int check(tw_comm *comm, const subject *s) {
    int world = tw_comm_size(comm);
    size_t n = s->n_elems;
    float *flat = malloc(n * sizeof(float)), *g = s->P->grads + s->offset;
    TW_ASSERT(flat);
    size_t nb = s->P->n_buffers;
    float *kept = malloc((nb + 1) * sizeof(float));
    TW_ASSERT(kept);
    tw_mem_to_host(s->P->be, kept, s->P->buffers, nb * sizeof(float));
    double l1 = s->fb(s->m, NULL);
    tw_mem_from_host(s->P->be, s->P->buffers, kept, nb * sizeof(float));
    free(kept);
    tw_comm_allreduce(comm, g, n, TW_F32, TW_REDUCE_SUM);
    tw_mem_to_host(s->P->be, flat, g, n * sizeof(float));
    tw_buckets *b = NULL;
    tw_err err = {0};
    TW_ASSERT(tw_buckets_create(&b, comm, g, s->offset, n, BUCKET, &err) == TW_OK);
    tw_grad_ready ready = tw_buckets_hook(b);
    tw_buckets_begin(b, 0);
    double l2 = s->fb(s->m, &ready);
    tw_buckets_wait(b);
    float *host = malloc(n * sizeof(float));
    TW_ASSERT(host);
    tw_mem_to_host(s->P->be, host, g, n * sizeof(float));
    double worst = 0, tol = world <= 2 ? 0.0 : 1e-6;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)host[i] - flat[i]) / fmax(1.0, fabs(flat[i]));
        if (isnan(d)) d = INFINITY;
        if (d > worst) worst = d, at = i;
    }
    int ok = isfinite(l1) && l1 == l2 && worst <= tol;
    if (tw_comm_rank(comm) == 0)
        printf("%s %s, %d ranks, %d buckets of %d: max rel. difference %.3g at %zu (allowed %.0g), loss %.6f\n",
               ok ? "  ok  " : "  FAIL", s->name, world, tw_buckets_count(b), BUCKET, worst, at, tol, l1);
    tw_buckets_free(b);
    free(flat);
    free(host);
    return ok;
}

static tw_bt_opts bt_opts(int cross) {
    tw_bt_opts o = {.model = {.cross = cross, .c_in = {2, cross ? 3 : 2}, .h = SIZE, .w = SIZE, .n_local = N_LOCAL,
                              .bn_groups = 2, .proj_dim = DIM},
                    .lambda = 0.0051f};
    return o;
}

int main(void) {
    tw_comm *comm = NULL;
    tw_backend *be = NULL;
    tw_err err = {0};
    if (tw_comm_create(&comm, tw_comm_kind_auto(0), NULL, NULL, &err) != TW_OK ||
        tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) != TW_OK) {
        fprintf(stderr, "test_overlap: %s\n", err.msg);
        return 1;
    }
    int rank = tw_comm_rank(comm), ok = 1;
    size_t view = (size_t)N_LOCAL * SIZE * SIZE;

    int *flag = tw_mem_alloc(be, sizeof(int));   /* the step's verdict flag, as train/step.c's */
    tw_mem_zero(be, flag, sizeof(int));
    const char *names[2] = {"barlow twins (2 BN groups)", "cross-modal barlow twins (2 BN groups)"};
    for (int cross = 0; cross < 2; cross++) {
        tw_task t;
        tw_bt_opts o = bt_opts(cross);
        TW_ASSERT(tw_bt_task_init(&t, be, comm, &o, flag, &err) == TW_OK);
        TW_ASSERT(t.reset(&t, (uint64_t)(1 + cross), &err) == TW_OK);
        tw_bt_model *m = &tw_bt_task_of(&t)->m;
        for (int v = 0; v < 2; v++) fill(be, m->x[v], view * o.model.c_in[v], (uint32_t)(10 * cross + v), rank);
        ok &= check(comm, &(subject){names[cross], task_fb, &t, t.P, 0, t.P->n_params});
        t.free(&t);
    }
    tw_mem_free(be, flag);

    char *ov[] = {"data.shards=unused", "data.source=s1+s2", "data.s2_bands=rgb", "model.fusion=feature",
                  "model.head=gated", "data.size=32"};
    tw_finetune_cfg cfg;
    tw_classifier_run c;
    TW_ASSERT(tw_cfg_load(tw_finetune_schema(), &cfg, NULL, 6, ov, &err) == TW_OK);
    TW_ASSERT(tw_classifier_run_init(&c, be, comm, &cfg, N_LOCAL, 1, 1, &err) == TW_OK);
    TW_ASSERT(tw_classifier_run_init_weights(&c, 3, &err) == TW_OK);
    fill(be, c.x_s1, view * c.c_s1, 20, rank);
    fill(be, c.x_s2, view * c.c_s2, 21, rank);
    fill(be, c.targets, (size_t)N_LOCAL * c.k, 22, rank);
    ok &= check(comm, &(subject){"feature-fusion classifier", cls_fb, &c, &c.P, 0, c.P.n_params});
    tw_classifier_run_free(&c);

    int64_t bad = !ok;
    tw_comm_allreduce(comm, &bad, 1, TW_I64, TW_REDUCE_MAX);
    tw_backend_free(be);
    tw_comm_free(comm);
    return bad ? 1 : 0;
}
