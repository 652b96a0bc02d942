/* The scene loop of predict and embed (predict.h): a strip of window rows read and normalised,
 * the valid windows of this rank batched through the classifier, the row's outputs summed over
 * the ranks, and on rank 0 the rows no later window touches blended and written. */
#include "predict/predict.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "data/labels.h"
#include "data/progress.h"
#include "data/raster.h"
#include "predict/raster_out.h"
#include "predict/scene_input.h"
#include "predict/tiles.h"
#include "train/checkpoint.h"
#include "train/runtime.h"

/* matplotlib's tab20, then the same darker: one colour per class of the top-label map. */
static const uint8_t tab20[20][3] = {
    {31, 119, 180}, {174, 199, 232}, {255, 127, 14}, {255, 187, 120}, {44, 160, 44},   {152, 223, 138}, {214, 39, 40},
    {255, 152, 150}, {148, 103, 189}, {197, 176, 213}, {140, 86, 75},  {196, 156, 148}, {227, 119, 194}, {247, 182, 210},
    {127, 127, 127}, {199, 199, 199}, {188, 189, 34},  {219, 219, 141}, {23, 190, 207},  {158, 218, 229}};

/* The normalisation of the shards at dir (any split: a conversion writes the same into all). */
static tw_status norm_of(tw_shard_norm *norm, const char *dir, tw_err *err) {
    for (int s = 0; tw_cfg_split_names[s]; s++) {
        char **paths = NULL;
        int n = 0;
        tw_status st = tw_shard_list(&paths, &n, dir, tw_cfg_split_names[s], err);
        if (st == TW_OK && n > 0) {
            tw_shard *sh = NULL;
            st = tw_shard_open(&sh, paths[0], err);
            if (st == TW_OK) st = tw_shard_norm_get(sh, norm, err);
            tw_shard_close(sh);
            free(paths);
            return st;
        }
        free(paths);
    }
    return tw_err_set(err, TW_E_MISSING, "%s: no shards; the normalisation the model was trained with is read from the "
                      "checkpoint's data.shards (give data.shards=DIR if they moved)", dir);
}

tw_status tw_predictor_init(tw_predictor *p, tw_comm *comm, const tw_finetune_cfg *cfg, const char *ckpt, int is_cls,
                            int batch, tw_err *err) {
    memset(p, 0, sizeof *p);
    tw_raster_init();
    int world = tw_comm_size(comm);
    if (batch <= 0) {
        int global = cfg->eval.batch > 0 ? cfg->eval.batch : cfg->data.batch;
        batch = global / world > 0 ? global / world : 1;
    }
    p->batch = batch;
    tw_status st = tw_comm_agree(comm, norm_of(&p->norm, cfg->data.shards, err), err);
    if (st) return st;
    if ((st = tw_run_backend_create(&p->be, comm, &cfg->backend, err))) return st;
    st = tw_comm_agree(comm, tw_classifier_run_init(&p->c, p->be, comm, cfg, batch, 1, 0, err), err);
    if (st == TW_OK && is_cls) {
        tw_ckpt_state cs;
        tw_ckpt_content content = {&p->c.P, NULL, "classification", p->c.sources};
        st = tw_comm_agree(comm, tw_ckpt_load(ckpt, &content, &cs, err), err);
    } else if (st == TW_OK) {
        st = tw_comm_agree(comm, tw_classifier_run_init_weights(&p->c, 0, err), err);
    }
    size_t win = (size_t)p->c.size * p->c.size;
    p->h_s1 = malloc(sizeof(float) * (size_t)batch * p->c.c_s1 * win + 1);
    p->h_s2 = malloc(sizeof(float) * (size_t)batch * p->c.c_s2 * win + 1);
    p->h_out = malloc(sizeof(float) * (size_t)batch * (p->c.k + TW_RESNET18_FEATS * 2));
    TW_ASSERT(p->h_s1 && p->h_s2 && p->h_out);
    return st;
}

void tw_predictor_free(tw_predictor *p) {
    tw_classifier_run_free(&p->c);
    if (p->be) tw_backend_free(p->be);
    free(p->h_s1);
    free(p->h_s2);
    free(p->h_out);
    memset(p, 0, sizeof *p);
}

