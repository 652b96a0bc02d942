/* Ranks against one rank, run under mpirun -np 2: the same k Barlow Twins steps (S1, the EO
 * augmentations, LARS) on 2 ranks x B/2 and on one rank x B, each through the product's step
 * (tw_loop_step, src/train/step.c: bucketed all-reduce, checked update), must give the same loss at every step
 * and the same parameters after the first step (1e-5), and the two ranks must read disjoint
 * samples whose union, in order, is the one rank's batch. The backbone's BN is per rank, so the
 * one-rank run splits its batch into 2 BN groups (tw_bt_model_opts.bn_groups), which is what 2 ranks
 * compute. With "cross", the same for the cross-modal model (model/bt_model.h): one loader view of S1
 * and three S2 bands per place, each augmented on its own streams, S1 branch against S2 branch.
 * With "sync" (model.backbone_bn: sync) the backbone's BN takes its statistics over both ranks,
 * so the one-rank run is one synchronised BN batch of B, as torch.nn.SyncBatchNorm on 2 ranks
 * equals BatchNorm2d on the whole batch; then the BN buffers (running mean and variance) and
 * num_batches_tracked must agree too. (That the synchronised ops compute BatchNorm2d is
 * backend.test_bn_sync's and model.resnet18_sync_*'s.) Both ranks' parameters (and buffers) must
 * be equal bit for bit after the last step. With "sgd", SGD with momentum replaces LARS: its
 * update is proportional to the gradient, so a mean of the ranks' gradients where their sum is
 * due (or the reverse) fails; under LARS it would pass.
 * Why parameters after the first step only: 1 and 2 ranks add the same numbers in different
 * orders (a GEMM over 8 rows against two of 4 and an all-reduce), so after one step the
 * parameters differ by about 1e-7. From then on a pre-activation within that distance of 0 takes
 * the other side of a ReLU here and there, and the BN biases' gradients, sums that cancel to
 * 1e-4 of their terms, jump by 1e-3 of themselves: measured, pass or fail at 1e-5 after 3 steps
 * was a coin toss of the rates, in every mode. The loss, one number over everything, stays within
 * 1e-5 at the first step and 1e-4 after.
 * With "gather" (loss.c_exchange: allgather) the ranks gather the embeddings and form all of C.
 * With "intra" (and cross) the cross-modal model with DeCUR's intra-modal terms: two loader views,
 * S1 and S2 each on their own streams, four embeddings, three terms (loss.intra, common_dims).
 * usage: mpirun -np 2 test_dist_equiv SHARD_DIR [cross [intra]] [sync] [gather] [sgd] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/log.h"
#include "data/augment.h"
#include "data/loader.h"
#include "train/bt_task.h"
#include "train/step.h"

enum { B = 8, STEPS = 3, SIZE = 64, DIM = 64, C_S2 = 3 };

static tw_aug_params g_aug, g_aug_s2;   /* read-only after main sets them */
static int g_cross;                     /* the cross-modal model */
static int g_sgd;                       /* SGD with momentum instead of LARS, one step */
static int g_sync;                      /* synchronised backbone BN */
static int g_gather;                    /* all-gather the embeddings (loss.c_exchange) */
static int g_intra;                     /* cross with intra-modal terms: four views */
static int g_steps = STEPS;

static tw_status hook(void *user, tw_view *out, const tw_view *in, uint64_t seed, int64_t epoch,
                      int64_t sample, int view, tw_err *err) {
    (void)user;
    (void)err;
    float *scratch = malloc(tw_augment_scratch_floats(out->h) * sizeof(float));
    TW_ASSERT(scratch);
    /* Cross-modal: S1 and S2 of loader view v on streams 2v and 2v + 1, as train/pretrain.c. */
    uint32_t s1_stream = g_cross ? 2 * (uint32_t)view : (uint32_t)view;
    tw_augment_view(out->s1, scratch, in->s1, in->c_s1, in->h, in->w, out->h, &g_aug, seed,
                    (uint32_t)epoch, (uint32_t)sample, s1_stream);
    if (g_cross)
        tw_augment_view(out->s2, scratch, in->s2, in->c_s2, in->h, in->w, out->h, &g_aug_s2, seed,
                        (uint32_t)epoch, (uint32_t)sample, s1_stream + 1);
    free(scratch);
    return TW_OK;
}

