/* Scenes for the converter (convert.h): a manifest's rows (manifest.h) cut into patches of --size
 * every --stride pixels of the S2 10 m grid (S1's where a row has no S2). Every other raster of a
 * row (20/60 m bands, S1, the cloud mask or SCL, the label raster) is brought onto that grid with
 * GDAL's warper where it is not already on it (scene.h); S1 in linear power becomes dB; patches
 * with too much nodata or cloud are dropped; the labels are the classes present in the patch. */
#include "data/convert.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/labels.h"
#include "data/manifest.h"

#define MAX_CLASS_VALUE 65535

struct tw_scenes {
    tw_manifest m;
    int products;                    /* TW_PROD_S2 | TW_PROD_S1 of every row */
    int has_date;
    int has_labels;
    int16_t class19[MAX_CLASS_VALUE + 1];   /* label raster value -> 19-class index, -1 none */
    int16_t class43[MAX_CLASS_VALUE + 1];   /* ... -> 43-class index, -1 none */
    int has43;                       /* some class is given by a 43-class name */
};

/* A worker's open scenes: one row's rasters, each on the row's grid. */
typedef struct {
    int row;                         /* -1: none open */
    tw_grid grid;
    tw_scene *src[TW_S2_BANDS + TW_S1_BANDS + 2];   /* as opened */
    tw_scene *on[TW_S2_BANDS + TW_S1_BANDS + 2];    /* on the grid: src, or a warped VRT of it */
    int n;
    int s2_multi, s1_multi;
    double s2_nodata[TW_S2_BANDS];
    uint16_t *u16;                   /* scratch: [S, S], the mask's or the labels' window */
} cache;

enum { C_S2 = 0, C_S1 = TW_S2_BANDS, C_MASK = TW_S2_BANDS + TW_S1_BANDS, C_LABELS = C_MASK + 1 };

void tw_scenes_cache_free(void *p) {
    cache *c = p;
    if (!c) return;
    for (int i = 0; i < C_LABELS + 1; i++) {
        if (c->on[i] != c->src[i]) tw_scene_close(c->on[i]);
        tw_scene_close(c->src[i]);
    }
    free(c->u16);
    free(c);
}

static void cache_reset(cache *c) {
    for (int i = 0; i < C_LABELS + 1; i++) {
        if (c->on[i] != c->src[i]) tw_scene_close(c->on[i]);
        tw_scene_close(c->src[i]);
        c->on[i] = c->src[i] = NULL;
    }
    c->row = -1;
}

void tw_scenes_free(tw_scenes *s) {
    if (!s) return;
    tw_manifest_free(&s->m);
    free(s);
}

tw_shard_layout tw_scenes_layout(const tw_scenes *s, const tw_convert_opts *o) {
    int S = o->size ? o->size : TW_CONVERT_SIZE;
    return (tw_shard_layout){.h = S, .w = S, .n_times = s && s->has_date ? 1 : 0,
                             .products = s ? s->products : TW_PROD_S2, .has_labels = s && s->has_labels,
                             .has_georef = 1};
}

/* "value,class name" lines: the class a label raster value stands for (a BigEarthNet-19 name,
 * or one of the 43 CORINE names, which also gives its 19-class one). */
static tw_status read_classes(tw_scenes *s, const char *path, tw_err *err) {
    for (int v = 0; v <= MAX_CLASS_VALUE; v++) s->class19[v] = s->class43[v] = -1;
    FILE *f = fopen(path, "r");
    if (!f) return tw_err_set(err, TW_E_IO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    tw_status st = TW_OK;
    int n = 0;
    for (int lineno = 1; getline(&line, &cap, f) > 0 && !st; lineno++) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        char *comma = strchr(line, ','), *end;
        long v = comma ? strtol(line, &end, 10) : -1;
        if (!comma || end != comma || v < 0 || v > MAX_CLASS_VALUE) {
            st = tw_err_set(err, TW_E_FORMAT, "%s:%d: '%s', want VALUE,CLASS NAME with VALUE in 0..%d", path, lineno, line,
                            MAX_CLASS_VALUE);
            break;
        }
        const char *name = comma + 1;
        int c19 = tw_labels_find19(name), c43 = tw_labels_find43(name);
        if (c19 < 0 && c43 < 0) {
            st = tw_err_set(err, TW_E_UNKNOWN, "%s:%d: '%s' is neither a BigEarthNet-19 nor a CORINE (43) class name", path,
                            lineno, name);
            break;
        }
        s->class19[v] = (int16_t)(c19 >= 0 ? c19 : tw_labels_map43_to19(c43));
        s->class43[v] = (int16_t)c43;
        s->has43 |= c43 >= 0;
        n++;
    }
    free(line);
    fclose(f);
    if (!st && n == 0) st = tw_err_set(err, TW_E_MISSING, "%s: no classes", path);
    return st;
}

