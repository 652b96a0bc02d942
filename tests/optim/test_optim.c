/* The optimizers and schedules against PyTorch: ref_optim.py runs torch.optim.Adam, AdamW, SGD and
 * the official Barlow Twins LARS with the official schedule; every step's rates, the final
 * parameters and the final moments must match to 1e-6 relative. Also: a run saved and restored
 * halfway ends bit-equal to an uninterrupted one, bad hyper-parameters and bad state tensors are
 * reported by name, and the pretrain config maps to the right hyper-parameters.
 * Usage: test_optim PYTHON REF_OPTIM_PY OUT_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "optim/optim.h"
#include "config/pretrain.h"
#include "optim/optim_config.h"

#define TOL 1e-6
#define MAX_SEGS 16
#define MAX_CASES 16

typedef struct ref_case {
    char name[64];
    tw_optim_hparams h;
    tw_schedule s;
    int batch, k, n_state;
    size_t n;
    float *init, *grads, *final, *state;   /* [n], [k, n], [n], [n_state, n] */
    double *lrs;                           /* [k, 2]: weights, biases */
} ref_case;

static int read_case(ref_case *c, FILE *manifest, const char *dir) {
    int kind, constant;
    double lr;
    if (fscanf(manifest, "%63s %d %lf %lf %lf %lf %d %lf %lf %lf %lf %d %lld %lld %lf %d %d %d %zu", c->name,
               &kind, &lr, &c->h.lr_bias_scale, &c->h.weight_decay, &c->h.momentum, &c->h.nesterov,
               &c->h.beta1, &c->h.beta2, &c->h.eps, &c->h.eta, &constant, (long long *)&c->s.warmup_steps,
               (long long *)&c->s.total_steps, &c->s.final_ratio, &c->batch, &c->k, &c->n_state, &c->n) != 19)
        return 0;
    c->h.kind = (tw_optim_kind)kind;
    c->h.lr = c->batch / 256.0 * lr;   /* the reference's base_lr = batch / 256 * lr */
    c->s.kind = constant ? TW_SCHEDULE_CONSTANT : TW_SCHEDULE_COSINE;
    size_t n = c->n, total = n + (size_t)c->k * n + 4 * (size_t)c->k + n + (size_t)c->n_state * n;
    float *blob = malloc(total * sizeof(float));
    char path[512];
    snprintf(path, sizeof path, "%s/%s.f32", dir, c->name);
    FILE *f = fopen(path, "rb");
    if (!f || fread(blob, sizeof(float), total, f) != total) {
        fprintf(stderr, "FAIL: cannot read %zu floats from %s\n", total, path);
        exit(1);
    }
    fclose(f);
    c->init = blob;
    c->grads = c->init + n;
    c->lrs = malloc(sizeof(double) * 2 * (size_t)c->k);
    memcpy(c->lrs, c->grads + (size_t)c->k * n, sizeof(double) * 2 * (size_t)c->k);
    c->final = c->grads + (size_t)c->k * n + 4 * (size_t)c->k;
    c->state = c->final + n;
    return 1;
}

/* Largest error relative to each parameter tensor's scale: max over segments of
 * max_i |a_i - b_i| / max_i |b_i|. An element that lands near zero by cancellation carries the
 * rounding of its O(1) operands (torch's kernels fuse multiply-adds, ours may not), so a per-element
 * ratio would measure that cancellation, not the optimizer. */
static double max_rel(const float *a, const float *b, const tw_param_seg *segs, int n_segs, size_t *at) {
    double worst = 0;
    for (int s = 0; s < n_segs; s++) {
        double scale = 0, diff = 0;
        size_t where = segs[s].offset;
        for (size_t i = segs[s].offset; i < segs[s].offset + segs[s].n_elems; i++) {
            scale = fmax(scale, fabs((double)b[i]));
            double d = fabs((double)a[i] - b[i]);
            if (!(d <= diff)) { diff = d; where = i; }
        }
        double e = scale > 0 ? diff / scale : diff;
        if (!(e <= worst)) { worst = e; *at = where; }
    }
    return worst;
}

/* Runs steps [from, to) of c on params (host copy in/out) with optimizer o. */
static void run_steps(tw_backend *be, tw_optim *o, float *p_dev, float *g_dev, const ref_case *c, int from, int to) {
    for (int t = from; t < to; t++) {
        tw_mem_from_host(be, g_dev, c->grads + (size_t)t * c->n, sizeof(float) * c->n);
        tw_optim_step(o, p_dev, g_dev, NULL);
    }
}

