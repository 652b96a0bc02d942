/* One whole Barlow Twins training step — the product's, tw_loop_step (src/train/step.c) on the
 * Barlow Twins task (src/train/bt_task.c): backbone + projector + loss + backward + bucketed
 * all-reduce + optimizer — against PyTorch's (ref_bt_step.py) from the same initial state and the
 * same two views: the loss, every parameter's gradient, every parameter and BN buffer after the
 * step and its update (after - before), the BN counters and the optimizer's step count, for Adam
 * and for LARS, fp32. One process only: with two ranks the backbone's BN
 * statistics are per rank, which torch's one-process step does not have (test_dist_equiv.c covers
 * ranks). The communicator argument is there to make that choice explicit.
 * With "cross C_S2", the cross-modal model's step (model/bt_model.h, cross): C is the S1 view's
 * channels, C_S2 the S2 view's, and every s1.*, s2.* and bn.* tensor is compared the same way.
 * With "cross C_S2 decur COMMON INTRA" the batch holds a second S1 and S2 view (y3, y4) and the
 * loss has DeCUR's intra-modal terms (loss.intra, loss.common_dims; loss/barlow.h).
 * usage: test_bt_step REF.safetensors N C H D adam|lars single|mpi [cross C_S2 [decur COMMON INTRA]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/log.h"
#include "train/bt_task.h"
#include "train/step.h"

/* The updates are differences of float32 parameters, so they carry the parameters' rounding:
 * 1e-3 of the update's norm, where a missing or doubled update is off by 1. */
#define UPDATE_TOL 1e-3

