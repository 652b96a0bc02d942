/* Initialising a fine-tuning backbone from a file (resnet18_io.h): a torchvision state_dict or a
 * pre-training checkpoint's backbone, read through a temporary arena so that tw_params_load's
 * checks apply, then copied into the model's arena; a 3-channel ImageNet stem is adapted to the
 * model's channel count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "model/resnet18_io.h"

/* The stem from RGB: a channel that is an RGB band takes that band's filter (torchvision's
 * input is R, G, B = Sentinel-2 B04, B03, B02); every other channel (the other S2 bands, VV,
 * VH) takes the mean of the three, the filter's response to brightness, which assumes nothing
 * about how the band relates to any one colour. The whole filter is then scaled by 3 / c_in, as
 * timm's adapt_input_conv does: with inputs normalised per band (equal statistics), a sum over
 * c_in channels of filters the size of one RGB filter is c_in / 3 times the RGB sum, so the
 * scaling keeps the pre-activation scale that the pre-trained bn1 expects. */
void tw_resnet18_adapt_rgb_stem(float *dst, const float *src, int c_in,
                                const char *const *channel_names) {
    static const char *const rgb[3] = {"B04", "B03", "B02"};
    const size_t kk = 49;
    float scale = 3.0f / (float)c_in;
    for (int o = 0; o < 64; o++) {
        const float *s = src + (size_t)o * 3 * kk;
        for (int j = 0; j < c_in; j++) {
            int from = -1;
            for (int c = 0; c < 3 && channel_names && channel_names[j]; c++)
                if (!strcmp(channel_names[j], rgb[c])) from = c;
            float *d = dst + ((size_t)o * c_in + j) * kk;
            for (size_t q = 0; q < kk; q++) {
                float v = from >= 0 ? s[from * kk + q] : (s[q] + s[kk + q] + s[2 * kk + q]) / 3.0f;
                d[q] = scale * v;
            }
        }
    }
}

/* dst entry = src entry (same shape) in backend memory, or the counter. */
static void copy_entry(tw_params *dst, int d, const tw_params *src, int s) {
    const tw_param_entry *e = &dst->entries[d];
    TW_ASSERT(e->n_elems == src->entries[s].n_elems && e->kind == src->entries[s].kind);
    if (e->kind == TW_PARAM_COUNTER) {
        *tw_params_counter(dst, d) = *tw_params_counter(src, s);
        return;
    }
    tw_mem_copy(dst->be, tw_params_ptr(dst, d), tw_params_ptr(src, s), e->n_elems * sizeof(float));
}

tw_status tw_resnet18_load_backbone(tw_resnet18 *m, const char *path, const char *file_prefix,
                                    const char *const *channel_names, tw_err *err) {
    tw_params *P = m->P;
    TW_ASSERT(P->params);
    tw_st_file *f = NULL;
    tw_params T;
    tw_params_init(&T, P->be);
    float *h_src = NULL, *h_dst = NULL;
    int c_file = 0;
    tw_status st;
    if ((st = tw_st_open(&f, path, err)) != TW_OK) goto done;
    if ((st = tw_resnet18_file_channels(&c_file, f, file_prefix, err)) != TW_OK) goto done;
    if (c_file != m->c_in && c_file != 3) {
        char name[TW_PARAM_NAME_MAX + TW_RESNET18_MAX_PREFIX];
        snprintf(name, sizeof name, "%sconv1.weight", file_prefix);
        st = tw_err_set(err, TW_E_SHAPE, "%s: tensor '%s' has %d input channels and the model %d: "
                        "only a 3-channel (RGB) stem is adapted", path, name, c_file, m->c_in);
        goto done;
    }
    tw_resnet18 t;
    if ((st = tw_resnet18_init(&t, &T, m->prefix, c_file, err)) != TW_OK) goto done;
    tw_params_alloc(&T, 0);
    char ignore[TW_PARAM_NAME_MAX + TW_RESNET18_MAX_PREFIX];
    snprintf(ignore, sizeof ignore, "%sfc.", file_prefix);
    tw_params_load_opts lo = {file_prefix, m->prefix, ignore, 1};
    if ((st = tw_params_load(&T, f, &lo, err)) != TW_OK) goto done;
    for (int u = 0; u < TW_RESNET18_UNITS; u++) {
        const tw_resnet18_unit *a = &m->u[u], *b = &t.u[u];
        if (u > 0 || c_file == m->c_in) copy_entry(P, a->w, &T, b->w);
        copy_entry(P, a->gamma, &T, b->gamma);
        copy_entry(P, a->beta, &T, b->beta);
        copy_entry(P, a->run_mean, &T, b->run_mean);
        copy_entry(P, a->run_var, &T, b->run_var);
        copy_entry(P, a->n_tracked, &T, b->n_tracked);
    }
    if (c_file != m->c_in) {
        size_t n_src = (size_t)64 * 3 * 49, n_dst = (size_t)64 * m->c_in * 49;
        h_src = malloc(n_src * sizeof(float));
        h_dst = malloc(n_dst * sizeof(float));
        TW_ASSERT(h_src && h_dst);
        tw_mem_to_host(P->be, h_src, tw_params_ptr(&T, t.u[0].w), n_src * sizeof(float));
        tw_resnet18_adapt_rgb_stem(h_dst, h_src, m->c_in, channel_names);
        tw_mem_from_host(P->be, tw_params_ptr(P, m->u[0].w), h_dst, n_dst * sizeof(float));
    }
done:
    free(h_src);
    free(h_dst);
    tw_params_free(&T);
    tw_st_close(f);
    return st;
}
