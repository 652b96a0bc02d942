/* ResNet18 as torchvision builds it (torchvision/models/resnet.py), without fc: conv1 7x7/2, bn1,
 * relu, maxpool 3x3/2, layer1..4 of two BasicBlocks each (downsample conv1x1/2 + bn in layer2.0,
 * 3.0, 4.0), global average pool -> [n, 512] f32 features. Any input channel count, size >= 32 and
 * batch. Built only from the op interface (backend/backend.h).
 *
 * Three separate objects, so that Barlow Twins can push two views through one set of parameters:
 *   tw_resnet18        the parameters (registered in a shared tw_params arena, torchvision names)
 *   tw_resnet18_plans  the backend plans for one (batch, C, H, W), made once
 *   tw_resnet18_acts   one activation set: every forward tensor, what backward needs, and the
 *                      activation gradients; one allocation, made once per view
 * A step allocates nothing. */
#ifndef TW_RESNET18_H
#define TW_RESNET18_H

#include <stdint.h>

#include "backend/backend.h"
#include "core/grad_ready.h"
#include "core/reducer.h"
#include "model/params.h"
#include "model/syncbn.h"

#define TW_RESNET18_FEATS 512
#define TW_RESNET18_UNITS 20    /* conv+BN pairs: stem, 8 blocks x 2, 3 downsamples */
#define TW_RESNET18_BLOCKS 8
#define TW_RESNET18_MAX_PREFIX 64

/* One convolution and the batch norm after it, with their entries in the arena. */
typedef struct tw_resnet18_unit {
    int c_in, c_out, kernel, stride, pad;
    int relu;                 /* BN fused with ReLU (bn1 of the stem and of each block) */
    int w;                    /* [c_out, c_in, k, k] */
    int gamma, beta;          /* [c_out] trained */
    int run_mean, run_var;    /* [c_out] buffers */
    int n_tracked;            /* num_batches_tracked counter */
} tw_resnet18_unit;

typedef struct tw_resnet18_block {
    int conv1, conv2, down;   /* unit indices; down = -1 for the identity shortcut */
} tw_resnet18_block;

typedef struct tw_resnet18 {
    tw_params *P;
    char prefix[TW_RESNET18_MAX_PREFIX];   /* e.g. "backbone." before torchvision's names */
    int c_in;
    tw_resnet18_unit u[TW_RESNET18_UNITS];   /* registration order = torchvision's order */
    tw_resnet18_block b[TW_RESNET18_BLOCKS];
    size_t grad_begin, grad_end;   /* the backbone's range in P->params / P->grads (elements) */
} tw_resnet18;

/* Registers the backbone's tensors in P (before tw_params_alloc) under prefix + torchvision name.
 * c_in: input channels (S1: 2, S2: 12 or 3). */
tw_status tw_resnet18_init(tw_resnet18 *m, tw_params *P, const char *prefix, int c_in, tw_err *err);
/* After tw_params_alloc: torchvision's init from a seed (Philox stream per tensor): convolutions
 * kaiming_normal_(mode="fan_out", nonlinearity="relu"), BN weight 1 and bias 0, running mean 0,
 * running var 1, num_batches_tracked 0. */
void tw_resnet18_init_weights(tw_resnet18 *m, uint64_t seed);

/* The stages backward reports final in turn: stem, layer1..4, avgpool. */
enum { TW_RESNET18_STAGES = 6 };

/* Synchronised BN for every unit (model.backbone_bn: sync, as the official Barlow Twins code
 * converts the backbone's BN too): the training forward's statistics over the batch of every
 * rank the reducer sums over. */
typedef struct tw_resnet18_sync {
    tw_reducer red;
    tw_syncbn bn[TW_RESNET18_UNITS];
} tw_resnet18_sync;

typedef struct tw_resnet18_plans {
    tw_backend *be;
    int n, c, h, w;
    tw_tensor x_stem;                 /* the stem conv's input: act dtype, STEM layout (data NULL) */
    tw_conv_plan *conv[TW_RESNET18_UNITS];
    tw_bn_plan *bn[TW_RESNET18_UNITS];
    tw_pool_plan *pool;
    tw_tensor conv_y[TW_RESNET18_UNITS];   /* output descriptions (data NULL) */
    tw_resnet18_block b[TW_RESNET18_BLOCKS];   /* the model's block structure */
    float *grad_scratch;              /* backbone-sized, for backward with accumulate */
    tw_resnet18_sync *sync;           /* NULL: per-rank BN statistics (tw_resnet18_plans_sync) */
} tw_resnet18_plans;

