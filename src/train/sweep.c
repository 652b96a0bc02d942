/* The sweep's grid, cells and results (sweep.h). A cell's configuration is the base's YAML read
 * back with the cell's keys as overrides, so every cell passes the fine-tuning schema's checks. */
#include "train/sweep.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/log.h"
#include "data/loader.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/finetune.h"
#include "train/runtime.h"

#define MAX_ITEMS 32


/* Splits a comma-separated list (in buf, a copy) into trimmed items; returns how many, -1 when
 * there are more than max or an item is empty. */
static int split_list(char *buf, size_t n_buf, const char *list, const char **items, int max) {
    snprintf(buf, n_buf, "%s", list);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        for (char *e = tok + strlen(tok); e > tok && e[-1] == ' ';) *--e = 0;
        if (!*tok || n == max) return -1;
        items[n++] = tok;
    }
    return n;
}

static int index_of(const char *v, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) return i;
    return -1;
}

typedef struct grid_lists {
    char b[6][TW_CFG_STR_MAX];
    const char *sources[MAX_ITEMS], *fusions[MAX_ITEMS], *exps[MAX_ITEMS], *fracs[MAX_ITEMS], *seeds[MAX_ITEMS];
    int n_sources, n_fusions, n_exps, n_fracs, n_seeds;
} grid_lists;

static tw_status bad(tw_err *err, const char *key, const char *value, const char *why) {
    return tw_err_set(err, TW_E_RANGE, "%s: '%s': %s", key, value, why);
}

/* The initialisation's checkpoint or file for one cell, or an error naming the empty key. */
static tw_status check_init(const tw_sweep_grid_cfg *g, const char *init, tw_cfg_source src, tw_err *err) {
    if (!strcmp(init, "weights") && !g->weights[0])
        return tw_err_set(err, TW_E_MISSING, "sweep.weights: empty, and sweep.experiments asks for weights");
    if (!strcmp(init, "ssl")) {
        if (src != TW_SOURCE_S2 && !g->ssl_s1[0])
            return tw_err_set(err, TW_E_MISSING, "sweep.ssl_s1: empty, and an S1 backbone is initialised from ssl");
        if (src != TW_SOURCE_S1 && !g->ssl_s2[0])
            return tw_err_set(err, TW_E_MISSING, "sweep.ssl_s2: empty, and an S2 backbone is initialised from ssl");
    }
    if (!strcmp(init, "ssl-cross")) {
        if (!g->ssl_cross[0])
            return tw_err_set(err, TW_E_MISSING, "sweep.ssl_cross: empty, and sweep.experiments asks for ssl-cross");
    }
    return TW_OK;
}

static tw_status parse(grid_lists *L, const tw_sweep_grid_cfg *g, tw_err *err) {
    struct { const char *key, *value; const char **items; int *n; } lists[] = {
        {"sweep.sources", g->sources, L->sources, &L->n_sources},
        {"sweep.fusions", g->fusions, L->fusions, &L->n_fusions},
        {"sweep.experiments", g->experiments, L->exps, &L->n_exps},
        {"sweep.fractions", g->fractions, L->fracs, &L->n_fracs},
        {"sweep.seeds", g->seeds, L->seeds, &L->n_seeds},
    };
    for (int i = 0; i < 5; i++) {
        *lists[i].n = split_list(L->b[i], sizeof L->b[i], lists[i].value, lists[i].items, MAX_ITEMS);
        if (*lists[i].n <= 0)
            return bad(err, lists[i].key, lists[i].value, "want a comma-separated list of 1 to 32 items");
    }
    return TW_OK;
}

