/* One whole Barlow Twins training step — the product's, tw_loop_step (src/train/step.c) on the
 * Barlow Twins task (src/train/bt_task.c): ResNet18 + projector + loss + backward + bucketed
 * all-reduce + optimizer — on the CUDA backend against the same step on the CPU backend (fp32, the
 * reference), from the same initial state and the same two views: the loss, every parameter's
 * gradient, every parameter and BN buffer after the update. CUDA fp32: normalised MSE 1e-8 per
 * tensor (1e-4 relative) and loss within 1e-4; CUDA bf16: nmse 1e-2 on gradients, 1e-3 on the
 * updated parameters and BN buffers, loss within 2e-2. Then the whole step recorded as one CUDA
 * graph (backend.graph on: tw_step_opts.graph) against the same steps run eagerly on the GPU
 * (graph off), over GRAPH_STEPS steps on new views each (the first eager, the second recorded,
 * the rest replays) and a last step on views with a NaN, which both must reject leaving
 * parameters, BN buffers, optimizer state and counters as they were (the step's rollback):
 * losses, parameters, BN buffers, optimizer state and counters equal (fp32 nmse 1e-12,
 * bf16 1e-8: cuDNN may pick an algorithm that sums in another order per call).
 * With "decur": the cross-modal model with DeCUR's intra-modal terms (S1 and S2 branches of C
 * channels each, four views, three loss terms: a recorded step hands back three loss values).
 * usage: test_cuda_bt_step N C H D adam|lars fp32|bf16|harness [decur]; exits 77 without a GPU.
 * harness: a second CPU backend stands in for the GPU, to keep the comparisons honest anywhere;
 * the CPU records nothing, so there the graph check says "skipped" for the recording and compares
 * two eager runs of the same step function. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "train/bt_task.h"
#include "train/step.h"

static double nmse(const float *got, const float *want, size_t n, size_t *n_nonfinite) {
    double se = 0, sw = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(want[i])) {
            (*n_nonfinite)++;
            continue;
        }
        double e = (double)got[i] - want[i];
        se += e * e;
        sw += (double)want[i] * want[i];
    }
    return se / (sw > 1e-30 ? sw : 1e-30);
}

static float *fetch(tw_backend *be, const float *p, size_t n) {
    float *h = malloc(n * sizeof *h);
    TW_ASSERT(h);
    tw_mem_to_host(be, h, p, n * sizeof *h);
    return h;
}

/* The product's step and the Barlow Twins task on one backend. */
typedef struct runner {
    tw_backend *be;
    tw_step *step;
    tw_task task;
    tw_params *P;
} runner;

static tw_status runner_make(runner *r, tw_backend *be, tw_comm *comm, const tw_bt_opts *o, const tw_step_opts *so,
                             tw_err *err) {
    memset(r, 0, sizeof *r);
    r->be = be;
    tw_status st = tw_step_init(&r->step, be, comm, err);
    if (st == TW_OK) st = tw_bt_task_init(&r->task, be, comm, o, tw_step_bad(r->step), err);
    if (st == TW_OK) st = tw_step_bind(r->step, &r->task, so, err);
    if (st == TW_OK) st = r->task.reset(&r->task, 1234, err);
    r->P = r->task.P;
    return st;
}

static void runner_free(runner *r) {
    tw_step_free(r->step);
    if (r->task.free) r->task.free(&r->task);
}

/* One step on the views (host, [n, c, h, w] each): the loader's S2 views 0 and 1, or with decur
 * its S1 and S2 of views 0 and 1. */
static double run_step(runner *r, const float *const *v) {
    const tw_bt_model_opts *o = &tw_bt_task_of(&r->task)->o.model;
    tw_batch b = {.n = o->n_local, .h = o->h, .w = o->w};
    if (o->intra) {
        b.s1[0] = (float *)v[0];
        b.s2[0] = (float *)v[1];
        b.s1[1] = (float *)v[2];
        b.s2[1] = (float *)v[3];
    } else {
        b.s2[0] = (float *)v[0];
        b.s2[1] = (float *)v[1];
    }
    return tw_loop_step(r->step, &b, NULL);
}

enum { GRAPH_STEPS = 5 };

