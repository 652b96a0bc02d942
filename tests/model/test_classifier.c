/* The classifiers against PyTorch (ref_classifier.py), per case: eval logits (and the arena
 * bit-unchanged by them), then one training step: logits, the BCE-with-logits loss (tw_bce_logits
 * against torch's mean reduction), every trainable gradient (written with =, over garbage), the
 * running statistics after the step; frozen backbones: weights, buffers and counters bit-unchanged
 * and gradients exactly 0; an evaluation-only activation set gives the same eval logits.
 * usage: test_classifier REF_DIR fp32|bf16 CASE [CASE ...]; exit 0 pass, 1 fail, 77 skip. Loading and stem adaptation are test_classifier_load.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "core/log.h"
#include "model/classifier.h"

/* fp32: the ResNet18 test's bounds (max error over max |reference| against float64 truth).
 * bf16: as test_resnet18.c explains, torch's own bf16 error is the yardstick: the norm error must
 * stay within 1.5x of it + 0.005; the max bounds only catch gross errors (at 48x48 and batch 4,
 * single weight-gradient elements of layer4 come out of an honest bf16 step up to ~1.2x the
 * tensor's largest entry off, so the gradients' max bound is 2). */
typedef struct {
    double eval, train, loss, stats, grad;
    int torch_relative;
} tolerances;
static const tolerances TOL_FP32 = {1e-4, 1e-3, 1e-5, 1e-3, 1e-3, 0};
static const tolerances TOL_BF16 = {5e-2, 5e-2, 2e-2, 2e-2, 2.0, 1};

static int meta_int(tw_st_file *f, const char *key) {
    const char *v = tw_st_meta_get(f, key);
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end) {
        printf("FAIL: %s: metadata '%s' missing or not an integer\n", f->path, key);
        exit(1);
    }
    return (int)x;
}

static void opts_from_meta(tw_classifier_opts *o, tw_st_file *f) {
    tw_classifier_opts_default(o);
    o->c_s1 = meta_int(f, "c_s1");
    o->c_s2 = meta_int(f, "c_s2");
    o->n_classes = meta_int(f, "n_classes");
    o->mlp_hidden = meta_int(f, "mlp_hidden");
    o->bn_groups = meta_int(f, "bn_groups");
    const char *fu = tw_st_meta_get(f, "fusion"), *he = tw_st_meta_get(f, "head"),
               *mo = tw_st_meta_get(f, "mode");
    TW_ASSERT(fu && he && mo);
    o->fusion = !strcmp(fu, "feature") ? TW_FUSION_FEATURE : !strcmp(fu, "early") ? TW_FUSION_EARLY
                                                                                  : TW_FUSION_NONE;
    o->head = !strcmp(he, "gated") ? TW_HEAD_GATED : !strcmp(he, "mlp") ? TW_HEAD_CONCAT_MLP
                                                                       : TW_HEAD_LINEAR;
    o->frozen = !strcmp(mo, "frozen");
    o->bn_frozen = !strcmp(mo, "bn_frozen");
}

static double norm_rel(const float *got, const float *want, size_t n) {
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        e += d * d;
        r += (double)want[i] * want[i];
    }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

/* got (host) against tensor `name` of ref, max-over-max tol, plus the bf16 norm bound. */
static int compare(tw_st_file *ref, const char *name, const float *got, size_t n, double tol,
                   const tolerances *t, const char *label, int verbose) {
    size_t nw;
    float *want = check_read_f32(ref, name, &nw);
    char what[256];
    snprintf(what, sizeof what, "%s %s", label, name);
    if (nw != n) {
        printf("  FAIL %s: %zu elements, reference has %zu\n", what, n, nw);
        free(want);
        return 0;
    }
    int ok = check_close(what, got, want, n, tol);
    if (t->torch_relative) {
        char key[320];
        snprintf(key, sizeof key, "bf16err.%s", name);
        float *te = check_read_f32(ref, key, NULL);
        double bound = 1.5 * te[0] + 5e-3, nr = norm_rel(got, want, n);
        if (nr > bound || verbose)
            printf("%s %s norm_rel=%.3e torch_bf16=%.3e bound=%.3e\n", nr <= bound ? "  ok  " : "  FAIL",
                   what, nr, (double)te[0], bound);
        ok &= nr <= bound;
        free(te);
    }
    free(want);
    return ok;
}