tw_status tw_sweep_init(tw_sweep *s, const tw_sweep_cfg *cfg, tw_err *err) {
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    snprintf(s->dir, sizeof s->dir, "%s/%s", cfg->ft.run.out_dir, cfg->ft.run.name);
    const tw_sweep_grid_cfg *g = &cfg->sweep;
    grid_lists *L = calloc(1, sizeof *L);
    TW_ASSERT(L);
    tw_status st = parse(L, g, err);
    s->n_splits = st == TW_OK ? split_list(s->splits_buf, sizeof s->splits_buf, g->splits, s->splits, 4) : 0;
    if (st == TW_OK && s->n_splits <= 0) st = bad(err, "sweep.splits", g->splits, "want 1 to 4 of val, test, clouds, train");
    for (int i = 0; st == TW_OK && i < s->n_splits; i++)
        if (index_of(s->splits[i], tw_cfg_split_names, 4) < 0) st = bad(err, "sweep.splits", s->splits[i], "not a split");
    int cap = L->n_sources * L->n_fusions * L->n_exps * L->n_fracs * L->n_seeds;
    s->cells = calloc((size_t)cap + 1, sizeof *s->cells);
    TW_ASSERT(s->cells);
    for (int a = 0; st == TW_OK && a < L->n_sources; a++) {
        int src = index_of(L->sources[a], tw_cfg_source_names, 3);
        if (src < 0) {
            st = bad(err, "sweep.sources", L->sources[a], "want s1, s2 or s1+s2");
            break;
        }
        int n_fus = src == TW_SOURCE_S1S2 ? L->n_fusions : 1;
        for (int b = 0; st == TW_OK && b < n_fus; b++) {
            int fusion = TW_CFG_FUSION_NONE, head = TW_CFG_HEAD_CONCAT_LINEAR;
            if (src == TW_SOURCE_S1S2) {
                char f[64];
                snprintf(f, sizeof f, "%s", L->fusions[b]);
                char *colon = strchr(f, ':');
                if (colon) *colon = 0;
                fusion = index_of(f, tw_cfg_fusion_names, 3);
                head = colon ? index_of(colon + 1, tw_cfg_head_names, 3) : TW_CFG_HEAD_CONCAT_LINEAR;
                if (fusion <= TW_CFG_FUSION_NONE || head < 0 || (fusion == TW_CFG_FUSION_EARLY && colon)) {
                    st = bad(err, "sweep.fusions", L->fusions[b], "want early or feature:<concat-linear|concat-mlp|gated>");
                    break;
                }
            }
            for (int e = 0; st == TW_OK && e < L->n_exps; e++) {
                char x[64];
                snprintf(x, sizeof x, "%s", L->exps[e]);
                char *colon = strchr(x, ':');
                if (colon) *colon = 0;
                static const char *const inits[] = {"scratch", "weights", "ssl", "ssl-cross"};
                int mode = colon ? index_of(colon + 1, tw_cfg_mode_names, 2) : -1, init = index_of(x, inits, 4);
                if (!colon || init < 0 || mode < 0) {
                    st = bad(err, "sweep.experiments", L->exps[e],
                             "want <scratch|weights|ssl|ssl-cross>:<frozen|finetune>");
                    break;
                }
                /* Early fusion's stacked backbone has no pre-training: that pair is left out of the
                 * grid (so one grid can hold every row of the seed's table). */
                if (fusion == TW_CFG_FUSION_EARLY && !strncmp(x, "ssl", 3)) {
                    s->n_skipped += L->n_fracs * L->n_seeds;
                    continue;
                }
                if ((st = check_init(g, x, src, err)) != TW_OK) break;
                for (int f = 0; st == TW_OK && f < L->n_fracs; f++) {
                    char *end = NULL;
                    double frac = strtod(L->fracs[f], &end);
                    if (*end || !(frac > 0 && frac <= 1)) {
                        st = bad(err, "sweep.fractions", L->fracs[f], "want a number in (0, 1]");
                        break;
                    }
                    for (int k = 0; st == TW_OK && k < L->n_seeds; k++) {
                        long long seed = strtoll(L->seeds[k], &end, 10);
                        if (*end || seed < 0) {
                            st = bad(err, "sweep.seeds", L->seeds[k], "want an integer >= 0");
                            break;
                        }
                        tw_sweep_cell *c = &s->cells[s->n_cells++];
                        *c = (tw_sweep_cell){.source = src, .fusion = fusion, .head = head, .init = inits[init],
                                             .mode = mode, .fraction = frac, .seed = seed};
                        char fus[48] = "";
                        if (fusion == TW_CFG_FUSION_EARLY) snprintf(fus, sizeof fus, "-early");
                        if (fusion == TW_CFG_FUSION_FEATURE) snprintf(fus, sizeof fus, "-feature-%s", tw_cfg_head_names[head]);
                        snprintf(c->name, sizeof c->name, "%s%s-%s-%s-f%g-s%lld", tw_cfg_source_names[src], fus, x,
                                 tw_cfg_mode_names[mode], frac, seed);
                    }
                }
            }
        }
    }
    free(L);
    if (st == TW_OK) s->base_yaml = tw_cfg_to_yaml(tw_finetune_schema(), &cfg->ft);
    return st;
}

