/* Optimizer updates over the flat f32 parameter buffer, segment by segment of an update plan (on
 * the CPU, the segment table copied): Adam / AdamW as torch.optim does them, LARS as
 * facebookresearch/barlowtwins does it, torch SGD with momentum, and the finite check + scale used
 * for gradient averaging. 1-D segments (biases, BN) get no weight decay and no LARS adaptation
 * (backend.h). Schedules live in src/optim/. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* Segments below this many elements are updated by one thread: a parallel region costs more. */
enum { PAR_MIN = 16384 };

/* On the CPU a plan is the table itself, copied. */
struct tw_update_plan {
    int n_segs;
    tw_param_seg segs[];
};

tw_status tw_cpu_update_plan_make(tw_backend *be, tw_update_plan **out, const tw_param_seg *segs,
                                  int n_segs, tw_err *err) {
    (void)be;
    *out = NULL;
    tw_update_plan *p = malloc(sizeof *p + sizeof *segs * (size_t)n_segs);
    if (!p) return tw_err_set(err, TW_E_NOMEM, "cpu update plan: out of memory (%d segments)", n_segs);
    p->n_segs = n_segs;
    memcpy(p->segs, segs, sizeof *segs * (size_t)n_segs);
    *out = p;
    return TW_OK;
}

void tw_cpu_update_plan_free(tw_backend *be, tw_update_plan *p) {
    (void)be;
    free(p);
}

/* torch.optim.Adam (_single_tensor_adam): g += wd p (Adam) or p *= 1 - lr wd (AdamW);
 * m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g²; p -= lr / (1 - b1^t) · m / (sqrt(v) /
 * sqrt(1 - b2^t) + eps), with the step's values from vals (tw_adam_vals). */
void tw_cpu_adam_update(tw_backend *be, tw_update_plan *plan, float *p, float *m, float *v,
                        const float *g, const tw_adam_hparams *h, const tw_update_vals *vals,
                        const int *skip) {
    (void)be;
    const tw_param_seg *segs = plan->segs;
    const int n_segs = plan->n_segs;
    if (skip && *skip) return;
    const float step_size = vals->step_size, bc2_sqrt = vals->bc2_sqrt;
    const float w1 = (float)(1.0 - h->beta1), b2 = (float)h->beta2, w2 = (float)(1.0 - h->beta2);
    const float eps = (float)h->eps;
    for (int s = 0; s < n_segs; s++) {
        const long n = (long)segs[s].n_elems;
        const size_t o = segs[s].offset;
        float *ps = p + o, *ms = m + o, *vs = v + o;
        const float *gs = g + o;
        const int decay = !segs[s].is_1d;
        const float l2 = decay && !h->decoupled ? (float)h->weight_decay : 0.0f;
        const float shrink = decay ? vals->shrink : 1.0f;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (long i = 0; i < n; i++) {
            float pi = ps[i] * shrink;
            float gi = gs[i] + l2 * pi;
            float mi = ms[i] + w1 * (gi - ms[i]);
            float vi = b2 * vs[i] + w2 * gi * gi;
            ms[i] = mi;
            vs[i] = vi;
            ps[i] = pi - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
        }
    }
}

/* facebookresearch/barlowtwins main.py, class LARS: dp = g + wd p; q = eta ||p|| / ||dp||
 * (1 when either norm is 0); mu = momentum mu + q dp; p -= lr mu. 1-D: no wd, q = 1. */
void tw_cpu_lars_update(tw_backend *be, tw_update_plan *plan, float *p, float *mu,
                        const float *g, const tw_lars_hparams *h, const tw_update_vals *vals,
                        const int *skip) {
    (void)be;
    const tw_param_seg *segs = plan->segs;
    const int n_segs = plan->n_segs;
    if (skip && *skip) return;
    for (int s = 0; s < n_segs; s++) {
        const long n = (long)segs[s].n_elems;
        const size_t o = segs[s].offset;
        float *ps = p + o, *mus = mu + o;
        const float *gs = g + o;
        const int adapt = !segs[s].is_1d;
        const float wd = adapt ? h->weight_decay : 0.0f;
        float q = 1.0f;
        if (adapt) {
            double pp = 0.0, dd = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : pp, dd) if (n >= PAR_MIN)
            for (long i = 0; i < n; i++) {
                float di = gs[i] + wd * ps[i];
                pp += (double)ps[i] * ps[i];
                dd += (double)di * di;
            }
            float pn = (float)sqrt(pp), dn = (float)sqrt(dd);
            if (pn > 0.0f && dn > 0.0f) q = h->eta * pn / dn;
        }
        const float mom = h->momentum, lr = vals->lr;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (long i = 0; i < n; i++) {
            float di = (gs[i] + wd * ps[i]) * q;
            float mi = mom * mus[i] + di;
            mus[i] = mi;
            ps[i] -= lr * mi;
        }
    }
}

/* torch.optim.SGD, dampening 0: d = g + wd p; buf = momentum buf + d (buf starts at zero, which
 * equals torch's buf = d on the first step); d = nesterov ? d + momentum buf : buf; p -= lr d. */
void tw_cpu_sgd_update(tw_backend *be, tw_update_plan *plan, float *p, float *mu,
                       const float *g, const tw_sgd_hparams *h, const tw_update_vals *vals,
                       const int *skip) {
    (void)be;
    const tw_param_seg *segs = plan->segs;
    const int n_segs = plan->n_segs;
    if (skip && *skip) return;
    const float mom = h->momentum, lr = vals->lr;
    const int nesterov = h->nesterov;
    for (int s = 0; s < n_segs; s++) {
        const long n = (long)segs[s].n_elems;
        const size_t o = segs[s].offset;
        float *ps = p + o, *mus = mu + o;
        const float *gs = g + o;
        const float wd = segs[s].is_1d ? 0.0f : h->weight_decay;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (long i = 0; i < n; i++) {
            float di = gs[i] + wd * ps[i];
            float bi = mom * mus[i] + di;
            mus[i] = bi;
            ps[i] -= lr * (nesterov ? di + mom * bi : bi);
        }
    }
}

/* x *= a; raises *bad when an element was not finite before scaling. */
void tw_cpu_scale_check(tw_backend *be, float *x, size_t n, float a, int *bad) {
    (void)be;
    int any = 0;
    const long nl = (long)n;
#pragma omp parallel for simd schedule(static) reduction(| : any) if (nl >= PAR_MIN)
    for (long i = 0; i < nl; i++) {
        any |= !isfinite(x[i]);
        x[i] *= a;
    }
    if (any) *bad = 1;
}

double tw_cpu_read_flag(tw_backend *be, const int *flag) {
    (void)be;
    return *flag != 0;
}