/* Scores windows i = 0..n-1 (origin xs[i] in the strip at strips[i], of planes [n_ch, S, strip_w])
 * into rows[qs[i] * width ...]: k probabilities (sigmoid of the logits) or the pooled features,
 * then a 1 (scored). Batches of p->batch; the last one padded with zeros. */
static void score_windows(tw_predictor *p, const float *const *strips, int strip_w, const int *xs, const int *qs,
                          int n, int features, float *rows, int width) {
    tw_classifier_run *c = &p->c;
    int S = c->size, n_ch = c->c_s2 + c->c_s1;
    size_t win = (size_t)S * S, n_px = (size_t)S * strip_w;
    for (int b0 = 0; b0 < n; b0 += p->batch) {
        int nb = n - b0 < p->batch ? n - b0 : p->batch;
        memset(p->h_s2, 0, sizeof(float) * (size_t)p->batch * c->c_s2 * win);
        memset(p->h_s1, 0, sizeof(float) * (size_t)p->batch * c->c_s1 * win);
        for (int i = 0; i < nb; i++) {
            const float *planes = strips[b0 + i];
            int x0 = xs[b0 + i];
            for (int ch = 0; ch < n_ch; ch++) {
                float *dst = ch < c->c_s2 ? p->h_s2 + ((size_t)i * c->c_s2 + ch) * win
                                          : p->h_s1 + ((size_t)i * c->c_s1 + ch - c->c_s2) * win;
                for (int y = 0; y < S; y++)
                    memcpy(dst + (size_t)y * S, planes + ch * n_px + (size_t)y * strip_w + x0, sizeof(float) * S);
            }
        }
        if (c->c_s2) tw_mem_from_host(p->be, c->x_s2, p->h_s2, sizeof(float) * (size_t)p->batch * c->c_s2 * win);
        if (c->c_s1) tw_mem_from_host(p->be, c->x_s1, p->h_s1, sizeof(float) * (size_t)p->batch * c->c_s1 * win);
        tw_classifier_forward(&c->acts, c->x_s1, c->x_s2, &c->m, c->plans, 0);
        if (!features) {
            tw_mem_to_host(p->be, p->h_out, c->acts.logits, sizeof(float) * (size_t)nb * c->k);
            for (int i = 0; i < nb; i++) {
                float *r = rows + (size_t)qs[b0 + i] * width;
                for (int j = 0; j < c->k; j++) r[j] = (float)(1.0 / (1.0 + exp(-(double)p->h_out[i * c->k + j])));
                r[width - 1] = 1.0f;
            }
            continue;
        }
        for (int net = 0; net < c->m.n_nets; net++) {
            tw_mem_to_host(p->be, p->h_out, c->acts.feats[net], sizeof(float) * (size_t)nb * TW_RESNET18_FEATS);
            for (int i = 0; i < nb; i++) {
                float *r = rows + (size_t)qs[b0 + i] * width;
                memcpy(r + net * TW_RESNET18_FEATS, p->h_out + (size_t)i * TW_RESNET18_FEATS,
                       sizeof(float) * TW_RESNET18_FEATS);
                r[width - 1] = 1.0f;
            }
        }
    }
}

/* The grid of the features raster: one pixel per window of a regular grid, centred on it. */
static void window_grid(tw_grid *out, const tw_grid *g, int win, int stride, int n_y, int n_x) {
    *out = *g;
    const double *t = g->transform;
    double off = (win - stride) / 2.0;
    out->transform[0] = t[0] + off * t[1] + off * t[2];
    out->transform[3] = t[3] + off * t[4] + off * t[5];
    out->transform[1] = t[1] * stride;
    out->transform[2] = t[2] * stride;
    out->transform[4] = t[4] * stride;
    out->transform[5] = t[5] * stride;
    out->width = n_x;
    out->height = n_y;
}

typedef struct outputs {
    tw_raster_out *map, *top, *hot;
} outputs;

static void outputs_abort(outputs *w) {
    tw_raster_out_abort(w->map);
    tw_raster_out_abort(w->top);
    tw_raster_out_abort(w->hot);
    memset(w, 0, sizeof *w);
}

