/* The losses' hot loops: the Barlow Twins objective on an already all-reduced cross-correlation
 * matrix, and multi-label binary cross-entropy with logits. The loss value is summed in double;
 * the cross-correlation itself (a GEMM) and its all-reduce are src/loss/'s business. */
#include <math.h>

#include "backend/cpu/cpu.h"

/* loss = s (Σ_i (t_i - c_ii)² + λ Σ_{i≠j} c_ij²) (Zbontar et al. 2021, eq. 1), with the diagonal's
 * target t_i 1 for i < common and 0 after (DeCUR's unique dimensions);
 * dc_ii = -2 s (t_i - c_ii), dc_ij = 2 s λ c_ij (=). */
double tw_cpu_bt_loss(tw_backend *be, float *dc, const float *c, int d, int common, float lambda,
                      float scale) {
    (void)be;
    double loss = 0.0;
    float off_grad = 2.0f * scale * lambda;
#pragma omp parallel for schedule(static) reduction(+ : loss)
    for (int i = 0; i < d; i++) {
        const float *ci = c + (size_t)i * d;
        float *dci = dc + (size_t)i * d;
        double off = 0.0;
#pragma omp simd reduction(+ : off)
        for (int j = 0; j < d; j++) {
            off += (double)ci[j] * ci[j];
            dci[j] = off_grad * ci[j];
        }
        double diag = (i < common ? 1.0 : 0.0) - ci[i];
        off -= (double)ci[i] * ci[i];
        dci[i] = (float)(-2.0 * scale * diag);
        loss += diag * diag + lambda * off;
    }
    return scale * loss;
}

/* Mean over n k of max(x, 0) - x t + log(1 + exp(-|x|)), the stable form torch's
 * BCEWithLogitsLoss uses; dlogits = (sigmoid(x) - t) / (n k) (=). */
double tw_cpu_bce_logits(tw_backend *be, float *dlogits, const float *logits,
                         const float *targets, int n, int k) {
    (void)be;
    long total = (long)n * k;
    if (total == 0) return 0.0;
    float inv = 1.0f / (float)total;
    double loss = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : loss)
    for (long i = 0; i < total; i++) {
        float x = logits[i], t = targets[i];
        float e = expf(-fabsf(x));
        loss += (double)(fmaxf(x, 0.0f) - x * t + log1pf(e));
        float sig = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        dlogits[i] = (sig - t) * inv;
    }
    return loss / (double)total;
}
