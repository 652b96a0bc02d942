/* The Barlow Twins projector (projector.h): three bias-free Linear layers as GEMMs, two
 * synchronised BN+ReLU layers between them. Linear y = x Wᵀ with W [out, in] as torch keeps it,
 * so the backward is dW += dyᵀ x and dx = dy W. */
#include "model/projector.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"

void tw_projector_register(tw_projector *pj, tw_params *P, const char *prefix) {
    int w1[2] = {pj->d, pj->d_in}, wd[2] = {pj->d, pj->d}, v[1] = {pj->d};
    static const char *const lin[3] = {"projector.0.weight", "projector.3.weight",
                                       "projector.6.weight"};
    static const char *const bn[2] = {"projector.1", "projector.4"};
    char name[TW_PARAM_NAME_MAX];
    TW_ASSERT(strlen(prefix) + 40 < sizeof name);
    snprintf(name, sizeof name, "%s%s", prefix, lin[0]);
    pj->id[0] = tw_params_add(P, name, TW_PARAM_TRAIN, 2, w1);
    snprintf(name, sizeof name, "%s%s", prefix, lin[1]);
    pj->id[3] = tw_params_add(P, name, TW_PARAM_TRAIN, 2, wd);
    snprintf(name, sizeof name, "%s%s", prefix, lin[2]);
    pj->id[6] = tw_params_add(P, name, TW_PARAM_TRAIN, 2, wd);
    for (int l = 0; l < 2; l++) {
        snprintf(name, sizeof name, "%s%s.weight", prefix, bn[l]);
        pj->id[1 + 3 * l] = tw_params_add(P, name, TW_PARAM_TRAIN, 1, v);
        snprintf(name, sizeof name, "%s%s.bias", prefix, bn[l]);
        pj->id[2 + 3 * l] = tw_params_add(P, name, TW_PARAM_TRAIN, 1, v);
        snprintf(name, sizeof name, "%s%s.running_mean", prefix, bn[l]);
        pj->id_stats[l][0] = tw_params_add(P, name, TW_PARAM_BUFFER, 1, v);
        snprintf(name, sizeof name, "%s%s.running_var", prefix, bn[l]);
        pj->id_stats[l][1] = tw_params_add(P, name, TW_PARAM_BUFFER, 1, v);
        snprintf(name, sizeof name, "%s%s.num_batches_tracked", prefix, bn[l]);
        pj->id_stats[l][2] = tw_params_add(P, name, TW_PARAM_COUNTER, 0, NULL);
    }
}

static void bind_set(tw_projector_params *s, float *(*get)(const tw_params *, int),
                     const tw_params *P, const int id[7]) {
    s->w1 = get(P, id[0]); s->g1 = get(P, id[1]); s->b1 = get(P, id[2]);
    s->w2 = get(P, id[3]); s->g2 = get(P, id[4]); s->b2 = get(P, id[5]);
    s->w3 = get(P, id[6]);
}

void tw_projector_bind(tw_projector *pj, const tw_params *P) {
    bind_set(&pj->p, tw_params_ptr, P, pj->id);
    bind_set(&pj->g, tw_params_grad, P, pj->id);
    tw_syncbn *bn[2] = {&pj->bn1, &pj->bn2};
    for (int l = 0; l < 2; l++) {
        bn[l]->run_mean = tw_params_ptr(P, pj->id_stats[l][0]);
        bn[l]->run_var = tw_params_ptr(P, pj->id_stats[l][1]);
        bn[l]->n_batches = tw_params_counter(P, pj->id_stats[l][2]);
    }
}

void tw_projector_reset(tw_projector *pj, tw_params *P, uint64_t seed) {
    size_t D = (size_t)pj->d, n_max = D * (D > (size_t)pj->d_in ? D : (size_t)pj->d_in);
    float *host = malloc(n_max * sizeof(float));
    TW_ASSERT(host);
    float *lin[3] = {pj->p.w1, pj->p.w2, pj->p.w3};
    for (int l = 0; l < 3; l++) {
        int fan_in = l == 0 ? pj->d_in : pj->d;
        size_t n = D * fan_in;
        tw_rng r;
        tw_rng_init(&r, seed, 0x70726f6au, (uint32_t)l, 0);
        float bound = 1.0f / sqrtf((float)fan_in);
        for (size_t i = 0; i < n; i++) host[i] = (2.0f * tw_rng_uniform(&r) - 1.0f) * bound;
        tw_mem_from_host(P->be, lin[l], host, n * sizeof(float));
    }
    tw_syncbn *bn[2] = {&pj->bn1, &pj->bn2};
    float *gamma[2] = {pj->p.g1, pj->p.g2}, *beta[2] = {pj->p.b1, pj->p.b2};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < D; i++) host[i] = 1.0f;
        tw_mem_from_host(P->be, gamma[l], host, D * sizeof(float));
        tw_mem_from_host(P->be, bn[l]->run_var, host, D * sizeof(float));
        tw_mem_zero(P->be, beta[l], D * sizeof(float));
        tw_mem_zero(P->be, bn[l]->run_mean, D * sizeof(float));
        *bn[l]->n_batches = 0;
    }
    free(host);
}