void tw_sweep_free(tw_sweep *s) {
    free(s->cells);
    free(s->base_yaml);
    memset(s, 0, sizeof *s);
}

static void cell_path(char *buf, size_t n, const tw_sweep *s, int i, const char *file) {
    snprintf(buf, n, "%s/%s/%s", s->dir, s->cells[i].name, file);
}

int tw_sweep_cell_done(const tw_sweep *s, int i) {
    char path[3 * TW_CFG_STR_MAX];
    cell_path(path, sizeof path, s, i, "eval.json");
    return access(path, R_OK) == 0;
}

/* The cell's fine-tuning configuration: the base read back with the cell's keys. */
static tw_status cell_config(tw_finetune_cfg *out, const tw_sweep *s, const tw_sweep_cell *c, tw_err *err) {
    const tw_sweep_grid_cfg *g = &s->cfg->sweep;
    enum { N = 13, W = 3 * TW_CFG_STR_MAX };
    char (*b)[W] = calloc(N, W);
    TW_ASSERT(b);
    int n = 0;
    snprintf(b[n++], W, "data.source=%s", tw_cfg_source_names[c->source]);
    snprintf(b[n++], W, "model.fusion=%s", tw_cfg_fusion_names[c->fusion]);
    snprintf(b[n++], W, "model.head=%s", tw_cfg_head_names[c->head]);
    snprintf(b[n++], W, "model.mode=%s", tw_cfg_mode_names[c->mode]);
    snprintf(b[n++], W, "data.label_fraction=%.17g", c->fraction);
    snprintf(b[n++], W, "run.seed=%" PRId64, c->seed);
    snprintf(b[n++], W, "run.name=\"%s\"", c->name);
    snprintf(b[n++], W, "run.out_dir=\"%s\"", s->dir);
    double scale = fmin(1.0 / c->fraction, g->epoch_scale_max);
    snprintf(b[n++], W, "optim.epochs=%ld", lrint(fmax(1.0, s->cfg->ft.optim.epochs * scale)));
    /* As many validations per cell whatever the fraction. */
    snprintf(b[n++], W, "eval.every_epochs=%ld", lrint(s->cfg->ft.eval.every_epochs * scale));
    const char *i1 = "", *i2 = "", *i0 = "scratch", *pre = "";
    if (!strcmp(c->init, "weights")) i0 = g->weights, pre = "weights:";
    if (!strcmp(c->init, "ssl")) i1 = g->ssl_s1, i2 = g->ssl_s2, i0 = "scratch";
    if (!strcmp(c->init, "ssl-cross")) i0 = g->ssl_cross, pre = "ssl:";
    snprintf(b[n++], W, "model.init=\"%s%s\"", pre, i0);
    snprintf(b[n++], W, "model.init_s1=\"%s%s\"", i1[0] ? "ssl:" : "", i1);
    snprintf(b[n++], W, "model.init_s2=\"%s%s\"", i2[0] ? "ssl:" : "", i2);
    char *ov[N];
    for (int i = 0; i < n; i++) ov[i] = b[i];
    char label[256];
    snprintf(label, sizeof label, "sweep cell %s", c->name);
    tw_status st = tw_cfg_load_text(tw_finetune_schema(), out, s->base_yaml, label, n, ov, err);
    free(b);
    return st;
}