/* Makes every plan for a batch of n images of m->c_in x h x w (h, w >= 32). */
/* Every layer after the stem at input [n, c_in, h, w]: what the backend times to choose the
 * network's activation layout (tw_conv_desc.net on the stem's plan). */
void tw_resnet18_net_shape(const tw_resnet18 *m, int n, int h, int w, tw_net_shape *net);
tw_status tw_resnet18_plans_make(tw_resnet18_plans **out, tw_backend *be, const tw_resnet18 *m,
                                 int n, int h, int w, tw_err *err);
void tw_resnet18_plans_free(tw_resnet18_plans *p);
/* From now on p's training forwards and their backwards take every BN's statistics over all of
 * red's ranks (each rank's batch of p->n images), as torch.nn.SyncBatchNorm (the running
 * statistics and num_batches_tracked move in the forward, as a per-rank BN's). Every rank must
 * run the same forwards and backwards in the same order (each BN is a collective). bad: the owner's backend flag the BNs raise on
 * statistics that are not finite (syncbn.h). */
void tw_resnet18_plans_sync(tw_resnet18_plans *p, tw_resnet18 *m, const tw_reducer *red, int *bad);

typedef struct tw_resnet18_acts {
    void *arena;
    size_t n_bytes;
    tw_tensor x;                              /* the input in the stem's layout and dtype */
    tw_tensor conv_y[TW_RESNET18_UNITS];      /* conv outputs (BN inputs) */
    tw_tensor bn_y[TW_RESNET18_UNITS];        /* BN(+ReLU) outputs; bn2's feeds the add */
    float *save_mean[TW_RESNET18_UNITS], *save_var[TW_RESNET18_UNITS];   /* [c_out] */
    void *bn_ws[TW_RESNET18_UNITS];
    tw_tensor pool_y;
    void *pool_ws;
    tw_tensor block_y[TW_RESNET18_BLOCKS];    /* relu(bn2 + shortcut) */
    float *feats;                             /* [n, 512] f32 */
    int bn_train;                             /* the last forward's BN mode (for backward) */
    int eval_only;                            /* made by tw_resnet18_acts_make_eval */
    /* activation gradients */
    tw_tensor d_conv_y[TW_RESNET18_UNITS], d_bn_y[TW_RESNET18_UNITS];
    tw_tensor d_block_y[TW_RESNET18_BLOCKS];
    tw_tensor d_main[TW_RESNET18_BLOCKS], d_down[TW_RESNET18_BLOCKS];   /* the two input gradients */
    tw_tensor d_pool_y;
} tw_resnet18_acts;

/* One activation set for plans p (one allocation). */
void tw_resnet18_acts_make(tw_resnet18_acts *a, const tw_resnet18_plans *p);
/* One for eval forwards only (frozen backbones, evaluation, embedding): the forward's tensors
 * without the train forward's state and the gradients (under half the memory); train
 * forwards and backward on it are bugs (TW_ASSERT). */
void tw_resnet18_acts_make_eval(tw_resnet18_acts *a, const tw_resnet18_plans *p);
void tw_resnet18_acts_free(tw_resnet18_acts *a, tw_backend *be);

/* a->feats = resnet18(x). x: [n, c, h, w] plain NCHW f32 in backend memory (copied into a->x).
 * train: batch statistics, running statistics and num_batches_tracked updated (as torch's
 * train() mode); otherwise running statistics (eval():
 * nothing in m changes, and no backward state is written but the activations themselves). */
void tw_resnet18_forward(tw_resnet18_acts *a, const float *x, tw_resnet18 *m,
                         tw_resnet18_plans *p, int train);
/* Weight gradients of the backbone from dfeats [n, 512] f32 (backend memory), after a forward
 * on the same a. After a train forward this is torch's train() backward; after an eval forward
 * it is the backward of the network with BN in inference mode (statistics fixed at the running
 * ones: a fine-tuned backbone with frozen BN, tw_bn_backward_eval). accumulate = 0: the backbone's gradients in m->P->grads are overwritten
 * (=); accumulate = 1: added to what is there (+=), e.g. the second Barlow Twins view. The stem's
 * input gets no gradient. ready (NULL: none) hears after every block, so that pending reductions
 * progress (tw_grad_ready), with the offset of the backbone's end: the caller guarantees that
 * everything after the backbone in the arena is final by then. last = 1 for the call that makes
 * the backbone's gradients final (the last view or BN group): ready then also hears of each
 * stage's range as soon as it is final, layer4 first. */
void tw_resnet18_backward(tw_resnet18 *m, tw_resnet18_acts *a, const float *dfeats,
                          tw_resnet18_plans *p, int accumulate, const tw_grad_ready *ready, int last);

#endif
