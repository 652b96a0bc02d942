/* The Barlow Twins loss (src/loss/barlow.c) against the official formula in PyTorch
 * (ref_bt_loss.py): loss, ∂loss/∂z1 and ∂loss/∂z2 within 1e-5. Run on one process and under
 * mpirun -np 2, where each rank holds half the rows and the result must be the same; with
 * "gather", the ranks all-gather the normalised embeddings instead of all-reducing C
 * (loss.c_exchange: allgather). With "decur", the reference holds four views and the cross-modal
 * loss with intra-modal terms (loss/barlow.h): S1-S2 on the common dimensions, S1-S1' and S2-S2'
 * weighted (the file's "common" and "intra").
 * usage: test_bt_loss REF.safetensors N D LAMBDA single|mpi [gather] [decur] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "core/log.h"
#include "loss/barlow.h"

int main(int argc, char **argv) {
    int gather = 0, decur = 0, bad_arg = argc < 6;
    for (int i = 6; i < argc; i++) {
        if (!strcmp(argv[i], "gather")) gather = 1;
        else if (!strcmp(argv[i], "decur")) decur = 1;
        else bad_arg = 1;
    }
    if (bad_arg) {
        fprintf(stderr, "usage: %s REF.safetensors N D LAMBDA single|mpi [gather] [decur]\n", argv[0]);
        return 1;
    }
    tw_comm *comm = check_comm(argv[5], &argc, &argv);
    int rank = tw_comm_rank(comm), size = tw_comm_size(comm);
    int n = (int)strtol(argv[2], NULL, 10), d = (int)strtol(argv[3], NULL, 10);
    float lambda = strtof(argv[4], NULL);
    TW_ASSERT(n % size == 0);
    tw_err err = {0};
    tw_st_file *f = NULL;
    if (tw_st_open(&f, argv[1], &err) != TW_OK) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    size_t cnt;
    int n_views = decur ? 4 : 2;
    float *z[4], *dz_ref[4];
    for (int v = 0; v < n_views; v++) {
        char name[8];
        snprintf(name, sizeof name, "z%d", v + 1);
        z[v] = check_read_f32(f, name, &cnt);
        TW_ASSERT(cnt == (size_t)n * d);
        snprintf(name, sizeof name, "dz%d", v + 1);
        dz_ref[v] = check_read_f32(f, name, NULL);
    }
    float *loss_ref = check_read_f32(f, "loss", NULL);
    int n_local = n / size;
    tw_barlow_opts lo = tw_barlow_pair(n_local, d, lambda, gather);
    if (decur) {
        float *common = check_read_f32(f, "common", NULL), *intra = check_read_f32(f, "intra", NULL);
        lo = tw_barlow_decur(n_local, d, lambda, gather, (int)common[0], intra[0]);
        free(common);
        free(intra);
    }

    tw_backend *be = NULL;
    if (tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, &err) != TW_OK) {
        fprintf(stderr, "FAIL: backend: %s\n", err.msg);
        return 1;
    }
    size_t bytes = (size_t)n_local * d * sizeof(float), off = (size_t)rank * n_local * d;
    float *zb[4], *dzb[4], *dz_host = malloc(bytes);
    for (int v = 0; v < n_views; v++) {
        zb[v] = tw_mem_alloc(be, bytes);
        dzb[v] = tw_mem_alloc(be, bytes);
        tw_mem_from_host(be, zb[v], z[v] + off, bytes);
    }
    tw_barlow L;
    int *stats_bad = tw_mem_alloc(be, sizeof(int));
    tw_mem_zero(be, stats_bad, sizeof(int));
    tw_barlow_init(&L, be, &lo, rank, size, stats_bad);
    double loss = tw_barlow_forward_backward(&L, be, comm, dzb, (const float *const *)zb);

    int ok = 1;
    float lossf = (float)loss;
    if (rank == 0) ok &= check_close("loss", &lossf, loss_ref, 1, 1e-5);
    for (int v = 0; v < n_views; v++) {
        tw_mem_to_host(be, dz_host, dzb[v], bytes);
        char what[64];
        snprintf(what, sizeof what, "dz%d rank %d/%d", v + 1, rank, size);
        /* Each rank holds only its rows, so the norm is taken over the rank's slice. */
        ok &= check_close(what, dz_host, dz_ref[v] + off, (size_t)n_local * d, 1e-5);
    }
    /* The verdict is every rank's: a failure anywhere fails the whole test. */
    int64_t bad = !ok;
    tw_comm_allreduce(comm, &bad, 1, TW_I64, TW_REDUCE_MAX);

    tw_barlow_free(&L, be);
    tw_mem_free(be, stats_bad);
    for (int v = 0; v < n_views; v++) {
        tw_mem_free(be, zb[v]);
        tw_mem_free(be, dzb[v]);
        free(z[v]);
        free(dz_ref[v]);
    }
    free(loss_ref);
    free(dz_host);
    tw_st_close(f);
    tw_backend_free(be);
    tw_comm_free(comm);
    if (rank == 0) printf("%s\n", bad ? "FAIL" : "PASS");
    return bad ? 1 : 0;
}