typedef struct result {
    double loss[STEPS];
    int64_t index[STEPS][B];     /* the global batch's samples in rank order */
    float *params, *buffers;     /* after the last step */
    float *params1, *buffers1;   /* after the first step */
    int64_t *counters1;
    size_t n_params, n_buffers, n_counters;
    tw_param_entry *entries;     /* where each tensor sits in params, to name a mismatch */
    int n_entries;
} result;

/* Entry e of the 2-rank and the 1-rank arrays within 1e-5 of the tensor's largest |value| (quiet
 * when it is; check_close prints the worst elements when not). */
static int tensor_close(const tw_param_entry *e, const float *two, const float *one) {
    const float *a = two + e->offset, *b = one + e->offset;
    double err_max = 0, ref = 0;
    for (size_t j = 0; j < e->n_elems; j++) {
        err_max = fmax(err_max, fabs((double)a[j] - b[j]));
        ref = fmax(ref, fabs((double)b[j]));
    }
    return err_max <= 1e-5 * ref || check_close(e->name, a, b, e->n_elems, 1e-5);
}

/* The parameters, buffers and counters after the first step. */
static void snapshot(result *r, const tw_params *P) {
    r->n_params = P->n_params;
    r->n_buffers = P->n_buffers;
    r->n_counters = P->n_counters;
    r->params1 = malloc(r->n_params * sizeof(float));
    r->buffers1 = malloc(r->n_buffers * sizeof(float));
    r->counters1 = malloc(r->n_counters * sizeof(int64_t));
    TW_ASSERT(r->params1 && r->buffers1 && r->counters1);
    tw_mem_to_host(P->be, r->params1, P->params, r->n_params * sizeof(float));
    tw_mem_to_host(P->be, r->buffers1, P->buffers, r->n_buffers * sizeof(float));
    memcpy(r->counters1, P->counters, r->n_counters * sizeof(int64_t));
}