static void test_case(tw_backend *be, const ref_case *c, const tw_param_seg *segs, int n_segs) {
    tw_err err = {0};
    tw_optim *o = NULL, *o2 = NULL;
    size_t n = c->n, nb = sizeof(float) * n;
    float *p = tw_mem_alloc(be, nb), *g = tw_mem_alloc(be, nb), *p2 = tw_mem_alloc(be, nb);
    float *host = malloc(nb), *host2 = malloc(nb);
    if (tw_optim_create(&o, be, segs, n_segs, n, &c->h, &c->s, &err) != TW_OK) {
        CHECK(0, "%s: %s", c->name, err.msg);
        goto done;
    }
    double lr_err = 0;
    for (int t = 0; t < c->k; t++) {
        double w = tw_optim_lr_weights(o, t), b = tw_optim_lr_biases(o, t);
        lr_err = fmax(lr_err, fabs(w - c->lrs[2 * t]) / fmax(c->lrs[2 * t], 1e-30));
        lr_err = fmax(lr_err, fabs(b - c->lrs[2 * t + 1]) / fmax(c->lrs[2 * t + 1], 1e-30));
        CHECK((w == 0) == (c->lrs[2 * t] == 0), "%s: lr at step %d: %g vs %g", c->name, t, w, c->lrs[2 * t]);
    }
    CHECK(lr_err <= 1e-12, "%s: schedule differs from the official one by %.3g relative", c->name, lr_err);

    tw_mem_from_host(be, p, c->init, nb);
    run_steps(be, o, p, g, c, 0, c->k);
    CHECK(tw_optim_step_count(o) == c->k, "step count");
    tw_mem_to_host(be, host, p, nb);
    size_t at = 0;
    double perr = max_rel(host, c->final, segs, n_segs, &at);
    CHECK(perr <= TOL, "%s: params differ from torch by %.3g relative at %zu (%.9g vs %.9g)", c->name, perr, at,
          host[at], c->final[at]);
    double serr = 0;
    for (int i = 0; i < c->n_state; i++) {
        CHECK(tw_optim_state_count(o) == c->n_state && tw_optim_state_elems(o, i) == n, "state layout");
        tw_optim_state_to_host(o, i, host2);
        double e = max_rel(host2, c->state + (size_t)i * n, segs, n_segs, &at);
        CHECK(e <= TOL, "%s: %s differs from torch by %.3g at %zu", c->name, tw_optim_state_name(o, i), e, at);
        serr = fmax(serr, e);
    }
    printf("%s %-14s lr max rel err %.2e, params %.2e, state %.2e\n", lr_err <= 1e-12 && perr <= TOL && serr <= TOL ? "ok  " : "FAIL",
           c->name, lr_err, perr, serr);

    /* Save halfway, restore into a fresh optimizer, finish: bit-equal to the straight run. */
    tw_optim_free(o);
    o = NULL;
    int half = c->k / 2;
    CHECK(tw_optim_create(&o, be, segs, n_segs, n, &c->h, &c->s, &err) == TW_OK, "%s", err.msg);
    tw_mem_from_host(be, p2, c->init, nb);
    run_steps(be, o, p2, g, c, 0, half);
    CHECK(tw_optim_create(&o2, be, segs, n_segs, n, &c->h, &c->s, &err) == TW_OK, "%s", err.msg);
    for (int i = 0; i < tw_optim_state_count(o); i++) {
        tw_optim_state_to_host(o, i, host2);
        CHECK(tw_optim_state_from_host(o2, tw_optim_state_name(o, i), host2, n, &err) == TW_OK, "%s", err.msg);
    }
    tw_optim_set_step_count(o2, tw_optim_step_count(o));
    run_steps(be, o2, p2, g, c, half, c->k);
    tw_mem_to_host(be, host2, p2, nb);
    CHECK(!memcmp(host, host2, nb), "%s: resumed run differs from the straight run", c->name);

    /* A raised skip flag (backend memory): the update changes neither the parameters nor the
     * state, decided on the device; a lowered one lets the next update through. */
    int *flag = tw_mem_alloc(be, sizeof(int)), raised = 1;
    float *state_before = malloc(nb), *after = malloc(nb);
    tw_mem_from_host(be, flag, &raised, sizeof raised);
    tw_optim_state_to_host(o2, 0, state_before);
    tw_mem_from_host(be, g, c->grads, nb);
    tw_optim_step(o2, p2, g, flag);
    tw_mem_to_host(be, after, p2, nb);
    CHECK(!memcmp(after, host2, nb), "%s: a skipped update moved the parameters", c->name);
    tw_optim_state_to_host(o2, 0, after);
    CHECK(!memcmp(after, state_before, nb), "%s: a skipped update moved %s", c->name, tw_optim_state_name(o2, 0));
    tw_mem_zero(be, flag, sizeof(int));
    tw_optim_step(o2, p2, g, flag);
    tw_mem_to_host(be, after, p2, nb);
    CHECK(memcmp(after, host2, nb), "%s: an update with the flag lowered changed nothing", c->name);
    tw_mem_free(be, flag);
    free(state_before);
    free(after);

    /* State tensors are checked by name and size. */
    tw_status st = tw_optim_state_from_host(o2, "optim.bogus", host2, n, &err);
    CHECK(st == TW_E_UNKNOWN && strstr(err.msg, "optim.bogus"), "unknown state: %s", err.msg);
    st = tw_optim_state_from_host(o2, tw_optim_state_name(o2, 0), host2, n - 1, &err);
    CHECK(st == TW_E_SHAPE && strstr(err.msg, tw_optim_state_name(o2, 0)), "short state: %s", err.msg);
done:
    tw_optim_free(o);
    tw_optim_free(o2);
    tw_mem_free(be, p);
    tw_mem_free(be, g);
    tw_mem_free(be, p2);
    free(host);
    free(host2);
}