int main(int argc, char **argv) {
    int cross = (argc == 10 || argc == 13) && !strcmp(argv[8], "cross");
    int decur = cross && argc == 13 && !strcmp(argv[10], "decur");
    if (argc != 8 && !cross && !(argc == 13 && decur)) {
        fprintf(stderr, "usage: %s REF.safetensors N C H D adam|lars single|mpi [cross C_S2 [decur COMMON INTRA]]\n",
                argv[0]);
        return 1;
    }
    int c_s2 = cross ? (int)strtol(argv[9], NULL, 10) : 0;
    tw_comm *comm = check_comm(argv[7], &argc, &argv);
    int rank = tw_comm_rank(comm), size = tw_comm_size(comm);
    int n = (int)strtol(argv[2], NULL, 10), c = (int)strtol(argv[3], NULL, 10);
    int h = (int)strtol(argv[4], NULL, 10), d = (int)strtol(argv[5], NULL, 10);
    int lars = !strcmp(argv[6], "lars");
    TW_ASSERT(n % size == 0);
    tw_err err = {0};
    tw_st_file *f = NULL;
    if (tw_st_open(&f, argv[1], &err) != TW_OK) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    tw_backend *be = NULL;
    if (tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) != TW_OK) {
        fprintf(stderr, "FAIL: backend: %s\n", err.msg);
        return 1;
    }
    /* The hyper-parameters of ref_bt_step.py. */
    tw_bt_opts o = {.model = {.cross = cross, .c_in = {c, cross ? c_s2 : c}, .h = h, .w = h, .n_local = n / size,
                              .bn_groups = 1, .proj_dim = d, .intra = decur},
                    .lambda = 0.0051f,
                    .intra = decur ? strtof(argv[12], NULL) : 0.0f,
                    .common = decur ? (int)strtol(argv[11], NULL, 10) : 0};
    tw_step_opts so = {.graph = TW_GRAPH_AUTO};
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
    tw_step *step = NULL;
    tw_task task = {0};
    tw_status st = tw_step_init(&step, be, comm, &err);
    if (st == TW_OK) st = tw_bt_task_init(&task, be, comm, &o, tw_step_bad(step), &err);
    if (st == TW_OK) st = tw_step_bind(step, &task, &so, &err);
    if (st != TW_OK) {
        fprintf(stderr, "FAIL: model: %s\n", err.msg);
        return 1;
    }
    tw_params *P = task.P;
    tw_params_load_opts lo = {.file_prefix = "init.", .entry_prefix = "", .ignore_prefix = NULL,
                              .allow_extra = 1};
    if (tw_params_load(P, f, &lo, &err) != TW_OK) {
        fprintf(stderr, "FAIL: loading the initial state: %s\n", err.msg);
        return 1;
    }
    /* This rank's share of the two views, as the loader's batch: cross, S1 view 0 and S2 view 0;
     * otherwise S2 views 0 and 1. */
    int c_view[4] = {c, cross ? c_s2 : c, c, c_s2}, n_views = decur ? 4 : 2;
    float *y[4] = {check_read_f32(f, "y1", NULL), check_read_f32(f, "y2", NULL),
                   decur ? check_read_f32(f, "y3", NULL) : NULL, decur ? check_read_f32(f, "y4", NULL) : NULL};
    float *mine[4];
    for (int v = 0; v < n_views; v++) mine[v] = y[v] + rank * (size_t)(n / size) * c_view[v] * h * h;
    tw_batch b = {.n = n / size, .h = h, .w = h};
    if (cross) {
        for (int v = 0; v < n_views; v++) {
            if (v % 2) b.s2[v / 2] = mine[v];
            else b.s1[v / 2] = mine[v];
        }
    } else {
        b.s2[0] = mine[0];
        b.s2[1] = mine[1];
    }

    double loss = tw_loop_step(step, &b, NULL);

    int ok = 1;
    float lossf = (float)loss, *loss_ref = check_read_f32(f, "loss", NULL);
    ok &= check_close("loss", &lossf, loss_ref, 1, 1e-5);
    size_t max_n = 0;
    for (int i = 0; i < P->n_entries; i++)
        if (P->entries[i].n_elems > max_n) max_n = P->entries[i].n_elems;
    float *got = malloc(max_n * sizeof(float));
    char name[160];
    /* Each parameter's and buffer's update (after - before) against torch's: the parameters
     * themselves would match within tolerance with no update at all (Adam at lr 1e-3 moves them
     * by less than 1e-4 of their norm). */
    float *before = malloc(max_n * sizeof(float));
    for (int i = 0; i < P->n_entries && rank == 0; i++) {
        const tw_param_entry *e = &P->entries[i];
        size_t cnt;
        if (e->kind == TW_PARAM_COUNTER) {
            /* BN's num_batches_tracked: one more after the step, as torch's. */
            snprintf(name, sizeof name, "after.%s", e->name);
            const tw_st_tensor *t = tw_st_find(f, name);
            int64_t want = -1;
            if (!t || t->dtype != TW_I64 || t->n_elems != 1 || tw_st_read(f, &want, t, &err) != TW_OK) want = -1;
            int64_t have = *tw_params_counter(P, i);
            int good = have == want && want >= 1;
            printf("%s %-40s %lld (torch %lld)\n", good ? "ok  " : "FAIL", name, (long long)have, (long long)want);
            ok &= good;
            continue;
        }
        if (e->kind == TW_PARAM_TRAIN) {
            snprintf(name, sizeof name, "grad.%s", e->name);
            float *want = check_read_f32(f, name, &cnt);
            tw_mem_to_host(be, got, tw_params_grad(P, i), cnt * sizeof(float));
            ok &= check_close_l2(name, got, want, cnt, 1e-4);
            free(want);
        } else if (size > 1) {
            continue;   /* BN running statistics stay per rank: only one rank's match torch's */
        }
        snprintf(name, sizeof name, "init.%s", e->name);
        float *init = check_read_f32(f, name, &cnt);
        snprintf(name, sizeof name, "after.%s", e->name);
        float *want = check_read_f32(f, name, &cnt);
        tw_mem_to_host(be, got, tw_params_ptr(P, i), cnt * sizeof(float));
        ok &= check_close_l2(name, got, want, cnt, 1e-4);
        for (size_t k = 0; k < cnt; k++) {
            before[k] = got[k] - init[k];   /* this step's update, twinfuse's */
            want[k] -= init[k];             /* and torch's */
        }
        snprintf(name, sizeof name, "update.%s", e->name);
        ok &= check_close_l2(name, before, want, cnt, UPDATE_TOL);
        free(want);
        free(init);
    }
    /* The optimizer counted one step. */
    tw_optim *opt = tw_step_optim(step);
    int64_t steps = tw_optim_step_count(opt);
    printf("%s optimizer step count %lld (want 1)\n", steps == 1 ? "ok  " : "FAIL", (long long)steps);
    ok &= steps == 1;
    free(before);
    int64_t bad = !ok;
    tw_comm_allreduce(comm, &bad, 1, TW_I64, TW_REDUCE_MAX);
    free(got);
    free(loss_ref);
    for (int v = 0; v < 4; v++) free(y[v]);
    tw_step_free(step);
    task.free(&task);
    tw_st_close(f);
    tw_backend_free(be);
    tw_comm_free(comm);
    if (rank == 0) printf("%s\n", bad ? "FAIL" : "PASS");
    return bad ? 1 : 0;
}
