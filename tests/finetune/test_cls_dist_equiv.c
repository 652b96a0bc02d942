/* Ranks against one rank for fine-tuning, run under mpirun -np 2: the same k classification steps
 * (S1+S2 feature fusion, gated head, every layer learning) on 2 ranks x B/2 and on one rank x B
 * through the product's step (tw_loop_step on the finetune task: bucketed all-reduce, mean
 * over the ranks, checked update) give the same mean loss at every step and the same parameters
 * on both ranks after k steps. The optimizer is SGD, whose update is proportional to the
 * gradient, so an all-reduce that summed where it should average (or the reverse) moves the parameters twice (half) as far and fails.
 * The two runs' parameters are compared by how far they moved: after the first step the runs'
 * float32 rounding differs (other batch shapes, other kernels), and a ReLU input that lands on the
 * other side of its tie changes whole gradient tensors by ~1e-3 of their norm (measured with oneDNN
 * capped at AVX2: 2e-4 of s1.conv1.weight's largest entry). So the difference is measured against
 * the distance the parameters travelled from their initial values, in norm: within 1e-2 over all
 * of them, and within 1e-1 for each tensor (a BN bias that barely moves: up to 1e-2 measured); a
 * wrong reduction is 50-100 % of it in every tensor.
 * The backbones' BN is per rank, so the one-rank run computes it over 2 groups (bn_groups).
 * usage: mpirun -np 2 test_cls_dist_equiv SHARD_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pretrain/check.h"
#include "config/finetune.h"
#include "core/log.h"
#include "data/loader.h"
#include "optim/optim.h"
#include "train/finetune.h"
#include "train/step.h"

enum { B = 8, STEPS = 3 };

typedef struct result {
    double loss[STEPS];
    float *params, *init;   /* after the steps, and before them */
    size_t n_params;
    tw_param_entry *entries;
    int n_entries;
} result;

static int run(result *r, tw_comm *comm, tw_backend *be, const tw_finetune_cfg *cfg, int groups) {
    tw_err err = {0};
    tw_loader *ld = NULL;
    tw_step *step = NULL;
    tw_task task = {0};
    tw_status st = tw_step_init(&step, be, comm, &err);
    if (st == TW_OK) st = tw_finetune_task_init(&task, be, comm, cfg, groups, tw_step_bad(step), NULL, &err);
    if (st == TW_OK) st = task.reset(&task, 11, &err);
    tw_step_opts so = {.bucket_elems = 1 << 16, .graph = TW_GRAPH_AUTO};
    so.optim = (tw_optim_hparams){.kind = TW_OPTIM_KIND_SGD, .lr = 0.05, .lr_bias_scale = 1, .momentum = 0.9,
                                  .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .eta = 0.001};
    so.sched = (tw_schedule){.kind = TW_SCHEDULE_CONSTANT, .total_steps = STEPS, .final_ratio = 1};
    if (st == TW_OK) st = tw_step_bind(step, &task, &so, &err);
    if (st != TW_OK) {
        fprintf(stderr, "FAIL: model: %s\n", err.msg);
        return 0;
    }
    tw_classifier_run *c = tw_finetune_task_classifier(&task);
    tw_loader_opts lo = c->lo;
    lo.global_batch = B;
    lo.seed = 5;
    if (tw_loader_init(&ld, &lo, &err) != TW_OK) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 0;
    }
    r->init = malloc(c->P.n_params * sizeof(float));
    TW_ASSERT(r->init);
    tw_mem_to_host(be, r->init, c->P.params, c->P.n_params * sizeof(float));
    for (int s = 0; s < STEPS; s++) {
        const tw_batch *b = NULL;
        if (tw_loader_next(ld, &b, &err) != TW_OK) {
            fprintf(stderr, "FAIL: loader: %s\n", err.msg);
            return 0;
        }
        r->loss[s] = tw_loop_step(step, b, NULL);
        if (!isfinite(r->loss[s])) {
            fprintf(stderr, "FAIL: non-finite gradients at step %d\n", s + 1);
            return 0;
        }
    }
    r->n_params = c->P.n_params;
    r->params = malloc(r->n_params * sizeof(float));
    tw_mem_to_host(be, r->params, c->P.params, r->n_params * sizeof(float));
    r->n_entries = c->P.n_entries;
    r->entries = malloc((size_t)r->n_entries * sizeof *r->entries);
    TW_ASSERT(r->params && r->entries);
    memcpy(r->entries, c->P.entries, (size_t)r->n_entries * sizeof *r->entries);
    tw_loader_free(ld);
    tw_step_free(step);
    task.free(&task);
    return 1;
}

/* Every trained tensor of a within tol (norm-relative) of b's. */
static int same_params(const result *a, const result *b, double tol, const char *what) {
    int same = 1;
    for (int i = 0; i < a->n_entries; i++) {
        const tw_param_entry *e = &a->entries[i];
        if (e->kind != TW_PARAM_TRAIN) continue;
        char name[160];
        snprintf(name, sizeof name, "%s: %s", what, e->name);
        double err_max = 0, ref = 0;
        for (size_t j = 0; j < e->n_elems; j++) {
            err_max = fmax(err_max, fabs((double)a->params[e->offset + j] - b->params[e->offset + j]));
            ref = fmax(ref, fabs((double)b->params[e->offset + j]));
        }
        if (err_max > tol * ref) same &= check_close(name, a->params + e->offset, b->params + e->offset, e->n_elems, tol);
    }
    return same;
}

