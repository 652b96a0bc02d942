/* The fine-tuning schema: the shared sections (sections.c), the classifier's model.* and the
 * validation's eval.* keys, fine-tuning's own defaults for shared keys (a short schedule without
 * warm-up, geometric augmentations only) and the rules that span keys. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config/finetune.h"

const char *const tw_cfg_fusion_names[] = {"none", "early", "feature", NULL};
const char *const tw_cfg_head_names[] = {"concat-linear", "concat-mlp", "gated", NULL};
const char *const tw_cfg_mode_names[] = {"finetune", "frozen", NULL};
static const char *const bn_names[] = {"train", "frozen", NULL};

#define M tw_finetune_model_cfg
#define E tw_finetune_eval_cfg
static const tw_cfg_key model_keys[] = {
    {"model.fusion", TW_CFG_ENUM, offsetof(M, fusion), 1, tw_cfg_fusion_names, "none", 0, 0, 0,
     "S1+S2 fusion: none (one source), early (stacked channels, one ResNet18), feature (a ResNet18 "
     "per source, pooled features joined by model.head)"},
    {"model.head", TW_CFG_ENUM, offsetof(M, head), 1, tw_cfg_head_names, "concat-linear", 0, 0, 0,
     "feature fusion's head: concat-linear, concat-mlp or gated (a sigmoid gate weighing the two features)"},
    {"model.mlp_hidden", TW_CFG_INT, offsetof(M, mlp_hidden), 1, NULL, "512", TW_CFG_LO | TW_CFG_HI, 1, 65536,
     "hidden width of the concat-mlp head"},
    {"model.mode", TW_CFG_ENUM, offsetof(M, mode), 1, tw_cfg_mode_names, "finetune", 0, 0, 0,
     "finetune (every layer learns, FT) or frozen (backbones and their BN fixed, only the head learns, TL)"},
    {"model.bn", TW_CFG_ENUM, offsetof(M, bn), 1, bn_names, "train", 0, 0, 0,
     "finetune mode: backbone BN with batch statistics (train) or its running statistics fixed (frozen)"},
    {"model.init", TW_CFG_STRING, offsetof(M, init), 1, NULL, "scratch", 0, 0, 0,
     "every backbone's initialisation: scratch, weights:FILE (torchvision-named safetensors) or "
     "ssl:CHECKPOINT (a twinfuse pretrain checkpoint's backbone)"},
    {"model.init_s1", TW_CFG_STRING, offsetof(M, init_s1), 1, NULL, "\"\"", 0, 0, 0,
     "the S1 backbone's initialisation (feature fusion, or source s1); empty: model.init"},
    {"model.init_s2", TW_CFG_STRING, offsetof(M, init_s2), 1, NULL, "\"\"", 0, 0, 0,
     "the S2 backbone's initialisation (feature fusion, or source s2); empty: model.init"},
    {"model.backbone_lr_scale", TW_CFG_FLOAT, offsetof(M, backbone_lr_scale), 1, NULL, "1.0", TW_CFG_LO_EXCL,
     0, 0, "the backbones learn at optim.lr times this (finetune mode)"},
};
static const tw_cfg_key eval_keys[] = {
    {"eval.split", TW_CFG_ENUM, offsetof(E, split), 1, tw_cfg_split_names, "val", 0, 0, 0,
     "split scored during training (mAP decides best.safetensors)"},
    {"eval.every_epochs", TW_CFG_INT, offsetof(E, every_epochs), 1, NULL, "1", TW_CFG_LO, 0, 0,
     "epochs between validations; 0: only at the end"},
    {"eval.batch", TW_CFG_INT, offsetof(E, batch), 1, NULL, "0", TW_CFG_LO | TW_CFG_HI, 0, 1 << 20,
     "global batch of the validation; 0: data.batch"},
};
#undef M
#undef E

/* Fine-tuning's own defaults for shared keys. */
static const tw_cfg_default defaults[] = {
    {"run.name", "finetune"},
    {"run.ckpt_every_steps", "0"},
    {"data.batch", "64"},
    {"optim.epochs", "20"},
    {"optim.warmup_epochs", "0"},
    {"augment.view1.crop", "0.0"},
    {"augment.view1.jitter", "0.0"},
    {"augment.view1.blur", "0.0"},
    {"augment.view1.noise", "0.0"},
    {"augment.view1.speckle", "0.0"},
    {"augment.view1.band_dropout", "0.0"},
};