/* A small label fraction may leave fewer samples than a batch: the batch shrinks to what the
 * subset holds (a multiple of the ranks), so every cell trains. */
static tw_status fit_batch(tw_finetune_cfg *cfg, tw_comm *comm, tw_err *err) {
    tw_loader_opts lo;
    tw_loader *ld = NULL;
    tw_status st = tw_run_loader_opts(&lo, comm, &cfg->data, tw_cfg_split_names[cfg->data.split], err);
    lo.prefetch = 1;
    lo.global_batch = tw_comm_size(comm);   /* only counting: any subset holds one such batch */
    lo.drop_last = 0;
    if (st == TW_OK) st = tw_loader_init(&ld, &lo, err);
    if ((st = tw_comm_agree(comm, st, err)) != TW_OK) return st;
    int64_t n = tw_loader_n_samples(ld), world = tw_comm_size(comm);
    tw_loader_free(ld);
    int64_t fit = n - n % world;
    if (fit < 2 * world)
        return tw_err_set(err, TW_E_RANGE, "%s: %" PRId64 " samples at data.label_fraction=%g, too few for %" PRId64
                          " ranks", cfg->data.shards, n, cfg->data.label_fraction, world);
    if (cfg->data.batch > fit) cfg->data.batch = (int)fit;
    if (cfg->eval.batch > cfg->data.batch) cfg->eval.batch = 0;
    return TW_OK;
}

int tw_sweep_run_cell(tw_sweep *s, tw_comm *comm, int i) {
    const tw_sweep_cell *c = &s->cells[i];
    int rank = tw_comm_rank(comm);
    if (tw_sweep_cell_done(s, i)) {
        tw_log("# ---- cell %d/%d %s: done, skipped\n", i + 1, s->n_cells, c->name);
        return 0;
    }
    tw_log("# ---- cell %d/%d %s\n", i + 1, s->n_cells, c->name);
    tw_err err = {0};
    tw_finetune_cfg *cfg = calloc(1, sizeof *cfg);
    TW_ASSERT(cfg);
    tw_status st = cell_config(cfg, s, c, &err);
    if (st == TW_OK) st = fit_batch(cfg, comm, &err);
    if (st != TW_OK) {
        if (rank == 0) fprintf(stderr, "twinfuse sweep: cell %s: %s\n", c->name, err.msg);
        free(cfg);
        return 1;
    }
    char *yaml = tw_cfg_to_yaml(tw_finetune_schema(), cfg);
    char label[3 * TW_CFG_STR_MAX];
    cell_path(label, sizeof label, s, i, "config.yaml");
    int code = tw_finetune_run(comm, cfg, yaml, label);
    free(yaml);
    if (code == 0) {
        char best[3 * TW_CFG_STR_MAX], json[3 * TW_CFG_STR_MAX];
        cell_path(best, sizeof best, s, i, "best.safetensors");
        cell_path(json, sizeof json, s, i, "eval.json");
        tw_evaluate_opts o = {.ckpt = best, .sources = tw_cfg_source_names[c->source], .json = json};
        for (int k = 0; k < s->n_splits; k++) o.splits[o.n_splits++] = s->splits[k];
        st = tw_evaluate_run(comm, cfg, &o, NULL, &err);
        if (st != TW_OK && rank == 0) fprintf(stderr, "twinfuse sweep: cell %s: evaluate: %s\n", c->name, err.msg);
        code = st != TW_OK;
    } else if (rank == 0) {
        fprintf(stderr, "twinfuse sweep: cell %s failed (see above); rerun the sweep to resume it\n", c->name);
    }
    free(cfg);
    return code;
}