/* The reference file of a row: S2's B02 (or its multi-band file), else S1's VV. */
static const char *ref_file(const tw_manifest_row *r) {
    return r->has_s2 ? (r->s2_multi ? r->s2[0] : r->s2[1]) : r->s1[0];
}

/* Opens the grid of a row and checks what a listing can: the grid against --size, S1 against S2
 * (some overlap), the label raster's CRS. */
static tw_status row_grid(tw_grid *g, const tw_manifest_row *r, const tw_convert_opts *o, const char *mpath, tw_err *err) {
    tw_scene *sc = NULL, *s1 = NULL, *lab = NULL;
    tw_status st = tw_scene_open(&sc, ref_file(r), err);
    int S = o->size ? o->size : TW_CONVERT_SIZE;
    if (!st) {
        *g = *tw_scene_grid(sc);
        if (g->width < S || g->height < S)
            st = tw_err_set(err, TW_E_SHAPE, "%s: %dx%d pixels, smaller than --size %d", ref_file(r), g->width, g->height, S);
        else if (!g->crs_wkt[0])
            st = tw_err_set(err, TW_E_FORMAT, "%s: no CRS (a patch keeps its georeference)", ref_file(r));
    }
    if (!st && r->has_s2 && r->has_s1 && !(st = tw_scene_open(&s1, r->s1[0], err)) &&
        tw_grid_overlap(g, tw_scene_grid(s1)) <= 0)
        st = tw_err_set(err, TW_E_RANGE, "%s and %s: S1 and S2 do not overlap", r->s1[0], ref_file(r));
    if (!st && o->labels_raster && !(st = tw_scene_open(&lab, o->labels_raster, err))) {
        tw_grid lg = *tw_scene_grid(lab);
        memcpy(lg.transform, g->transform, sizeof lg.transform);
        lg.width = g->width;
        lg.height = g->height;
        if (!tw_grid_same(&lg, g))
            st = tw_err_set(err, TW_E_FORMAT, "%s: CRS (EPSG %d) differs from the scene's %s (EPSG %d)", o->labels_raster,
                            tw_scene_grid(lab)->epsg, ref_file(r), g->epsg);
        else if (tw_grid_overlap(g, tw_scene_grid(lab)) <= 0)
            st = tw_err_set(err, TW_E_RANGE, "%s: does not overlap the scene %s", o->labels_raster, ref_file(r));
    }
    if (st) tw_err_prefix(err, "%s:%d: ", mpath, r->line);
    tw_scene_close(lab);
    tw_scene_close(s1);
    tw_scene_close(sc);
    return st;
}

static int cmp_patch(const void *a, const void *b) {
    const tw_patch *x = a, *y = b;
    if (x->split != y->split) return x->split - y->split;
    if (x->row != y->row) return x->row - y->row;
    if (x->y0 != y->y0) return x->y0 - y->y0;
    return x->x0 - y->x0;
}