int tw_init_spec_parse(tw_init_spec *out, const char *value) {
    if (!strcmp(value, "scratch")) {
        *out = (tw_init_spec){TW_INIT_SCRATCH, NULL};
        return 1;
    }
    if (!strncmp(value, "weights:", 8) && value[8]) {
        *out = (tw_init_spec){TW_INIT_WEIGHTS, value + 8};
        return 1;
    }
    if (!strncmp(value, "ssl:", 4) && value[4]) {
        *out = (tw_init_spec){TW_INIT_SSL, value + 4};
        return 1;
    }
    return 0;
}

static const char *check(const void *cfg_, char *why, size_t n_why) {
    const tw_finetune_cfg *c = cfg_;
    const char *bad = tw_cfg_sections_check(&c->data, &c->optim, &c->augment, why, n_why);
    if (bad) return bad;
    int fused = c->data.source == TW_SOURCE_S1S2;
    if (fused && c->model.fusion == TW_CFG_FUSION_NONE) {
        snprintf(why, n_why, "data.source=s1+s2 needs a fusion: early or feature");
        return "model.fusion";
    }
    if (!fused && c->model.fusion != TW_CFG_FUSION_NONE) {
        snprintf(why, n_why, "fusion needs data.source=s1+s2, got data.source=%s",
                 tw_cfg_source_names[c->data.source]);
        return "model.fusion";
    }
    if (c->model.fusion != TW_CFG_FUSION_FEATURE && c->model.head != TW_CFG_HEAD_CONCAT_LINEAR) {
        snprintf(why, n_why, "%s is a feature-fusion head; one backbone has a linear head",
                 tw_cfg_head_names[c->model.head]);
        return "model.head";
    }
    const struct { const char *key, *value; } inits[] = {
        {"model.init", c->model.init}, {"model.init_s1", c->model.init_s1}, {"model.init_s2", c->model.init_s2}};
    for (int i = 0; i < 3; i++) {
        tw_init_spec spec;
        if ((i == 0 || inits[i].value[0]) && !tw_init_spec_parse(&spec, inits[i].value)) {
            snprintf(why, n_why, "must be scratch, weights:FILE or ssl:CHECKPOINT, got '%s'", inits[i].value);
            return inits[i].key;
        }
    }
    return NULL;
}

#define PART(keys, field) {keys, (int)(sizeof keys / sizeof keys[0]), offsetof(tw_finetune_cfg, field)}
#define SHARED(keys, n, field) {keys, n, offsetof(tw_finetune_cfg, field)}

const tw_cfg_schema *tw_finetune_schema(void) {
    static tw_cfg_schema schema;
    static tw_cfg_key storage[112];
    if (!schema.keys) {
        const tw_cfg_part parts[] = {
            SHARED(tw_cfg_run_keys, tw_cfg_n_run_keys, run),
            SHARED(tw_cfg_data_keys, tw_cfg_n_data_keys, data),
            PART(model_keys, model),
            PART(eval_keys, eval),
            SHARED(tw_cfg_optim_keys, tw_cfg_n_optim_keys, optim),
            SHARED(tw_cfg_backend_keys, tw_cfg_n_backend_keys, backend),
            SHARED(tw_cfg_augment_keys, tw_cfg_n_augment_keys, augment),
        };
        tw_cfg_schema_build(&schema, storage, 112, "finetune", sizeof(tw_finetune_cfg), check, parts,
                            (int)(sizeof parts / sizeof parts[0]), defaults,
                            (int)(sizeof defaults / sizeof defaults[0]));
    }
    return &schema;
}
