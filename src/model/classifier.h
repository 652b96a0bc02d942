/* The multi-label classifier of fine-tuning: one ResNet18 on one source (S1 or S2), one ResNet18 on
 * both sources stacked (early fusion), or one per source with a head over both pooled features
 * (feature fusion), then logits [n, k]. Built on resnet18.h and the op interface only;
 * parameters live in the shared tw_params arena under the names torch would give them. The loss
 * (tw_bce_logits) and the optimizer are the caller's; a step allocates nothing.
 *
 * Arena names (k = n_classes, h = mlp_hidden):
 *   single source, early fusion: "backbone." + torchvision ResNet18, "head.weight" [k, 512],
 *                                "head.bias" [k]
 *   feature fusion:              "s1." and "s2." ResNet18s, then the head:
 *     LINEAR (concat-linear)     "head.weight" [k, 1024], "head.bias"
 *     CONCAT_MLP                 "head.0.weight" [h, 1024], "head.0.bias", "head.2.weight" [k, h],
 *                                "head.2.bias" (nn.Sequential(Linear, ReLU, Linear))
 *     GATED                      "head.gate.weight" [512, 1024], "head.gate.bias",
 *                                "head.fc.weight" [k, 512], "head.fc.bias"
 * Early fusion stacks each sample's channels as [S2 bands..., VV, VH]; feature fusion
 * concatenates [f1, f2] = [S1 features, S2 features].
 *
 * The models (shapes per sample; k classes; "ResNet18" ends with the global average pool):
 *
 *   single source (NONE)
 *     x_s2 [c2, H, W] or x_s1 [2, H, W] --> ResNet18 "backbone." --> f [512]
 *                                           --> Linear "head" (512 -> k) --> logits [k]
 *
 *   early fusion (EARLY)
 *     x_s2 [c2, H, W] --+
 *                       +--> stack [c2 + 2, H, W] --> ResNet18 "backbone." --> f [512]
 *     x_s1 [2, H, W] ---+                             --> Linear "head" (512 -> k) --> logits [k]
 *
 *   feature fusion (FEATURE)
 *     x_s1 [2, H, W]  --> ResNet18 "s1." --> f1 [512] --+
 *                                                       +--> [f1, f2] [1024] --> head --> logits
 *     x_s2 [c2, H, W] --> ResNet18 "s2." --> f2 [512] --+
 *   heads on [f1, f2]:
 *     LINEAR      Linear "head" (1024 -> k)
 *     CONCAT_MLP  Linear "head.0" (1024 -> h) --> ReLU --> Linear "head.2" (h -> k)
 *     GATED       g = sigmoid(Linear "head.gate" (1024 -> 512))         g [512], in (0, 1)
 *                 f = g * f1 + (1 - g) * f2  (element-wise)             f [512]
 *                 Linear "head.fc" (512 -> k) on f
 *
 *   loss = BCEWithLogits(logits, targets), mean over n k (tw_bce_logits, the caller's).
 *   frozen: the ResNet18s run in eval mode and get no gradient; bn_frozen: they train, with BN in
 *   inference mode (running statistics, tw_bn_backward_eval); bn_groups g: each ResNet18 runs on
 *   g equal slices of the batch, so BN sees the statistics g ranks would. */
#ifndef TW_CLASSIFIER_H
#define TW_CLASSIFIER_H

#include <stdint.h>

#include "backend/backend.h"
#include "model/params.h"
#include "model/resnet18.h"

typedef enum { TW_FUSION_NONE, TW_FUSION_EARLY, TW_FUSION_FEATURE } tw_fusion;
/* LINEAR: one Linear on the features (concat-linear under feature fusion). GATED needs feature
 * fusion; CONCAT_MLP also runs on the one 512-d feature of a single backbone. */
typedef enum { TW_HEAD_LINEAR, TW_HEAD_CONCAT_MLP, TW_HEAD_GATED } tw_head_kind;

#define TW_CLASSIFIER_MAX_GROUPS 16

typedef struct tw_classifier_opts {
    int c_s1;             /* 0 or 2 (VV, VH) */
    int c_s2;             /* 0, 3 or 12 (the loader's S2 bands) */
    tw_fusion fusion;     /* NONE needs exactly one source; EARLY and FEATURE need both */
    tw_head_kind head;
    int n_classes;        /* 19 or 43 (any >= 1) */
    int mlp_hidden;       /* CONCAT_MLP's hidden width (default 512) */
    int frozen;           /* backbones in eval mode: no backbone gradients, buffers never change */
    int bn_frozen;        /* backbones trained with BN in inference mode (running statistics) */
    int bn_groups;        /* backbone BN statistics over this many equal slices of the batch */
} tw_classifier_opts;