/* Every float of the model that a step changes: parameters, BN buffers, optimizer state. */
static float *snapshot(runner *m, size_t *n_out) {
    size_t np = m->P->n_params, nb = m->P->n_buffers, n = 3 * np + nb;
    float *h = malloc(n * sizeof *h);
    TW_ASSERT(h);
    tw_mem_to_host(m->be, h, m->P->params, np * sizeof *h);
    tw_mem_to_host(m->be, h + np, m->P->buffers, nb * sizeof *h);
    memset(h + np + nb, 0, 2 * np * sizeof *h);
    tw_optim *opt = tw_step_optim(m->step);
    for (int i = 0; i < tw_optim_state_count(opt); i++) tw_optim_state_to_host(opt, i, h + np + nb + i * np);
    *n_out = n;
    return h;
}

/* The graph check of the header: eager (e) and recorded (g) models on the same backend. */
static int check_graph(tw_backend *be, tw_comm *comm, const tw_bt_opts *o, const tw_step_opts *so,
                       const float *views, size_t per_view, int n_views, int bf16) {
    tw_step_opts soe = *so, sog = *so;
    soe.graph = TW_GRAPH_OFF;
    sog.graph = TW_GRAPH_ON;
    runner me, mg;
    tw_err err = {0};
    if (runner_make(&me, be, comm, o, &soe, &err) != TW_OK || runner_make(&mg, be, comm, o, &sog, &err) != TW_OK) {
        printf("FAIL: graph models: %s\n", err.msg);
        return 0;
    }
    tw_mem_copy(be, mg.P->params, me.P->params, me.P->n_params * sizeof(float));
    tw_mem_copy(be, mg.P->buffers, me.P->buffers, me.P->n_buffers * sizeof(float));
    double tol = bf16 ? 1e-8 : 1e-12;
    int ok = 1;
    float *nan_views = malloc(n_views * per_view * sizeof *nan_views);
    TW_ASSERT(nan_views);
    memcpy(nan_views, views, n_views * per_view * sizeof *nan_views);
    nan_views[per_view / 3] = NAN;
    size_t n_snap = 0;
    float *before = NULL;
    int64_t counters_before = 0;
    for (int step = 1; step <= GRAPH_STEPS + 1; step++) {
        int reject = step == GRAPH_STEPS + 1;
        /* New views every step, as the loader's: the views turned by one each step. */
        const float *src[4];
        for (int v = 0; v < n_views; v++)
            src[v] = reject ? nan_views + v * per_view : views + ((v + step) % n_views) * per_view;
        if (reject) {
            before = snapshot(&mg, &n_snap);
            counters_before = mg.P->counters[0];
        }
        double le = run_step(&me, src), lg = run_step(&mg, src);
        int pass = reject ? isnan(le) && isnan(lg) : (le == lg || fabs(le - lg) <= 1e-6 * fabs(le));
        ok &= pass;
        int recorded = tw_step_recorded(mg.step);
        const char *how = !recorded || step == 1 ? "eager" : step == 2 ? "recorded" : "replayed";
        printf("%s graph step %d (%s%s): loss eager %.9g, graph %.9g\n", pass ? "PASS" : "FAIL", step, how,
               reject ? ", NaN views, rejected" : "", le, lg);
    }
    size_t n_e = 0, n_g = 0, n_nf = 0;
    float *se = snapshot(&me, &n_e), *sg = snapshot(&mg, &n_g);
    /* The rejected step's BN forwards moved the running statistics (NaN): the step's rollback
     * put them back, so BN buffers are compared too. */
    double e_eg = nmse(sg, se, n_g, &n_nf);
    int pass = e_eg <= tol && n_nf == 0;
    printf("%s graph vs eager after %d steps: parameters, BN buffers and optimizer state nmse %.3e (tol %.0e)%s%s\n",
           pass ? "PASS" : "FAIL", GRAPH_STEPS + 1, e_eg, tol, memcmp(se, sg, n_g * sizeof *sg) ? "" : ", bit-equal",
           n_nf ? ", non-finite values" : "");
    ok &= pass;
    pass = !memcmp(before, sg, n_g * sizeof *sg);
    printf("%s the rejected replay left parameters, BN buffers and optimizer state as they were\n",
           pass ? "PASS" : "FAIL");
    ok &= pass;
    tw_optim *oe = tw_step_optim(me.step), *og = tw_step_optim(mg.step);
    int same_counters = !memcmp(me.P->counters, mg.P->counters, me.P->n_counters * sizeof *me.P->counters);
    pass = same_counters && mg.P->counters[0] == counters_before && mg.P->counters[0] == 2 * GRAPH_STEPS &&
           tw_optim_step_count(og) == GRAPH_STEPS && tw_optim_step_count(oe) == GRAPH_STEPS;
    printf("%s counters: num_batches_tracked %lld / %lld (want %d), optimizer steps %lld / %lld (want %d)\n",
           pass ? "PASS" : "FAIL", (long long)me.P->counters[0], (long long)mg.P->counters[0], 2 * GRAPH_STEPS,
           (long long)tw_optim_step_count(oe), (long long)tw_optim_step_count(og), GRAPH_STEPS);
    ok &= pass;
    /* On a GPU the step must really have been recorded; the harness's CPU records none, and the
     * recording's check is skipped there (not passed). */
    int recorded = tw_step_recorded(mg.step);
    if (tw_backend_device(be) == TW_DEVICE_CUDA) {
        printf("%s graph: %s\n", recorded ? "PASS" : "FAIL", recorded ? "recorded and replayed" : "not recorded");
        ok &= recorded;
    } else {
        printf("SKIP graph: this backend records none (both runs eager); the recording is checked on a GPU\n");
    }
    free(se); free(sg); free(before); free(nan_views);
    runner_free(&mg);
    runner_free(&me);
    return ok;
}