static tw_status outputs_open(outputs *w, tw_predictor *p, const tw_predict_scene_opts *o, const tw_grid *g, int d,
                              const char *const *classes, int stride, tw_err *err) {
    char m_ckpt[4200], m_win[64], m_stride[64], m_s2[4200], m_s1[4200];
    snprintf(m_ckpt, sizeof m_ckpt, "TWINFUSE_CHECKPOINT=%s", o->ckpt ? o->ckpt : "");
    snprintf(m_s2, sizeof m_s2, "TWINFUSE_S2=%s", o->s2 ? o->s2 : "");
    snprintf(m_s1, sizeof m_s1, "TWINFUSE_S1=%s", o->s1 ? o->s1 : "");
    snprintf(m_win, sizeof m_win, "TWINFUSE_WINDOW=%d", p->c.size);
    snprintf(m_stride, sizeof m_stride, "TWINFUSE_STRIDE=%d", stride);
    char m_classes[4096] = "";   /* without '=': left out of a features raster */
    if (!o->features) snprintf(m_classes, sizeof m_classes, "TWINFUSE_CLASSES=");
    for (int i = 0; !o->features && i < d; i++)
        snprintf(m_classes + strlen(m_classes), sizeof m_classes - strlen(m_classes), "%s%s", i ? ";" : "", classes[i]);
    const char *meta[] = {m_ckpt, m_win, m_stride, m_s2, m_s1, m_classes,
                          o->features ? "TWINFUSE_CONTENT=pooled backbone features per window"
                                      : "TWINFUSE_CONTENT=class probabilities, Hann-weighted mean of the windows",
                          NULL};
    char **names = NULL;
    if (o->features) {
        names = calloc((size_t)d, sizeof *names);
        TW_ASSERT(names);
        for (int i = 0; i < d; i++) {
            names[i] = malloc(32);
            TW_ASSERT(names[i]);
            const char *net = p->c.m.n_nets == 2 ? (i < TW_RESNET18_FEATS ? "s1." : "s2.") : "";
            snprintf(names[i], 32, "%sfeature%d", net, i % TW_RESNET18_FEATS);
        }
    }
    tw_status st = tw_raster_out_open(&w->map, o->out, g, d, "Float32", o->features ? (const char *const *)names : classes,
                                      NAN, meta, err);
    for (int i = 0; names && i < d; i++) free(names[i]);
    free(names);
    if (st == TW_OK && o->top_label) {
        uint8_t rgb[TW_N_CLASSES43][3];
        for (int i = 0; i < d && i < TW_N_CLASSES43; i++)
            for (int c = 0; c < 3; c++) rgb[i][c] = (uint8_t)(tab20[i % 20][c] * (i < 20 ? 1.0 : i < 40 ? 0.6 : 0.3));
        st = tw_raster_out_open(&w->top, o->top_label, g, 1, "Byte", NULL, 255, meta, err);
        if (st == TW_OK) st = tw_raster_out_classes(w->top, (const uint8_t (*)[3])rgb, d, err);
    }
    if (st == TW_OK && o->multi_hot) st = tw_raster_out_open(&w->hot, o->multi_hot, g, d, "Byte", classes, 255, meta, err);
    if (st) outputs_abort(w);
    return st;
}

/* Rows [r0, r1) of the probability map and what derives from it, on rank 0. */
static tw_status write_rows(outputs *w, const tw_tiles *t, const float *vals, const uint8_t *valid, int k, int r0,
                            int r1, const uint8_t *bad, double threshold, float *buf, uint8_t *buf8, tw_err *err) {
    int W = t->width;
    size_t n_px = (size_t)(r1 - r0) * W;
    tw_tiles_blend_rows(buf, t, vals, valid, k, r0, r1, bad, NAN);
    tw_status st = tw_raster_out_write(w->map, buf, r0, r1 - r0, err);
    if (st == TW_OK && w->top) {
        for (size_t i = 0; i < n_px; i++) {
            int best = 0;
            for (int c = 1; c < k; c++)
                if (buf[c * n_px + i] > buf[best * n_px + i]) best = c;
            buf8[i] = isnan(buf[i]) ? 255 : (uint8_t)best;
        }
        st = tw_raster_out_write(w->top, buf8, r0, r1 - r0, err);
    }
    if (st == TW_OK && w->hot) {
        for (size_t i = 0; i < n_px * k; i++) buf8[i] = isnan(buf[i]) ? 255 : buf[i] >= threshold;
        st = tw_raster_out_write(w->hot, buf8, r0, r1 - r0, err);
    }
    return st;
}