static void test_bad_input(tw_backend *be, const tw_param_seg *segs, int n_segs, size_t n) {
    tw_optim_hparams good = {TW_OPTIM_KIND_ADAM, 1e-3, 1.0, 0.0, 0.9, 0, 0.9, 0.999, 1e-8, 1e-3};
    tw_schedule s = {TW_SCHEDULE_COSINE, 2, 10, 1e-3};
    const struct { const char *field; tw_optim_hparams h; } bad[] = {
        {"lr", {TW_OPTIM_KIND_ADAM, -1, 1.0, 0.0, 0.9, 0, 0.9, 0.999, 1e-8, 1e-3}},
        {"lr", {TW_OPTIM_KIND_ADAM, NAN, 1.0, 0.0, 0.9, 0, 0.9, 0.999, 1e-8, 1e-3}},
        {"lr_bias_scale", {TW_OPTIM_KIND_LARS, 1e-3, 0.0, 0.0, 0.9, 0, 0.9, 0.999, 1e-8, 1e-3}},
        {"weight_decay", {TW_OPTIM_KIND_SGD, 1e-3, 1.0, -1e-4, 0.9, 0, 0.9, 0.999, 1e-8, 1e-3}},
        {"momentum", {TW_OPTIM_KIND_SGD, 1e-3, 1.0, 0.0, 1.0, 0, 0.9, 0.999, 1e-8, 1e-3}},
        {"beta2", {TW_OPTIM_KIND_ADAMW, 1e-3, 1.0, 0.0, 0.9, 0, 0.9, 1.5, 1e-8, 1e-3}},
        {"eps", {TW_OPTIM_KIND_ADAM, 1e-3, 1.0, 0.0, 0.9, 0, 0.9, 0.999, 0.0, 1e-3}},
        {"eta", {TW_OPTIM_KIND_LARS, 1e-3, 1.0, 0.0, 0.9, 0, 0.9, 0.999, 1e-8, -1}},
    };
    tw_optim *o = NULL;
    tw_err err = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "optimizer: %s must be", bad[i].field);
        tw_status st = tw_optim_create(&o, be, segs, n_segs, n, &bad[i].h, &s, &err);
        CHECK(st == TW_E_RANGE && !o && strstr(err.msg, want), "bad %s accepted or unnamed: %s", bad[i].field, err.msg);
    }
    tw_schedule bad_s = {TW_SCHEDULE_COSINE, 10, 10, 1e-3};
    CHECK(tw_optim_create(&o, be, segs, n_segs, n, &good, &bad_s, &err) == TW_E_RANGE &&
          strstr(err.msg, "warm-up"), "warm-up as long as the run: %s", err.msg);
    bad_s = (tw_schedule){TW_SCHEDULE_COSINE, 0, 10, 1.5};
    CHECK(tw_optim_create(&o, be, segs, n_segs, n, &good, &bad_s, &err) == TW_E_RANGE &&
          strstr(err.msg, "final ratio"), "final ratio 1.5: %s", err.msg);
    /* Steps past the end stay at the final rate. */
    CHECK(fabs(tw_schedule_lr(&s, 2.0, 10) - 2e-3) < 1e-15 && tw_schedule_lr(&s, 2.0, 50) == tw_schedule_lr(&s, 2.0, 10),
          "past the end");
    CHECK(tw_schedule_lr(&s, 2.0, 0) == 0.0 && tw_schedule_lr(&s, 2.0, 1) == 1.0 && tw_schedule_lr(&s, 2.0, 2) == 2.0,
          "warm-up");
}