static float *dev_upload(tw_backend *be, tw_st_file *ref, const char *name, size_t *n) {
    float *h = check_read_f32(ref, name, n);
    float *d = tw_mem_alloc(be, *n * sizeof(float));
    tw_mem_from_host(be, d, h, *n * sizeof(float));
    free(h);
    return d;
}

/* Host copies of params, buffers and counters, to check what a forward leaves untouched. */
typedef struct snapshot {
    float *params, *buffers;
    int64_t *counters;
} snapshot;

static snapshot snap(const tw_params *P) {
    snapshot s = {malloc(P->n_params * 4 + 4), malloc(P->n_buffers * 4 + 4), malloc(P->n_counters * 8 + 8)};
    tw_mem_to_host(P->be, s.params, P->params, P->n_params * 4);
    tw_mem_to_host(P->be, s.buffers, P->buffers, P->n_buffers * 4);
    memcpy(s.counters, P->counters, P->n_counters * 8);
    return s;
}

static void snap_free(snapshot *s) {
    free(s->params);
    free(s->buffers);
    free(s->counters);
}

/* Entries selected by backbone_only (all of them when 0) unchanged bit for bit against s. */
static int unchanged(const tw_classifier *m, const snapshot *s, int backbone_only, const char *what) {
    const tw_params *P = m->P;
    snapshot now = snap(P);
    int bad = 0;
    for (int i = 0; i < P->n_entries; i++) {
        const tw_param_entry *e = &P->entries[i];
        if (backbone_only && !tw_classifier_in_backbone(m, i)) continue;
        if (e->kind == TW_PARAM_COUNTER) {
            bad += now.counters[e->offset] != s->counters[e->offset];
            continue;
        }
        const float *a = e->kind == TW_PARAM_TRAIN ? now.params : now.buffers;
        const float *b = e->kind == TW_PARAM_TRAIN ? s->params : s->buffers;
        if (memcmp(a + e->offset, b + e->offset, e->n_elems * 4)) {
            if (bad < 3) printf("  FAIL %s: %s changed\n", what, e->name);
            bad++;
        }
    }
    snap_free(&now);
    printf("%s %s: %s bit-unchanged\n", bad ? "  FAIL" : "  ok  ", what,
           backbone_only ? "backbone weights, buffers and counters" : "the whole arena");
    return !bad;
}