/* g_steps steps (STEPS, or 1 with sgd) on comm with bn_groups BN groups per rank; every rank ends with the same result. */
static int run(result *r, tw_comm *comm, tw_backend *be, const char *dir, int groups) {
    int rank = tw_comm_rank(comm), world = tw_comm_size(comm), n_local = B / world;
    tw_err err = {0};
    tw_loader_opts lo;
    tw_loader_opts_default(&lo);
    lo.dir = dir;
    lo.split = "train";
    lo.global_batch = B;
    lo.rank = rank;
    lo.world = world;
    lo.seed = 5;
    lo.use_s1 = 1;
    lo.n_s2_bands = g_cross ? C_S2 : 0;
    for (int c = 0; c < lo.n_s2_bands; c++) lo.s2_bands[c] = c;
    lo.n_views = g_cross && !g_intra ? 1 : 2;
    lo.augment = hook;
    lo.out_h = lo.out_w = SIZE;
    tw_loader *ld = NULL;
    if (tw_loader_init(&ld, &lo, &err) != TW_OK) {
        fprintf(stderr, "FAIL: loader: %s\n", err.msg);
        return 0;
    }
    tw_bt_opts o = {.model = {.cross = g_cross, .c_in = {2, g_cross ? C_S2 : 2}, .h = SIZE, .w = SIZE,
                              .n_local = n_local, .bn_groups = groups, .backbone_sync = g_sync, .proj_dim = DIM,
                              .intra = g_intra},
                    .sar = 1, .lambda = 0.0051f, .c_gather = g_gather, .intra = 0.5f, .common = DIM * 3 / 4};
    /* A small bucket, so that the step's overlapped all-reduce runs in several pieces. */
    tw_step_opts so = {.bucket_elems = 1 << 16, .graph = TW_GRAPH_AUTO};
    so.optim = (tw_optim_hparams){.kind = TW_OPTIM_KIND_LARS, .lr = 0.05, .lr_bias_scale = 0.001,
                                  .weight_decay = 1.5e-6, .momentum = 0.9, .eta = 0.001,
                                  .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    so.sched = (tw_schedule){.kind = TW_SCHEDULE_CONSTANT, .warmup_steps = 0, .total_steps = STEPS,
                             .final_ratio = 1.0};
    /* LARS at a quarter of the official weight rate and a BN/bias rate of 2.5e-5 (5e-6 for the
     * cross-modal model, whose loss and gradients are several times larger): small steps keep
     * the three steps' losses comparable (see the note above on what they cannot make exact). */
    so.optim.lr_bias_scale = g_cross ? 1e-4 : 5e-4;   /* rates: lr 0.05 times these */
    /* LARS (and Adam) scale each update by the gradient's own norm, so a gradient off by the rank
     * count (a mean of the ranks' gradients where the loss is global and they must be summed, or
     * the reverse) hardly moves the parameters. SGD's update is proportional to the gradient:
     * there a factor of 2 is a parameter change far beyond 1e-5. One step: the BT loss's large
     * gradients make SGD's later steps amplify the two summation orders' rounding past 1e-5. */
    if (g_sgd)
        so.optim = (tw_optim_hparams){.kind = TW_OPTIM_KIND_SGD, .lr = 0.005, .lr_bias_scale = 0.01,
                                      .weight_decay = 1.5e-6, .momentum = 0.9, .beta1 = 0.9, .beta2 = 0.999,
                                      .eps = 1e-8, .eta = 0.001};
    tw_step *step = NULL;
    tw_task task = {0};
    tw_status st = tw_step_init(&step, be, comm, &err);
    if (st == TW_OK) st = tw_bt_task_init(&task, be, comm, &o, tw_step_bad(step), &err);
    if (st == TW_OK) st = tw_step_bind(step, &task, &so, &err);
    if (st == TW_OK) st = task.reset(&task, 11, &err);
    if (st != TW_OK) {
        fprintf(stderr, "FAIL: model: %s\n", err.msg);
        return 0;
    }
    tw_params *P = task.P;
    for (int s = 0; s < g_steps; s++) {
        const tw_batch *b = NULL;
        if (tw_loader_next(ld, &b, &err) != TW_OK) {
            fprintf(stderr, "FAIL: loader: %s\n", err.msg);
            return 0;
        }
        TW_ASSERT(b->n == n_local);
        r->loss[s] = tw_loop_step(step, b, NULL);
        if (s == 0) snapshot(r, P);
        /* Each rank fills its slice (index + 1, so that 0 means "nobody") and the sum joins them. */
        int64_t slot[B] = {0};
        for (int i = 0; i < n_local; i++) slot[rank * n_local + i] = b->index[i] + 1;
        tw_comm_allreduce(comm, slot, B, TW_I64, TW_REDUCE_SUM);
        for (int i = 0; i < B; i++) r->index[s][i] = slot[i] - 1;
    }
    r->params = malloc(r->n_params * sizeof(float));
    r->buffers = malloc(r->n_buffers * sizeof(float));
    TW_ASSERT(r->params && r->buffers);
    tw_mem_to_host(be, r->params, P->params, r->n_params * sizeof(float));
    tw_mem_to_host(be, r->buffers, P->buffers, r->n_buffers * sizeof(float));
    r->n_entries = P->n_entries;
    r->entries = malloc((size_t)r->n_entries * sizeof *r->entries);
    TW_ASSERT(r->entries);
    memcpy(r->entries, P->entries, (size_t)r->n_entries * sizeof *r->entries);
    tw_step_free(step);
    task.free(&task);
    tw_loader_free(ld);
    return 1;
}

int main(int argc, char **argv) {
    int usage = argc < 2;
    for (int a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "cross")) g_cross = 1;
        else if (!strcmp(argv[a], "intra")) g_intra = 1;
        else if (!strcmp(argv[a], "sgd")) g_sgd = 1, g_steps = 1;
        else if (!strcmp(argv[a], "sync")) g_sync = 1;
        else if (!strcmp(argv[a], "gather")) g_gather = 1;
        else usage = 1;
    }
    if (g_intra && !g_cross) usage = 1;
    if (usage) {
        fprintf(stderr, "usage: mpirun -np 2 %s SHARD_DIR [cross [intra]] [sync] [gather] [sgd]\n", argv[0]);
        return 1;
    }
    tw_comm *mpi = check_comm("mpi", &argc, &argv);
    int rank = tw_comm_rank(mpi);
    if (tw_comm_size(mpi) != 2) {
        fprintf(stderr, "FAIL: run me under mpirun -np 2 (got %d ranks)\n", tw_comm_size(mpi));
        return 1;
    }
    g_aug = (tw_aug_params){.view = {{1, 0.5f, 0.5f, 0, 0, 0.5f, 0.8f, 0}, {1, 0.5f, 0.5f, 0, 0, 0.5f, 0.8f, 0.2f}},
                            .crop_min_scale = 0.25f, .jitter_brightness = 0.4f, .jitter_contrast = 0.4f,
                            .blur_sigma_min = 0.1f, .blur_sigma_max = 2.0f, .noise_std = 0.1f,
                            .speckle_looks = 4, .band_dropout_frac = 0.25f};
    g_aug_s2 = g_aug;   /* S2: no speckle (a SAR transform) */
    g_aug_s2.view[0].speckle = g_aug_s2.view[1].speckle = 0;
    tw_err err = {0};
    tw_backend *be = NULL;
    if (tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) != TW_OK) {
        fprintf(stderr, "FAIL: backend: %s\n", err.msg);
        return 1;
    }
    result two = {0}, one = {0};
    int ok = run(&two, mpi, be, argv[1], 1);
    int64_t bad = !ok;
    tw_comm_allreduce(mpi, &bad, 1, TW_I64, TW_REDUCE_MAX);
    /* Both ranks must hold the same parameters, bit for bit: rank 1 sends its own to rank 0. */
    float *rank1 = NULL;
    if (!bad) {
        rank1 = malloc(two.n_params * sizeof(float));
        TW_ASSERT(rank1);
        if (rank == 1) memcpy(rank1, two.params, two.n_params * sizeof(float));
        tw_comm_broadcast(mpi, rank1, two.n_params * sizeof(float), 1);
    }
    if (rank == 0 && !bad) {
        size_t n_diff = 0, first = 0;
        for (size_t j = 0; j < two.n_params; j++)
            if (memcmp(&rank1[j], &two.params[j], sizeof(float)) && !n_diff++) first = j;
        if (n_diff) {
            printf("FAIL the 2 ranks' parameters differ in %zu of %zu elements (first at %zu: %.9g, %.9g)\n", n_diff,
                   two.n_params, first, two.params[first], rank1[first]);
            ok = 0;
        } else {
            printf("ok   the 2 ranks hold the same parameters after %d steps, bit for bit\n", g_steps);
        }
        bad = !ok;
    }
    free(rank1);
    tw_comm_allreduce(mpi, &bad, 1, TW_I64, TW_REDUCE_MAX);
    if (g_sync && !bad) {
        /* Synchronised, the BN buffers are global too: both ranks hold the same ones. */
        float *b1 = malloc(two.n_buffers * sizeof(float));
        TW_ASSERT(b1);
        if (rank == 1) memcpy(b1, two.buffers, two.n_buffers * sizeof(float));
        tw_comm_broadcast(mpi, b1, two.n_buffers * sizeof(float), 1);
        if (rank == 0) {
            int same = !memcmp(b1, two.buffers, two.n_buffers * sizeof(float));
            printf("%s the 2 ranks' BN buffers (%zu values) after %d steps are %s\n", same ? "ok  " : "FAIL",
                   two.n_buffers, g_steps, same ? "equal bit for bit" : "different");
            bad = !same;
        }
        free(b1);
        tw_comm_allreduce(mpi, &bad, 1, TW_I64, TW_REDUCE_MAX);
    }
    if (rank == 0 && !bad) {
        /* The one-rank run, on rank 0 alone (rank 1 waits at the barrier below). */
        tw_comm *single = check_comm("single", &argc, &argv);
        ok = run(&one, single, be, argv[1], g_sync ? 1 : 2);
        tw_comm_free(single);
        tw_log_set_rank(0);
        for (int s = 0; ok && s < g_steps; s++) {
            float l2 = (float)two.loss[s], l1 = (float)one.loss[s];
            char what[64];
            snprintf(what, sizeof what, "loss at step %d", s + 1);
            ok &= check_close(what, &l2, &l1, 1, s ? 1e-4 : 1e-5);
            for (int i = 0; i < B; i++) {
                for (int j = 0; j < i; j++)
                    if (two.index[s][i] == two.index[s][j]) {
                        printf("FAIL step %d: sample %lld read twice (positions %d, %d)\n", s + 1,
                               (long long)two.index[s][i], j, i);
                        ok = 0;
                    }
                if (two.index[s][i] < 0 || two.index[s][i] != one.index[s][i]) {
                    printf("FAIL step %d: position %d holds sample %lld on 2 ranks, %lld on one\n", s + 1, i,
                           (long long)two.index[s][i], (long long)one.index[s][i]);
                    ok = 0;
                }
            }
        }
        if (ok) printf("ok   the 2 ranks read disjoint halves of the one rank's batches, %d steps\n", g_steps);
        if (ok) {
            int same = 1;
            for (int i = 0; i < two.n_entries; i++) {
                const tw_param_entry *e = &two.entries[i];
                if (e->kind == TW_PARAM_TRAIN) same &= tensor_close(e, two.params1, one.params1);
            }
            if (same) printf("ok   parameters after the first step: every tensor within 1e-5\n");
            ok &= same;
        }
        if (ok && g_sync) {
            int same = 1;
            for (int i = 0; i < two.n_entries; i++) {
                const tw_param_entry *e = &two.entries[i];
                if (e->kind == TW_PARAM_COUNTER) {
                    int64_t a = two.counters1[e->offset], b = one.counters1[e->offset];
                    if (a != b) {
                        printf("FAIL %s: %lld on 2 ranks, %lld on one\n", e->name, (long long)a, (long long)b);
                        same = 0;
                    }
                    continue;
                }
                if (e->kind == TW_PARAM_BUFFER) same &= tensor_close(e, two.buffers1, one.buffers1);
            }
            if (same) printf("ok   BN buffers and num_batches_tracked after the first step: within 1e-5, counters equal\n");
            ok &= same;
        }
        bad = !ok;
    }
    tw_comm_allreduce(mpi, &bad, 1, TW_I64, TW_REDUCE_MAX);
    free(two.params);
    free(one.params);
    free(two.buffers);
    free(one.buffers);
    free(two.params1);
    free(one.params1);
    free(two.buffers1);
    free(one.buffers1);
    free(two.counters1);
    free(one.counters1);
    free(two.entries);
    free(one.entries);
    tw_backend_free(be);
    tw_comm_free(mpi);
    if (rank == 0) printf("%s\n", bad ? "FAIL" : "PASS");
    return bad ? 1 : 0;
}