tw_status tw_scenes_list(tw_scenes **out, tw_patch_list *list, tw_convert_summary *sum, const tw_convert_opts *o,
                         tw_err *err) {
    *out = NULL;
    if (!o->manifest) return tw_err_set(err, TW_E_USAGE, "scenes layout: --manifest FILE is required");
    if (!!o->labels_raster != !!o->label_classes)
        return tw_err_set(err, TW_E_USAGE, "--labels-raster and --label-classes go together");
    int S = o->size ? o->size : TW_CONVERT_SIZE, stride = o->stride ? o->stride : S;
    tw_scenes *s = calloc(1, sizeof *s);
    if (!s) return tw_err_set(err, TW_E_NOMEM, "scenes");
    tw_status st = tw_manifest_read(&s->m, o->manifest, !o->stop_on_error, o->rank != 0, err);
    if (st) {
        free(s);
        return st;
    }
    sum->skipped[TW_SKIP_ROW] += s->m.n_bad;
    s->has_date = s->m.has_date;
    s->has_labels = o->labels_raster != NULL;
    if (s->has_labels && (st = read_classes(s, o->label_classes, err))) goto done;
    for (int i = 0; i < s->m.n_rows && !st; i++) {
        const tw_manifest_row *r = &s->m.rows[i];
        int prods = (r->has_s2 ? TW_PROD_S2 : 0) | (r->has_s1 ? TW_PROD_S1 : 0);
        tw_err rerr = {0};
        tw_grid g;
        tw_status rs = TW_OK;
        if (!s->products) s->products = prods;
        static const char *const kinds[4] = {"", "S2 only", "S1 only", "S2 and S1"};   /* by TW_PROD_S2 | S1 bits */
        if (prods != s->products)
            rs = tw_err_set(&rerr, TW_E_FORMAT, "%s:%d: %s, but the first row has %s (one conversion, one product set)",
                            o->manifest, r->line, kinds[prods], kinds[s->products]);
        else rs = row_grid(&g, r, o, o->manifest, &rerr);
        if (rs) {
            sum->skipped[TW_SKIP_ROW]++;
            if (o->stop_on_error) {
                st = rs;
                if (err) *err = rerr;
                break;
            }
            tw_convert_warn(o, "twinfuse convert: skipped scene: %s\n", rerr.msg);
            continue;
        }
        const char *split = r->split[0] ? r->split : o->split ? o->split : "train";
        int split_id = tw_convert_split_id(sum, split);
        if (split_id < 0) {
            st = tw_err_set(err, TW_E_RANGE, "%s:%d: split name '%s': too long or too many splits", o->manifest, r->line,
                            split);
            break;
        }
        for (int y = 0; y + S <= g.height && !st; y += stride)
            for (int x = 0; x + S <= g.width && !st; x += stride) {
                char name[TW_SHARD_NAME_BYTES];
                snprintf(name, sizeof name, "%s_%05d_%05d", r->name, y, x);
                tw_patch p = {.s2 = name, .s1 = name, .split = split_id, .row = i, .x0 = x, .y0 = y};
                st = tw_patch_list_add(list, &p, err);
            }
    }
done:
    /* Shards are runs of one split: (split, row, y, x), the manifest's order within a split. */
    if (!st && list->n) qsort(list->p, (size_t)list->n, sizeof *list->p, cmp_patch);
    if (st) tw_scenes_free(s);
    else *out = s;
    return st;
}

/* Opens row r's rasters onto its grid: as they are where they are on it, else warped (bilinear
 * for images, nearest for the mask, SCL and labels). */