void tw_projector_init(tw_projector *pj, tw_backend *be, int n, int d_in, int d, int n_ranks, int *bad) {
    pj->n = n;
    pj->d_in = d_in;
    pj->d = d;
    tw_syncbn_init(&pj->bn1, be, n, d, n_ranks, 1, TW_BN_EPS, TW_BN_MOMENTUM, bad);
    tw_syncbn_init(&pj->bn2, be, n, d, n_ranks, 1, TW_BN_EPS, TW_BN_MOMENTUM, bad);
    size_t act = (size_t)n * d * sizeof(float);
    for (int v = 0; v < 2; v++) {
        tw_projector_view *w = &pj->view[v];
        w->h1 = tw_mem_alloc(be, act);
        w->r1 = tw_mem_alloc(be, act);
        w->h2 = tw_mem_alloc(be, act);
        w->r2 = tw_mem_alloc(be, act);
        tw_syncbn_cache_init(&w->c1, be, d);
        tw_syncbn_cache_init(&w->c2, be, d);
    }
    pj->dr = tw_mem_alloc(be, act);
    pj->dh = tw_mem_alloc(be, act);
}

void tw_projector_free(tw_projector *pj, tw_backend *be) {
    for (int v = 0; v < 2; v++) {
        tw_projector_view *w = &pj->view[v];
        tw_mem_free(be, w->h1);
        tw_mem_free(be, w->r1);
        tw_mem_free(be, w->h2);
        tw_mem_free(be, w->r2);
        tw_syncbn_cache_free(&w->c1, be);
        tw_syncbn_cache_free(&w->c2, be);
    }
    tw_mem_free(be, pj->dr);
    tw_mem_free(be, pj->dh);
    tw_syncbn_free(&pj->bn1, be);
    tw_syncbn_free(&pj->bn2, be);
}

void tw_projector_forward(tw_projector *pj, tw_backend *be, const tw_reducer *red, int v, float *z,
                          const float *x) {
    const tw_projector_params *p = &pj->p;
    TW_ASSERT(v == 0 || v == 1);
    int n = pj->n, din = pj->d_in, d = pj->d;
    tw_projector_view *w = &pj->view[v];
    /* linear1 -> bn1+relu -> linear2 -> bn2+relu -> linear3 */
    tw_gemm(be, 0, 1, n, d, din, 1.0f, x, din, p->w1, din, 0.0f, w->h1, d);
    tw_syncbn_forward(&pj->bn1, be, red, w->r1, &w->c1, w->h1, p->g1, p->b1);
    tw_gemm(be, 0, 1, n, d, d, 1.0f, w->r1, d, p->w2, d, 0.0f, w->h2, d);
    tw_syncbn_forward(&pj->bn2, be, red, w->r2, &w->c2, w->h2, p->g2, p->b2);
    tw_gemm(be, 0, 1, n, d, d, 1.0f, w->r2, d, p->w3, d, 0.0f, z, d);
}

void tw_projector_backward(tw_projector *pj, tw_backend *be, const tw_reducer *red, int v, float *dx,
                           const float *dz, const float *x) {
    const tw_projector_params *p = &pj->p, *grad = &pj->g;
    TW_ASSERT(v == 0 || v == 1);
    int n = pj->n, din = pj->d_in, d = pj->d;
    tw_projector_view *w = &pj->view[v];
    /* The forward list, reversed: linear3, bn2+relu, linear2, bn1+relu, linear1. */
    tw_gemm(be, 1, 0, d, d, n, 1.0f, dz, d, w->r2, d, 1.0f, grad->w3, d);
    tw_gemm(be, 0, 0, n, d, d, 1.0f, dz, d, p->w3, d, 0.0f, pj->dr, d);
    tw_syncbn_backward(&pj->bn2, be, red, pj->dh, grad->g2, grad->b2, pj->dr, w->r2, w->h2, &w->c2,
                       p->g2);
    tw_gemm(be, 1, 0, d, d, n, 1.0f, pj->dh, d, w->r1, d, 1.0f, grad->w2, d);
    tw_gemm(be, 0, 0, n, d, d, 1.0f, pj->dh, d, p->w2, d, 0.0f, pj->dr, d);
    tw_syncbn_backward(&pj->bn1, be, red, pj->dh, grad->g1, grad->b1, pj->dr, w->r1, w->h1, &w->c1,
                       p->g1);
    tw_gemm(be, 1, 0, d, din, n, 1.0f, pj->dh, d, x, din, 1.0f, grad->w1, din);
    tw_gemm(be, 0, 0, n, din, d, 1.0f, pj->dh, d, p->w1, din, 0.0f, dx, din);
}