int main(int argc, char **argv) {
    int decur = argc == 8 && !strcmp(argv[7], "decur");
    if (argc != 7 && !decur) {
        fprintf(stderr, "usage: %s N C H D adam|lars fp32|bf16|harness [decur]\n", argv[0]);
        return 1;
    }
    int harness = !strcmp(argv[6], "harness");
    if (!harness && tw_backend_device_count(TW_DEVICE_CUDA) <= 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    int n = (int)strtol(argv[1], NULL, 10), c = (int)strtol(argv[2], NULL, 10);
    int h = (int)strtol(argv[3], NULL, 10), d = (int)strtol(argv[4], NULL, 10);
    int lars = !strcmp(argv[5], "lars"), bf16 = !strcmp(argv[6], "bf16");
    tw_err err = {0};
    tw_comm *comm = NULL;
    tw_backend *cpu = NULL, *gpu = NULL;
    if (tw_comm_create(&comm, TW_COMM_SINGLE, &argc, &argv, &err) != TW_OK ||
        tw_backend_create(&cpu, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) != TW_OK ||
        tw_backend_create(&gpu, harness ? TW_DEVICE_CPU : TW_DEVICE_CUDA,
                          bf16 ? TW_PREC_BF16 : TW_PREC_FP32, 0, &err) != TW_OK) {
        printf("FAIL: setup: %s\n", err.msg);
        return 1;
    }
    char line[300];
    tw_backend_describe(gpu, line, sizeof line);
    printf("# %s; %d pairs of [%d, %d, %d], projector %d, %s%s\n", line, n, c, h, h, d, argv[5],
           decur ? ", cross-modal with intra-modal terms" : "");
    tw_bt_opts o = {.model = {.cross = decur, .intra = decur, .c_in = {c, c}, .h = h, .w = h, .n_local = n,
                              .bn_groups = 1, .proj_dim = d},
                    .lambda = 0.0051f, .intra = 0.5f, .common = d * 3 / 4};
    int n_views = decur ? 4 : 2;
    /* Adam eps 1, as tests/pretrain/ref_bt_step.py: with eps near 0 the first step is lr sign(g),
     * which rounding-level gradients (the zero-initialised BN biases) flip at random. */
    tw_step_opts so = {.bucket_elems = 1 << 20, .graph = TW_GRAPH_OFF};
    so.optim = (tw_optim_hparams){.momentum = 0.9, .beta1 = 0.9, .beta2 = 0.999, .eps = 1.0, .eta = 0.001};
    so.sched = (tw_schedule){.kind = TW_SCHEDULE_CONSTANT, .warmup_steps = 0, .total_steps = 1,
                             .final_ratio = 1.0};
    if (lars) {
        so.optim.kind = TW_OPTIM_KIND_LARS;
        so.optim.weight_decay = 1.5e-6;
        so.optim.lr = 0.2;
        so.optim.lr_bias_scale = 0.0048 / 0.2;
    } else {
        so.optim.kind = TW_OPTIM_KIND_ADAM;
        so.optim.weight_decay = 1e-4;
        so.optim.lr = 1e-3;
        so.optim.lr_bias_scale = 1.0;
    }
    runner mc, mg;
    if (runner_make(&mc, cpu, comm, &o, &so, &err) != TW_OK || runner_make(&mg, gpu, comm, &o, &so, &err) != TW_OK) {
        printf("FAIL: model: %s\n", err.msg);
        return 1;
    }
    /* The same initial state on both, whatever reset does per backend. */
    float *p0 = fetch(cpu, mc.P->params, mc.P->n_params), *b0 = fetch(cpu, mc.P->buffers, mc.P->n_buffers);
    tw_mem_from_host(gpu, mg.P->params, p0, mc.P->n_params * sizeof(float));
    tw_mem_from_host(gpu, mg.P->buffers, b0, mc.P->n_buffers * sizeof(float));
    free(p0);
    free(b0);
    size_t per_view = (size_t)n * c * h * h;
    tw_rng r;
    tw_rng_init(&r, 7, 0, 0, 0);
    float *views = malloc(n_views * per_view * sizeof(float));
    TW_ASSERT(views);
    for (size_t i = 0; i < n_views * per_view; i++) views[i] = tw_rng_normal(&r);
    const float *first[4] = {views, views + per_view, views + 2 * per_view, views + 3 * per_view};
    double loss_c = run_step(&mc, first), loss_g = run_step(&mg, first);

    double tol_loss = bf16 ? 2e-2 : 1e-4, tol_grad = bf16 ? 1e-2 : 1e-8;
    double tol_param = bf16 ? 1e-3 : 1e-8;
    int ok = fabs(loss_g - loss_c) <= tol_loss * fabs(loss_c);
    printf("%s loss cuda %.8g cpu %.8g (rel tol %.0e)\n", ok ? "PASS" : "FAIL", loss_g, loss_c, tol_loss);
    float *gc = fetch(cpu, mc.P->grads, mc.P->n_params), *gg = fetch(gpu, mg.P->grads, mg.P->n_params);
    float *pc = fetch(cpu, mc.P->params, mc.P->n_params), *pg = fetch(gpu, mg.P->params, mg.P->n_params);
    float *bc = fetch(cpu, mc.P->buffers, mc.P->n_buffers), *bg = fetch(gpu, mg.P->buffers, mg.P->n_buffers);
    int n_bad = 0, n_checked = 0;
    for (int i = 0; i < mc.P->n_entries; i++) {
        const tw_param_entry *e = &mc.P->entries[i];
        if (e->kind == TW_PARAM_COUNTER) continue;
        const float *got[2], *want[2];
        const char *what[2] = {"grad", e->kind == TW_PARAM_TRAIN ? "after" : "buffer"};
        double tol[2] = {tol_grad, tol_param};
        int k0 = e->kind == TW_PARAM_TRAIN ? 0 : 1;
        if (e->kind == TW_PARAM_TRAIN) {
            got[0] = gg + e->offset;
            want[0] = gc + e->offset;
            got[1] = pg + e->offset;
            want[1] = pc + e->offset;
        } else {
            got[1] = bg + e->offset;
            want[1] = bc + e->offset;
        }
        for (int k = k0; k < 2; k++) {
            size_t n_nf = 0;
            double err_k = nmse(got[k], want[k], e->n_elems, &n_nf);
            int pass = err_k <= tol[k] && n_nf == 0;
            n_checked++;
            if (!pass) n_bad++;
            if (!pass || i < 3)
                printf("%s %s.%s n=%zu nmse=%.3e (tol %.0e)%s\n", pass ? "PASS" : "FAIL", what[k],
                       e->name, e->n_elems, err_k, tol[k], n_nf ? " non-finite values" : "");
        }
    }
    printf("# %d of %d tensors out of tolerance\n", n_bad, n_checked);
    ok &= n_bad == 0;
    ok &= check_graph(gpu, comm, &o, &so, views, per_view, n_views, bf16);
    /* The exit code covers the checks that ran; the recording's is not among them off a GPU. */
    int recording_skipped = tw_backend_device(gpu) != TW_DEVICE_CUDA;
    free(gc); free(gg); free(pc); free(pg); free(bc); free(bg); free(views);
    runner_free(&mg);
    runner_free(&mc);
    tw_backend_free(gpu);
    tw_backend_free(cpu);
    tw_comm_free(comm);
    printf("%s%s\n", ok ? "PASS" : "FAIL", recording_skipped ? " (the graph recording skipped: no GPU)" : "");
    return ok ? 0 : 1;
}