static tw_status cache_open(cache *c, const tw_scenes *s, const tw_convert_opts *o, int row, tw_err *err) {
    cache_reset(c);
    const tw_manifest_row *r = &s->m.rows[row];
    tw_scene *ref;
    tw_status st = tw_scene_open(&ref, ref_file(r), err);
    if (st) return st;
    c->grid = *tw_scene_grid(ref);
    tw_scene_close(ref);
    c->s2_multi = r->s2_multi;
    c->s1_multi = r->s1_multi;
    const char *files[C_LABELS + 1] = {0};
    for (int b = 0; r->has_s2 && b < (r->s2_multi ? 1 : TW_S2_BANDS); b++) files[C_S2 + b] = r->s2[b];
    for (int b = 0; r->has_s1 && b < (r->s1_multi ? 1 : TW_S1_BANDS); b++) files[C_S1 + b] = r->s1[b];
    files[C_MASK] = r->mask ? r->mask : r->scl;
    files[C_LABELS] = o->labels_raster;
    for (int i = 0; i <= C_LABELS && !st; i++) {
        if (!files[i]) continue;
        if ((st = tw_scene_open(&c->src[i], files[i], err))) break;
        int want = i < C_S1 ? (r->s2_multi ? TW_S2_BANDS : 1) : i < C_MASK ? (r->s1_multi ? TW_S1_BANDS : 1) : 1;
        if (tw_scene_n_bands(c->src[i]) != want) {
            st = tw_err_set(err, TW_E_SHAPE, "%s: %d bands, want %d", files[i], tw_scene_n_bands(c->src[i]), want);
            break;
        }
        if (tw_grid_same(tw_scene_grid(c->src[i]), &c->grid)) {
            c->on[i] = c->src[i];
        } else {
            int img = i < C_MASK;
            st = tw_scene_warp(&c->on[i], c->src[i], &c->grid, img ? TW_RESAMPLE_BILINEAR : TW_RESAMPLE_NEAREST,
                               i >= C_S1 && i < C_MASK ? NAN : 0, err);
        }
    }
    for (int b = 0; !st && r->has_s2 && b < TW_S2_BANDS; b++) {
        tw_scene *sc = c->on[C_S2 + (r->s2_multi ? 0 : b)];
        tw_scene_nodata(sc, r->s2_multi ? b + 1 : 1, &c->s2_nodata[b]);
    }
    if (st) {
        tw_err_prefix(err, "%s:%d: ", s->m.path, r->line);
        cache_reset(c);
    } else {
        c->row = row;
    }
    return st;
}

/* Reads the bands of one product's window into out [n, S, S] (as `type`). */
static tw_status read_product(cache *c, int first, int multi, int n, void *out, const char *type, size_t el,
                              const tw_patch *p, int S, tw_err *err) {
    if (multi) return tw_scene_read(c->on[first], out, type, NULL, n, p->x0, p->y0, S, S, err);
    for (int b = 0; b < n; b++) {
        tw_status st = tw_scene_read(c->on[first + b], (char *)out + (size_t)b * S * S * el, type, NULL, 1, p->x0, p->y0, S,
                                     S, err);
        if (st) return st;
    }
    return TW_OK;
}