/* a against b, measured by the distance b travelled from its initial value, in norm: over all
 * trained tensors within tol_all, each tensor within tol_each. */
static int same_updates(const result *a, const result *b, double tol_all, double tol_each,
                        const char *what) {
    int same = 1;
    double worst = 0, diff_all = 0, moved_all = 0;
    const char *worst_name = "-";
    for (int i = 0; i < a->n_entries; i++) {
        const tw_param_entry *e = &a->entries[i];
        if (e->kind != TW_PARAM_TRAIN) continue;
        double diff = 0, moved = 0;
        for (size_t j = 0; j < e->n_elems; j++) {
            double d = (double)a->params[e->offset + j] - b->params[e->offset + j];
            double m = (double)b->params[e->offset + j] - b->init[e->offset + j];
            diff += d * d;
            moved += m * m;
        }
        diff_all += diff;
        moved_all += moved;
        double rel = moved > 0 ? sqrt(diff / moved) : sqrt(diff);
        if (rel > worst) {
            worst = rel;
            worst_name = e->name;
        }
        if (!(rel <= tol_each)) {
            printf("FAIL %s: %s: ||difference|| = %.3e of the distance travelled (tol %g)\n", what,
                   e->name, rel, tol_each);
            same = 0;
        }
    }
    double rel_all = moved_all > 0 ? sqrt(diff_all / moved_all) : sqrt(diff_all);
    if (!(rel_all <= tol_all)) {
        printf("FAIL %s: all tensors: ||difference|| = %.3e of the distance travelled (tol %g)\n",
               what, rel_all, tol_all);
        same = 0;
    }
    printf("# %s: difference %.3e of the distance travelled over all tensors, at most %.3e in one "
           "(%s)\n", what, rel_all, worst, worst_name);
    return same;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: mpirun -np 2 %s SHARD_DIR\n", argv[0]);
        return 1;
    }
    tw_comm *mpi = check_comm("mpi", &argc, &argv);
    int rank = tw_comm_rank(mpi);
    if (tw_comm_size(mpi) != 2) {
        fprintf(stderr, "FAIL: run me under mpirun -np 2 (got %d ranks)\n", tw_comm_size(mpi));
        return 1;
    }
    tw_err err = {0};
    char shards[600];
    snprintf(shards, sizeof shards, "data.shards=%s", argv[1]);
    char *ov[] = {shards, "data.source=s1+s2", "data.s2_bands=rgb", "model.fusion=feature", "model.head=gated",
                  "data.size=64", "data.batch=8", "model.backbone_lr_scale=0.5"};
    tw_finetune_cfg cfg;
    tw_backend *be = NULL;
    if (tw_cfg_load(tw_finetune_schema(), &cfg, NULL, 8, ov, &err) != TW_OK ||
        tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) != TW_OK) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    result two = {0}, one = {0};
    int ok = run(&two, mpi, be, &cfg, 1);
    /* Both ranks must hold the same parameters: rank 1's go to rank 0 by a sum with zeros. */
    float *other = NULL;
    if (ok) {
        other = calloc(two.n_params, sizeof(float));
        if (rank == 1) memcpy(other, two.params, two.n_params * sizeof(float));
        tw_comm_allreduce(mpi, other, two.n_params, TW_F32, TW_REDUCE_SUM);
    }
    int64_t bad = !ok;
    tw_comm_allreduce(mpi, &bad, 1, TW_I64, TW_REDUCE_MAX);
    if (rank == 0 && !bad) {
        result r1 = two;
        r1.params = other;
        ok = same_params(&r1, &two, 0, "rank 1 against rank 0");
        if (ok) printf("ok   both ranks hold bit-identical parameters after %d steps\n", STEPS);
        tw_comm *single = check_comm("single", &argc, &argv);
        ok &= run(&one, single, be, &cfg, 2);
        tw_comm_free(single);
        tw_log_set_rank(0);
        for (int s = 0; ok && s < STEPS; s++) {
            float l2 = (float)two.loss[s], l1 = (float)one.loss[s];
            char what[64];
            snprintf(what, sizeof what, "mean loss at step %d", s + 1);
            ok &= check_close(what, &l2, &l1, 1, 1e-5);
        }
        if (ok && same_updates(&two, &one, 1e-2, 1e-1, "2 ranks against 1"))
            printf("ok   parameters after %d SGD steps: within 1e-2 of the distance travelled in the "
                   "one-rank run (each tensor 1e-1)\n", STEPS);
        else
            ok = 0;
        bad = !ok;
    }
    tw_comm_allreduce(mpi, &bad, 1, TW_I64, TW_REDUCE_MAX);
    free(other);
    free(two.params);
    free(one.params);
    free(two.init);
    free(one.init);
    free(two.entries);
    free(one.entries);
    tw_backend_free(be);
    tw_comm_free(mpi);
    if (rank == 0) printf("%s\n", bad ? "FAIL" : "PASS");
    return bad ? 1 : 0;
}