/* The cell's steps: its newest checkpoint's. */
static int64_t cell_steps(const tw_sweep *s, int i) {
    char dir[3 * TW_CFG_STR_MAX], **paths;
    snprintf(dir, sizeof dir, "%s/%s", s->dir, s->cells[i].name);
    int n = tw_ckpt_list(&paths, dir);
    int64_t steps = -1;
    tw_ckpt_info info;
    tw_err err = {0};
    if (n > 0 && tw_ckpt_info_read(&info, paths[0], &err) == TW_OK) steps = info.step;
    if (n > 0) tw_ckpt_info_free(&info);
    tw_ckpt_list_free(paths, n);
    return steps;
}

/* One cell's rows (eval.json's splits) appended to *buf. */
static tw_status cell_rows(char **buf, size_t *len, const tw_sweep *s, int i, tw_err *err) {
    const tw_sweep_cell *c = &s->cells[i];
    char path[3 * TW_CFG_STR_MAX];
    cell_path(path, sizeof path, s, i, "eval.json");
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je), *splits = root ? json_object_get(root, "splits") : NULL;
    if (!json_is_array(splits)) {
        json_decref(root);
        return tw_err_set(err, TW_E_FORMAT, "%s:%d: not a twinfuse metrics report (%s)", path, je.line,
                          root ? "no splits" : je.text);
    }
    int64_t steps = cell_steps(s, i);
    size_t k;
    json_t *sp;
    json_array_foreach(splits, k, sp) {
        char row[1024];
        int n = snprintf(row, sizeof row, "%s,%s,%s,%s,%s,%s,%.6f,%" PRId64 ",%s,%" PRId64 ",%.6f,%.6f,%.6f,%.6f,%" PRId64 "\n",
                         c->name, tw_cfg_source_names[c->source], tw_cfg_fusion_names[c->fusion], tw_cfg_head_names[c->head], c->init,
                         tw_cfg_mode_names[c->mode], c->fraction, c->seed, json_string_value(json_object_get(sp, "split")),
                         (int64_t)json_integer_value(json_object_get(sp, "n_samples")),
                         json_real_value(json_object_get(sp, "map_macro")), json_real_value(json_object_get(sp, "map_micro")),
                         json_real_value(json_object_get(sp, "f1_macro")), json_real_value(json_object_get(sp, "f1_micro")),
                         steps);
        char *grown = realloc(*buf, *len + (size_t)n + 1);
        TW_ASSERT(grown);
        memcpy(grown + *len, row, (size_t)n + 1);
        *buf = grown;
        *len += (size_t)n;
    }
    json_decref(root);
    return TW_OK;
}

tw_status tw_sweep_write_results(const tw_sweep *s, int *n_done, tw_err *err) {
    static const char header[] =
        "cell,source,fusion,head,init,mode,label_fraction,seed,split,n_samples,map_macro,map_micro,f1_macro,f1_micro,steps\n";
    size_t len = sizeof header - 1;
    char *buf = malloc(len + 1);
    TW_ASSERT(buf);
    memcpy(buf, header, len + 1);
    tw_status st = TW_OK;
    *n_done = 0;
    for (int i = 0; i < s->n_cells && st == TW_OK; i++)
        if (tw_sweep_cell_done(s, i) && (st = cell_rows(&buf, &len, s, i, err)) == TW_OK) (*n_done)++;
    char path[3 * TW_CFG_STR_MAX];
    snprintf(path, sizeof path, "%s/results.csv", s->dir);
    if (st == TW_OK) st = tw_run_make_dirs(s->dir, err);
    if (st == TW_OK) st = tw_atomic_write_text(path, buf, err);
    free(buf);
    return st;
}