tw_skip tw_scenes_read(tw_convert_buf *b, const tw_convert_opts *o, const tw_scenes *s, const tw_patch *p, tw_err *err) {
    int S = o->size ? o->size : TW_CONVERT_SIZE;
    size_t n_px = (size_t)S * S;
    cache *c = b->cache;
    if (!c && (c = b->cache = calloc(1, sizeof *c))) {
        c->row = -1;
        c->u16 = malloc(n_px * sizeof *c->u16);
    }
    if (!c || !c->u16) {
        tw_err_set(err, TW_E_NOMEM, "scene cache");
        return TW_SKIP_ROW;
    }
    if (c->row != p->row && cache_open(c, s, o, p->row, err)) return TW_SKIP_ROW;
    const tw_manifest_row *r = &s->m.rows[p->row];
    memset(b->dates, 0, sizeof b->dates);
    memset(b->l19, 0, sizeof b->l19);
    memset(b->l43, 0, sizeof b->l43);
    b->n_times = 1;
    b->dates[0][0] = b->dates[1][0] = r->date;
    b->flags = 0;
    b->has_labels43 = s->has43;
    tw_grid_window(&b->grid, &c->grid, p->x0, p->y0, S, S);
    tw_status st = TW_OK;
    if (r->has_s2) st = read_product(c, C_S2, c->s2_multi, TW_S2_BANDS, b->s2, "UInt16", 2, p, S, err);
    if (!st && r->has_s1) st = read_product(c, C_S1, c->s1_multi, TW_S1_BANDS, b->s1, "Float32", 4, p, S, err);
    if (st) {
        tw_err_prefix(err, "%s:%d: ", s->m.path, r->line);
        return TW_SKIP_RASTER;
    }
    /* Nodata: an S2 pixel whose 12 bands all hold their nodata value (0 unless declared), an S1
     * value that is NaN (not covered), its declared nodata, or not positive in linear power. */
    double s1_nd[TW_S1_BANDS] = {NAN, NAN};
    for (int k = 0; r->has_s1 && k < TW_S1_BANDS; k++)
        if (!tw_scene_nodata(c->on[C_S1 + (c->s1_multi ? 0 : k)], c->s1_multi ? k + 1 : 1, &s1_nd[k])) s1_nd[k] = NAN;
    size_t n_bad = 0;
    double s1_sum[TW_S1_BANDS] = {0, 0};
    size_t s1_n[TW_S1_BANDS] = {0, 0};
    for (size_t i = 0; i < n_px; i++) {
        int bad = 0;
        if (r->has_s2) {
            int all = 1;
            for (int k = 0; k < TW_S2_BANDS && all; k++) all = b->s2[k * n_px + i] == c->s2_nodata[k];
            bad = all;
        }
        for (int k = 0; r->has_s1 && k < TW_S1_BANDS; k++) {
            float *v = &b->s1[k * n_px + i];
            if (isfinite(*v) && *v != s1_nd[k] && r->s1_linear) *v = *v > 0 ? 10.0f * log10f(*v) : NAN;
            if (!isfinite(*v) || *v == s1_nd[k]) {
                *v = NAN;
                bad = 1;
            } else {
                s1_sum[k] += *v;
                s1_n[k]++;
            }
        }
        n_bad += bad;
    }
    if ((double)n_bad > o->max_nodata * (double)n_px) {
        tw_err_set(err, TW_E_RANGE, "%s:%d: patch %s: %.1f %% nodata", s->m.path, r->line, p->s2, 100.0 * n_bad / n_px);
        return TW_SKIP_NODATA;
    }
    /* The nodata a patch may keep: S1 holes get the patch's band mean (a shard holds no NaN). */
    for (int k = 0; r->has_s1 && n_bad && k < TW_S1_BANDS; k++)
        for (size_t i = 0; i < n_px; i++)
            if (isnan(b->s1[k * n_px + i])) b->s1[k * n_px + i] = s1_n[k] ? (float)(s1_sum[k] / (double)s1_n[k]) : 0.0f;
    if (c->on[C_MASK]) {
        if (tw_scene_read(c->on[C_MASK], c->u16, "UInt16", NULL, 1, p->x0, p->y0, S, S, err)) {
            tw_err_prefix(err, "%s:%d: ", s->m.path, r->line);
            return TW_SKIP_RASTER;
        }
        size_t n_cloud = 0;
        for (size_t i = 0; i < n_px; i++) {
            unsigned v = c->u16[i];
            /* SCL: 3 cloud shadow, 8 cloud medium probability, 9 high, 10 thin cirrus (ESA L2A). */
            n_cloud += r->scl ? (v == 3 || v == 8 || v == 9 || v == 10) : v != 0;
        }
        if (n_cloud) b->flags |= TW_FLAG_CLOUD;
        if ((double)n_cloud > o->max_cloud * (double)n_px) {
            tw_err_set(err, TW_E_RANGE, "%s:%d: patch %s: %.1f %% cloud", s->m.path, r->line, p->s2, 100.0 * n_cloud / n_px);
            return TW_SKIP_CLOUD;
        }
    }
    if (s->has_labels) {
        if (tw_scene_read(c->on[C_LABELS], c->u16, "UInt16", NULL, 1, p->x0, p->y0, S, S, err)) {
            tw_err_prefix(err, "%s:%d: ", s->m.path, r->line);
            return TW_SKIP_RASTER;
        }
        size_t count19[TW_N_CLASSES] = {0}, count43[TW_N_CLASSES43] = {0}, any = 0;
        for (size_t i = 0; i < n_px; i++) {
            int c19 = s->class19[c->u16[i]], c43 = s->class43[c->u16[i]];
            if (c19 >= 0) count19[c19]++;
            if (c43 >= 0) count43[c43]++;
            any += c19 >= 0;
        }
        for (int k = 0; k < TW_N_CLASSES; k++) b->l19[k] = count19[k] > 0 && count19[k] > o->label_min_fraction * n_px;
        for (int k = 0; k < TW_N_CLASSES43; k++) b->l43[k] = count43[k] > 0 && count43[k] > o->label_min_fraction * n_px;
        if (!any) {
            tw_err_set(err, TW_E_MISSING, "%s: patch %s (%s:%d): no pixel of a listed class", o->labels_raster, p->s2,
                       s->m.path, r->line);
            return TW_SKIP_LABEL;
        }
    }
    return TW_SKIP_N;
}