/* Single-source S2 (12 bands), linear head, 19 classes, hidden 512, nothing frozen, 1 group. */
void tw_classifier_opts_default(tw_classifier_opts *o);

typedef struct tw_classifier {
    tw_classifier_opts o;
    tw_params *P;
    int n_nets;                 /* 1 (single, early) or 2 (feature: net[0] S1, net[1] S2) */
    tw_resnet18 net[2];
    int d_feat;                 /* the head's input width: 512 or 1024 */
    int n_layers;               /* the head's Linear layers: 1 (LINEAR) or 2 */
    int w[2], b[2];             /* their arena entries: weight [out, in], bias [out] */
    int d_out[2];               /* their output widths */
} tw_classifier;

/* Registers every tensor in P (before tw_params_alloc). Errors (TW_E_RANGE) name the option. */
tw_status tw_classifier_init(tw_classifier *m, tw_params *P, const tw_classifier_opts *o,
                             tw_err *err);
/* Torch's default initialisation from a seed, after tw_params_alloc: the backbones as
 * tw_resnet18_init_weights, each Linear as nn.Linear (weight and bias uniform in
 * ±1/sqrt(fan_in)). Backbones loaded from files are loaded after this. */
void tw_classifier_reset(tw_classifier *m, uint64_t seed);

/* Whether arena entry i is trained (the optimizer's set: the head's tensors, and the backbones'
 * weights unless frozen) and whether it belongs to a backbone (for a backbone learning-rate
 * factor). Buffers and counters are never trainable. */
int tw_classifier_trainable(const tw_classifier *m, int entry);
int tw_classifier_in_backbone(const tw_classifier *m, int entry);

typedef struct tw_classifier_plans {
    tw_backend *be;
    int n, h, w, groups;
    tw_resnet18_plans *net[2];  /* for n / groups images each */
} tw_classifier_plans;

/* Plans for batches of n samples of h x w (n a multiple of bn_groups). */
tw_status tw_classifier_plans_make(tw_classifier_plans **out, tw_backend *be,
                                   const tw_classifier *m, int n, int h, int w, tw_err *err);
void tw_classifier_plans_free(tw_classifier_plans *p);

typedef struct tw_classifier_acts {
    tw_resnet18_acts net[2][TW_CLASSIFIER_MAX_GROUPS];
    void *arena;                /* the tensors below, one backend allocation */
    size_t n_bytes;
    float *x_early;             /* [n, c_s2 + c_s1, h, w] early fusion's stacked input, else NULL */
    float *feats[2];            /* [n, 512] pooled features after a forward (for embed): [0] of
                                   "backbone." or, under feature fusion, "s1."; [1] of "s2." */
    float *dfeats[2];           /* [n, 512] */
    float *hid, *dhid;          /* [n, d_out[0]] first layer of a two-layer head, else NULL */
    float *fused, *dfused;      /* GATED: [n, 512] g f1 + (1 - g) f2 */
    float *logits, *dlogits;    /* [n, k]; dlogits is the caller's to fill (e.g. tw_bce_logits) */
    int for_training;           /* made for training steps (else eval forwards only) */
    int train;                  /* the last forward's mode */
} tw_classifier_acts;

/* for_training = 0: evaluation and embedding only (train forwards and backward are bugs), the
 * backbones' activation sets without gradients; 1: training steps, where frozen backbones
 * still get such eval-only sets. */
void tw_classifier_acts_make(tw_classifier_acts *a, const tw_classifier *m,
                             const tw_classifier_plans *p, int for_training);
void tw_classifier_acts_free(tw_classifier_acts *a, tw_backend *be);

/* a->logits (=) [n, k] f32. x_s1 [n, 2, h, w] and x_s2 [n, c_s2, h, w]: plain NCHW f32 backend
 * memory, NULL when the model does not use that source. train = 1: a training step (backbones in
 * train mode unless frozen or bn_frozen: then in eval mode); train = 0: evaluation, running
 * statistics everywhere, nothing in the arena changes. */
void tw_classifier_forward(tw_classifier_acts *a, const float *x_s1, const float *x_s2,
                           tw_classifier *m, tw_classifier_plans *p, int train);
/* From dlogits [n, k] f32 (backend memory, e.g. a->dlogits), after a train = 1 forward on a:
 * every trainable gradient into P->grads (=); frozen backbones' gradients are not written.
 * ready (NULL: none) hears of each range of the arena as soon as its gradients are final: the
 * head's, then each backbone's stages, layer4 first (core/grad_ready.h). */
void tw_classifier_backward(tw_classifier *m, tw_classifier_acts *a, const float *dlogits,
                            tw_classifier_plans *p, const tw_grad_ready *ready);

#endif