static int run_case(tw_backend *be, const char *dir, const char *name, const tolerances *tol,
                    const char *prec) {
    int ok = 1;
    tw_err err = {0};
    char path[1024], label[96], key[256];
    snprintf(label, sizeof label, "%s %s", name, prec);
    snprintf(path, sizeof path, "%s/expect_%s.safetensors", dir, name);
    tw_st_file *ref = NULL, *wf = NULL;
    if (tw_st_open(&ref, path, &err) != TW_OK) {
        printf("FAIL: %s\n", err.msg);
        exit(1);
    }
    tw_classifier_opts o;
    opts_from_meta(&o, ref);
    int n = meta_int(ref, "batch"), size = meta_int(ref, "size"), k = o.n_classes;
    tw_params P;
    tw_params_init(&P, be);
    tw_classifier m;
    if (tw_classifier_init(&m, &P, &o, &err) != TW_OK) {
        printf("FAIL %s: %s\n", label, err.msg);
        exit(1);
    }
    tw_params_alloc(&P, 0);
    tw_classifier_reset(&m, 1);
    snprintf(path, sizeof path, "%s/weights_%s.safetensors", dir, name);
    tw_params_load_opts lo = {"", "", NULL, 0};
    if (tw_st_open(&wf, path, &err) != TW_OK || tw_params_load(&P, wf, &lo, &err) != TW_OK) {
        printf("FAIL %s: %s\n", label, err.msg);
        exit(1);
    }
    tw_st_close(wf);
    size_t n1, n2, nt;
    float *x1 = dev_upload(be, ref, "x_s1", &n1), *x2 = dev_upload(be, ref, "x_s2", &n2);
    float *targets = dev_upload(be, ref, "targets", &nt);
    TW_ASSERT(nt == (size_t)n * k);
    tw_classifier_plans *p = NULL;
    if (tw_classifier_plans_make(&p, be, &m, n, size, size, &err) != TW_OK) {
        printf("FAIL %s: %s\n", label, err.msg);
        exit(1);
    }
    tw_classifier_acts a;
    tw_classifier_acts_make(&a, &m, p, 1);
    float *logits = malloc((size_t)n * k * sizeof(float));

    /* evaluation: nothing in the arena changes */
    snapshot s0 = snap(&P);
    tw_classifier_forward(&a, o.c_s1 ? x1 : NULL, o.c_s2 ? x2 : NULL, &m, p, 0);
    tw_mem_to_host(be, logits, a.logits, (size_t)n * k * sizeof(float));
    ok &= compare(ref, "logits_eval", logits, (size_t)n * k, tol->eval, tol, label, 1);
    ok &= unchanged(&m, &s0, 0, label);
    {   /* an evaluation-only activation set gives the same logits, bit for bit */
        tw_classifier_acts e;
        tw_classifier_acts_make(&e, &m, p, 0);
        tw_classifier_forward(&e, o.c_s1 ? x1 : NULL, o.c_s2 ? x2 : NULL, &m, p, 0);
        float *le = malloc((size_t)n * k * sizeof(float));
        tw_mem_to_host(be, le, e.logits, (size_t)n * k * sizeof(float));
        int same = !memcmp(le, logits, (size_t)n * k * sizeof(float));
        printf("%s %s: eval-only activation set (%zu of %zu backbone bytes): same logits\n",
               same ? "  ok  " : "  FAIL", label, e.net[0][0].n_bytes, a.net[0][0].n_bytes);
        ok &= same;
        free(le);
        tw_classifier_acts_free(&e, be);
    }

    /* one training step; every trainable gradient starts as garbage, so = is checked */
    float *junk = malloc(P.n_params * sizeof(float));
    tw_mem_to_host(be, junk, P.grads, P.n_params * sizeof(float));
    for (int i = 0; i < P.n_entries; i++)
        if (tw_classifier_trainable(&m, i))
            for (size_t j = 0; j < P.entries[i].n_elems; j++) junk[P.entries[i].offset + j] = 3.25f;
    tw_mem_from_host(be, P.grads, junk, P.n_params * sizeof(float));
    tw_classifier_forward(&a, o.c_s1 ? x1 : NULL, o.c_s2 ? x2 : NULL, &m, p, 1);
    tw_mem_to_host(be, logits, a.logits, (size_t)n * k * sizeof(float));
    ok &= compare(ref, "logits", logits, (size_t)n * k, tol->train, tol, label, 1);
    float loss = (float)tw_bce_logits(be, a.dlogits, a.logits, targets, n, k);
    ok &= compare(ref, "loss", &loss, 1, tol->loss, &TOL_FP32, label, 1);
    tw_classifier_backward(&m, &a, a.dlogits, p, NULL);

    float *grads = malloc(P.n_params * sizeof(float));
    tw_mem_to_host(be, grads, P.grads, P.n_params * sizeof(float));
    int n_trained = 0, n_zero_bad = 0;
    double worst = 0;
    char worst_name[TW_PARAM_NAME_MAX] = "-";
    for (int i = 0; i < P.n_entries; i++) {
        const tw_param_entry *e = &P.entries[i];
        if (e->kind != TW_PARAM_TRAIN) continue;
        const float *g = grads + e->offset;
        snprintf(key, sizeof key, "grad.%s", e->name);
        if (!tw_classifier_trainable(&m, i)) {
            for (size_t j = 0; j < e->n_elems; j++) n_zero_bad += g[j] != 0.0f;
            if (tw_st_find(ref, key)) {
                printf("  FAIL %s: %s is not trainable but torch has a gradient\n", label, e->name);
                ok = 0;
            }
            continue;
        }
        n_trained++;
        ok &= compare(ref, key, g, e->n_elems, tol->grad, tol, label, 0);
        size_t nw;
        float *want = check_read_f32(ref, key, &nw);
        double mx = 0, md = 0;
        for (size_t j = 0; j < nw; j++) {
            if (fabs(want[j]) > mx) mx = fabs(want[j]);
            if (fabs(g[j] - want[j]) > md) md = fabs(g[j] - want[j]);
        }
        if (mx > 0 && md / mx > worst) {
            worst = md / mx;
            snprintf(worst_name, sizeof worst_name, "%s", e->name);
        }
        free(want);
    }
    printf("# %s: %d trained tensors, largest gradient error %.3e of the tensor's max, in %s\n",
           label, n_trained, worst, worst_name);
    if (o.frozen) {
        printf("%s %s: frozen backbone gradients are 0 (%d nonzero)\n", n_zero_bad ? "  FAIL" : "  ok  ",
               label, n_zero_bad);
        ok &= !n_zero_bad && unchanged(&m, &s0, 1, label);
    }
    /* running statistics (and counters) after the step, frozen or not */
    for (int i = 0; i < P.n_entries; i++) {
        const tw_param_entry *e = &P.entries[i];
        snprintf(key, sizeof key, "after.%s", e->name);
        if (e->kind == TW_PARAM_BUFFER) {
            float *h = malloc(e->n_elems * sizeof(float));
            tw_mem_to_host(be, h, tw_params_ptr(&P, i), e->n_elems * sizeof(float));
            ok &= compare(ref, key, h, e->n_elems, tol->stats, &TOL_FP32, label, 0);
            free(h);
        } else if (e->kind == TW_PARAM_COUNTER) {
            const tw_st_tensor *t = tw_st_find(ref, key);
            int64_t want = -1;
            if (!t || tw_st_read(ref, &want, t, &err) != TW_OK || want != *tw_params_counter(&P, i)) {
                printf("  FAIL %s %s: %lld, want %lld\n", label, key,
                       (long long)*tw_params_counter(&P, i), (long long)want);
                ok = 0;
            }
        }
    }
    printf("%s %s\n", ok ? "  ok  " : "  FAIL", label);
    snap_free(&s0);
    free(junk);
    free(grads);
    free(logits);
    tw_classifier_acts_free(&a, be);
    tw_classifier_plans_free(p);
    tw_mem_free(be, x1);
    tw_mem_free(be, x2);
    tw_mem_free(be, targets);
    tw_params_free(&P);
    tw_st_close(ref);
    return ok;
}

int main(int argc, char **argv) {
    if (argc < 4 || (strcmp(argv[2], "fp32") && strcmp(argv[2], "bf16"))) {
        fprintf(stderr, "usage: test_classifier REF_DIR fp32|bf16 CASE [CASE ...]\n");
        return 1;
    }
    int bf16 = !strcmp(argv[2], "bf16");
    tw_err err = {0};
    tw_backend *be = NULL;
    tw_status st = tw_backend_create(&be, TW_DEVICE_CPU, bf16 ? TW_PREC_BF16 : TW_PREC_FP32, 0, &err);
    if (st == TW_E_UNSUPPORTED) {
        printf("SKIP: no native bf16 on this CPU (%s)\n", err.msg);
        return 77;
    }
    if (st != TW_OK) {
        printf("FAIL: backend: %s\n", err.msg);
        return 1;
    }
    char desc[256];
    tw_backend_describe(be, desc, sizeof desc);
    printf("# backend: %s\n", desc);
    int ok = 1;
    for (int i = 3; i < argc; i++) ok &= run_case(be, argv[1], argv[i], bf16 ? &TOL_BF16 : &TOL_FP32, argv[2]);
    tw_backend_free(be);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