tw_status tw_predict_scene(tw_predictor *p, tw_comm *comm, const tw_predict_scene_opts *o, tw_err *err) {
    tw_classifier_run *c = &p->c;
    double t_start = tw_progress_now();
    int rank = tw_comm_rank(comm), world = tw_comm_size(comm), S = c->size;
    tw_scene_input_opts io = {.s2 = o->s2, .s1 = o->s1, .grid = o->grid, .s1_linear = o->s1_linear,
                              .n_s2 = c->c_s2, .s2_bands = c->lo.s2_bands, .use_s1 = c->c_s1 > 0, .norm = &p->norm};
    tw_scene_input in;
    tw_tiles t;
    memset(&t, 0, sizeof t);
    outputs w = {0};
    tw_status st = tw_comm_agree(comm, tw_scene_input_open(&in, &io, err), err);
    if (st) return st;
    int stride = o->stride > 0 ? o->stride : o->features ? S : S / 2 > 0 ? S / 2 : 1;
    st = tw_comm_agree(comm, tw_tiles_init(&t, in.grid.height, in.grid.width, S, stride, err), err);
    if (st) {
        tw_scene_input_close(&in);
        return st;
    }
    int W = in.grid.width;
    /* Features take the regular windows only (a raster of windows needs equal spacing). */
    int n_y = o->features ? (in.grid.height - S) / stride + 1 : t.n_y, n_x = o->features ? (W - S) / stride + 1 : t.n_x;
    int k = c->k, d = o->features ? TW_RESNET18_FEATS * c->m.n_nets : k, width = d + 1;
    const char *const *classes = k == TW_N_CLASSES43 ? tw_labels_names43 : tw_labels_names19;
    tw_grid out_grid = in.grid;
    if (o->features) window_grid(&out_grid, &in.grid, S, stride, n_y, n_x);
    if (rank == 0) st = outputs_open(&w, p, o, &out_grid, d, classes, stride, err);
    st = tw_comm_agree(comm, st, err);

    /* Window rows go in groups of g, enough windows to fill a batch on every rank (a narrow scene
     * would otherwise pad most of each batch); a rank scores a contiguous share of a group. */
    size_t strip = (size_t)S * W;
    int g_max = (int)(((int64_t)p->batch * world + n_x - 1) / n_x);
    if (g_max > n_y) g_max = n_y;
    float *planes = malloc(sizeof(float) * in.n_ch * strip * g_max + 1);
    float *rows = malloc(sizeof(float) * (size_t)g_max * n_x * width);
    uint8_t *bad = malloc(strip * g_max);
    int *ok_run = malloc(sizeof(int) * (size_t)(W + 1) * g_max);
    int *xs = malloc(sizeof(int) * (size_t)g_max * n_x), *qs = malloc(sizeof(int) * (size_t)g_max * n_x);
    const float **strips = malloc(sizeof(float *) * (size_t)g_max * n_x);
    float *vals = rank == 0 && !o->features ? malloc(sizeof(float) * (size_t)n_y * n_x * k) : NULL;
    uint8_t *valid = rank == 0 ? calloc((size_t)n_y * n_x, 1) : NULL;
    /* rank 0's output rows: at most a window of rows at once (rows_done - y0 <= stride <= S) */
    float *buf = rank == 0 ? malloc(sizeof(float) * (o->features ? (size_t)d * n_x : (size_t)k * strip)) : NULL;
    uint8_t *buf8 = rank == 0 ? malloc((size_t)k * strip) : NULL;
    TW_ASSERT(planes && rows && bad && ok_run && xs && qs && strips &&
              (rank || ((o->features || vals) && valid && buf && buf8)));
    tw_progress prog;
    if (rank == 0) tw_progress_init(&prog, "windows", (int64_t)n_y * n_x);
    int64_t n_scored = 0;
    for (int i0 = 0; i0 < n_y && st == TW_OK; i0 += g_max) {
        int g = n_y - i0 < g_max ? n_y - i0 : g_max;
        for (int r = 0; r < g && st == TW_OK; r++) {
            uint8_t *b = bad + r * strip;
            int *run = ok_run + (size_t)r * (W + 1);
            st = tw_scene_input_read(&in, planes + r * in.n_ch * strip, b, t.y0[i0 + r], S, err);
            /* run[x]: how many of the columns before x hold no nodata pixel in the strip */
            run[0] = 0;
            for (int x = 0; x < W; x++) {
                int col_ok = 1;
                for (int y = 0; y < S && col_ok; y++) col_ok = !b[(size_t)y * W + x];
                run[x + 1] = run[x] + col_ok;
            }
        }
        if ((st = tw_comm_agree(comm, st, err)) != TW_OK) break;
        int q_n = g * n_x, q_lo = (int)((int64_t)q_n * rank / world), q_hi = (int)((int64_t)q_n * (rank + 1) / world);
        int n = 0;
        for (int q = q_lo; q < q_hi; q++) {
            int r = q / n_x, x0 = t.x0[q % n_x];
            const int *run = ok_run + (size_t)r * (W + 1);
            if (run[x0 + S] - run[x0] != S) continue;
            strips[n] = planes + r * in.n_ch * strip;
            xs[n] = x0;
            qs[n++] = q;
        }
        memset(rows, 0, sizeof(float) * (size_t)q_n * width);
        score_windows(p, strips, W, xs, qs, n, o->features, rows, width);
        tw_comm_allreduce(comm, rows, (size_t)q_n * width, TW_F32, TW_REDUCE_SUM);
        for (int r = 0; rank == 0 && r < g && st == TW_OK; r++) {
            int i = i0 + r;
            const float *row = rows + (size_t)r * n_x * width;
            for (int j = 0; j < n_x; j++) {
                valid[(size_t)i * n_x + j] = row[(size_t)j * width + d] > 0.5f;
                n_scored += valid[(size_t)i * n_x + j];
                if (!o->features) memcpy(vals + ((size_t)i * n_x + j) * k, row + (size_t)j * width, sizeof(float) * k);
            }
            if (o->features) {   /* one output row: [d, 1, n_x], NaN where the window was skipped */
                for (int j = 0; j < n_x; j++)
                    for (int f = 0; f < d; f++)
                        buf[(size_t)f * n_x + j] = valid[(size_t)i * n_x + j] ? row[(size_t)j * width + f] : NAN;
                st = tw_raster_out_write(w.map, buf, i, 1, err);
            } else {
                st = write_rows(&w, &t, vals, valid, k, t.y0[i], tw_tiles_rows_done(&t, i), bad + r * strip,
                                o->threshold, buf, buf8, err);
            }
            tw_progress_add(&prog, n_x);
        }
        st = tw_comm_agree(comm, st, err);
    }
    if (rank == 0) {
        tw_progress_end(&prog);
        /* Closed in order; on a failure the files this call already moved into place go too. */
        tw_raster_out **files[3] = {&w.map, &w.top, &w.hot};
        const char *paths[3] = {o->out, o->top_label, o->multi_hot};
        int placed[3] = {0, 0, 0};
        for (int f = 0; f < 3 && st == TW_OK; f++) {
            if (!*files[f]) continue;
            st = tw_raster_out_close(*files[f], err);
            *files[f] = NULL;
            placed[f] = st == TW_OK;
        }
        if (st) {
            outputs_abort(&w);
            for (int f = 0; f < 3; f++)
                if (placed[f]) remove(paths[f]);
        }
        double secs = tw_progress_now() - t_start;
        if (st == TW_OK)
            tw_log("# %s: %dx%d pixels, %lld of %lld windows of %d scored (stride %d), %d %s; seconds=%.3f "
                   "(%.3f Mpx/s)\n", o->out, W, in.grid.height, (long long)n_scored, (long long)n_y * n_x, S, stride, d,
                   o->features ? "feature bands at the window grid" : "class probabilities", secs,
                   (double)W * in.grid.height / 1e6 / secs);
    }
    st = tw_comm_agree(comm, st, err);
    free(planes);
    free(rows);
    free(bad);
    free(ok_run);
    free(xs);
    free(qs);
    free(strips);
    free(vals);
    free(valid);
    free(buf);
    free(buf8);
    tw_tiles_free(&t);
    tw_scene_input_close(&in);
    return st;
}
