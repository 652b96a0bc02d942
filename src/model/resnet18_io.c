/* Moving a ResNet18 backbone between safetensors files under different name prefixes (twinfuse
 * checkpoints keep it under e.g. "backbone.", torchvision under none), validated on the way
 * through the parameter arena: every tensor present, with its shape and dtype. The commands
 * `twinfuse export` and `twinfuse import` (src/cli) are this with their own settings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/resnet18_io.h"

tw_status tw_resnet18_file_channels(int *c_in, const tw_st_file *f, const char *prefix, tw_err *err) {
    char name[TW_PARAM_NAME_MAX + TW_RESNET18_MAX_PREFIX];
    snprintf(name, sizeof name, "%sconv1.weight", prefix);
    const tw_st_tensor *t = tw_st_find(f, name);
    if (!t)
        return tw_err_set(err, TW_E_MISSING, "%s: no tensor '%s': not a ResNet18 under prefix '%s'",
                          f->path, name, prefix);
    if (t->ndim != 4 || t->shape[0] != 64 || t->shape[2] != 7 || t->shape[3] != 7 ||
        t->shape[1] < 1 || t->shape[1] > 1024)
        return tw_err_set(err, TW_E_SHAPE, "%s: tensor '%s' is not a [64, C, 7, 7] stem", f->path, name);
    *c_in = (int)t->shape[1];
    return TW_OK;
}

tw_status tw_resnet18_convert(const char *dst, const char *src, const tw_resnet18_convert_opts *o,
                              tw_err *err) {
    tw_status st;
    tw_st_file *f = NULL;
    tw_backend *be = NULL;
    tw_st_writer *w = NULL;
    void *host = NULL;
    tw_params P;
    tw_params_init(&P, NULL);
    int c_in = 0;
    if ((st = tw_st_open(&f, src, err)) != TW_OK) goto done;
    if ((st = tw_resnet18_file_channels(&c_in, f, o->src_prefix, err)) != TW_OK) goto done;
    if ((st = tw_backend_create(&be, TW_DEVICE_CPU, TW_PREC_FP32, 0, err)) != TW_OK) goto done;
    tw_params_init(&P, be);
    tw_resnet18 m;
    if ((st = tw_resnet18_init(&m, &P, o->src_prefix, c_in, err)) != TW_OK) goto done;
    tw_params_alloc(&P, 0);
    tw_params_load_opts lo = {o->src_prefix, o->src_prefix, o->ignore_prefix, o->allow_extra};
    if ((st = tw_params_load(&P, f, &lo, err)) != TW_OK) goto done;
    w = tw_st_writer_init();
    tw_params_save(&P, w, o->src_prefix, o->dst_prefix, &host);
    if (o->format) tw_st_writer_meta(w, "format", o->format);
    tw_st_writer_meta(w, "source", src);
    const char *step = tw_st_meta_get(f, "step");
    if (step) tw_st_writer_meta(w, "step", step);
    st = tw_st_writer_save(w, dst, err);
done:
    tw_st_writer_free(w);
    free(host);
    tw_params_free(&P);
    tw_backend_free(be);
    tw_st_close(f);
    return st;
}
