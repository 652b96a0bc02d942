/* A ResNet18 backbone from one safetensors file into another under other names: the checks of
 * tw_params_load on the way (every tensor present with its shape and dtype), the stem's channel
 * count taken from the file. Used by `twinfuse export` and `twinfuse import`. */
#ifndef TW_RESNET18_IO_H
#define TW_RESNET18_IO_H

#include "core/safetensors.h"
#include "model/resnet18.h"

/* The input channel count of the ResNet18 stored under prefix in f ("<prefix>conv1.weight"). */
tw_status tw_resnet18_file_channels(int *c_in, const tw_st_file *f, const char *prefix, tw_err *err);

typedef struct tw_resnet18_convert_opts {
    const char *src_prefix;     /* the backbone's names in src start with this ("" for torchvision) */
    const char *dst_prefix;     /* and in dst with this */
    const char *ignore_prefix;  /* src tensors to skip (e.g. "fc."), NULL: none */
    int allow_extra;            /* 1: src tensors outside src_prefix (projector, optimizer) are left */
    const char *format;         /* dst's "format" metadata, NULL: none */
} tw_resnet18_convert_opts;

/* Writes dst (atomically) with the backbone of src renamed; "source" and (if src has it) "step"
 * go into dst's metadata. Errors name the file and the tensor. */
tw_status tw_resnet18_convert(const char *dst, const char *src, const tw_resnet18_convert_opts *o,
                              tw_err *err);

/* Initialises backbone m (already registered and allocated) from the ResNet18 stored under
 * file_prefix in the safetensors file at path: "" for a torchvision state_dict (its "fc." is
 * skipped), "backbone." for a twinfuse pre-training checkpoint (other tensors are left). Every
 * tensor must be there with its shape, except that a 3-channel (RGB) stem is adapted to
 * m->c_in channels (resnet18_load.c): channel_names[j] names model channel j ("B04", "VV", ...;
 * NULL: none is an RGB band). Errors name the file and the tensor. */
tw_status tw_resnet18_load_backbone(tw_resnet18 *m, const char *path, const char *file_prefix,
                                    const char *const *channel_names, tw_err *err);
/* The stem adaptation on host filters: dst [64, c_in, 7, 7] from src [64, 3, 7, 7] (R, G, B). */
void tw_resnet18_adapt_rgb_stem(float *dst, const float *src, int c_in,
                                const char *const *channel_names);

#endif