static void test_from_pretrain(void) {
    tw_pretrain_cfg cfg;
    tw_err err = {0};
    char *ov[] = {"data.shards=x", "optim.name=lars", "optim.lr=0.2", "optim.lr_batch_scale=true", "data.batch=512",
                  "optim.warmup_epochs=2", "optim.epochs=5", "optim.lr_bias_scale=0.024", "optim.betas=[0.8, 0.95]",
                  "optim.schedule=constant"};
    if (tw_cfg_load(tw_pretrain_schema(), &cfg, NULL, 10, ov, &err) != TW_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    tw_optim_hparams h;
    tw_schedule s;
    tw_optim_from_cfg(&h, &s, &cfg.optim, cfg.data.batch, 7);
    CHECK(h.kind == TW_OPTIM_KIND_LARS && fabs(h.lr - 0.4) < 1e-15 && h.lr_bias_scale == 0.024, "lars mapping");
    CHECK(h.beta1 == 0.8 && h.beta2 == 0.95 && h.eta == 0.001 && h.momentum == 0.9, "betas/eta/momentum");
    CHECK(s.warmup_steps == 14 && s.total_steps == 35 && s.kind == TW_SCHEDULE_CONSTANT && s.final_ratio == 0.001,
          "schedule mapping");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PYTHON REF_OPTIM_PY OUT_DIR\n", argv[0]);
        return 1;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", argv[1], argv[2], argv[3]);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc)) {
        fprintf(stderr, "FAIL: could not run %s\n", cmd);
        return 1;
    }
    if (WEXITSTATUS(rc) == 77) {
        fprintf(stderr, "SKIP: the reference needs torch and numpy in %s\n", argv[1]);
        return 77;
    }
    if (WEXITSTATUS(rc) != 0) {
        fprintf(stderr, "FAIL: %s exited %d\n", cmd, WEXITSTATUS(rc));
        return 1;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/segs.txt", argv[3]);
    FILE *f = fopen(path, "r");
    tw_param_seg segs[MAX_SEGS];
    int n_segs = 0;
    while (f && n_segs < MAX_SEGS &&
           fscanf(f, "%zu %zu %d", &segs[n_segs].offset, &segs[n_segs].n_elems, &segs[n_segs].is_1d) == 3)
        n_segs++;
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/cases.txt", argv[3]);
    FILE *m = fopen(path, "r");
    if (!n_segs || !m) {
        fprintf(stderr, "FAIL: cannot read the reference in %s\n", argv[3]);
        return 1;
    }
    ref_case cases[MAX_CASES];
    int n_cases = 0;
    while (n_cases < MAX_CASES && (memset(&cases[n_cases], 0, sizeof cases[0]), read_case(&cases[n_cases], m, argv[3])))
        n_cases++;
    fclose(m);
    CHECK(n_cases == 7, "read %d cases, want 7", n_cases);

    /* The CPU always; the CUDA backend's kernels too where this build and machine have a GPU. */
    const tw_device devices[] = {TW_DEVICE_CPU, TW_DEVICE_CUDA};
    for (int d = 0; d < 2; d++) {
        if (!tw_backend_available(devices[d]) || tw_backend_device_count(devices[d]) < 1) {
            printf("# %s: not in this build or machine\n", devices[d] == TW_DEVICE_CPU ? "cpu" : "cuda");
            continue;
        }
        tw_backend *be = NULL;
        tw_err err = {0};
        if (tw_backend_create(&be, devices[d], TW_PREC_FP32, 0, &err) != TW_OK) {
            CHECK(0, "backend: %s", err.msg);
            continue;
        }
        char desc[256];
        tw_backend_describe(be, desc, sizeof desc);
        printf("# backend: %s\n", desc);
        for (int i = 0; i < n_cases; i++) test_case(be, &cases[i], segs, n_segs);
        test_bad_input(be, segs, n_segs, cases[0].n);
        tw_backend_free(be);
    }
    for (int i = 0; i < n_cases; i++) {
        free(cases[i].init);
        free(cases[i].lrs);
    }
    test_from_pretrain();
    printf(check_n_fail ? "FAIL test_optim\n" : "PASS test_optim (%d cases)\n", n_cases);
    return check_exit_code();
}
