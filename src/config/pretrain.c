/* The pre-training schema: the shared sections (sections.c) around pre-training's own model and
 * loss keys, and the rules that span keys. docs/config.md describes the same keys for people;
 * tests/config checks that every key is documented there. */
#include <stddef.h>
#include <stdio.h>

#include "config/pretrain.h"

static const char *const bn_names[] = {"local", "sync", NULL};
static const char *const pairing_names[] = {"views", "cross", NULL};
static const char *const exchange_names[] = {"allreduce", "allgather", NULL};

#define M tw_pretrain_model_cfg
static const tw_cfg_key model_keys[] = {
    {"model.projector_dim", TW_CFG_INT, offsetof(M, projector_dim), 1, NULL, "2048", TW_CFG_LO | TW_CFG_HI,
     16, 65536, "width of the three projector layers"},
    {"model.backbone_bn", TW_CFG_ENUM, offsetof(M, backbone_bn), 1, bn_names, "local", 0, 0, 0,
     "backbone batch norm statistics: local (each rank's batch) or sync (the global batch, as the "
     "official code's SyncBatchNorm; docs/pretrain.md)"},
};
#undef M
static const tw_cfg_key loss_keys[] = {
    {"loss.lambda", TW_CFG_FLOAT, offsetof(tw_pretrain_loss_cfg, lambda), 1, NULL, "0.0051", TW_CFG_LO, 0, 0,
     "weight of the off-diagonal (redundancy) terms"},
    {"loss.pairing", TW_CFG_ENUM, offsetof(tw_pretrain_loss_cfg, pairing), 1, pairing_names, "views", 0, 0, 0,
     "views (two augmented views of one source) or cross (S1 against S2; data.source s1+s2)"},
    {"loss.intra", TW_CFG_FLOAT, offsetof(tw_pretrain_loss_cfg, intra), 1, NULL, "0", TW_CFG_LO, 0, 0,
     "cross pairing: weight of the intra-modal terms (a second view of each source against the "
     "first, DeCUR; docs/pretrain.md); 0: none"},
    {"loss.common_dims", TW_CFG_INT, offsetof(tw_pretrain_loss_cfg, common_dims), 1, NULL, "0", TW_CFG_LO, 0, 0,
     "cross pairing with loss.intra: the projector dimensions S1 and S2 share (diagonal target 1); "
     "the rest are each source's own (target 0); 0: all"},
    {"loss.c_exchange", TW_CFG_ENUM, offsetof(tw_pretrain_loss_cfg, c_exchange), 1, exchange_names, "allreduce",
     0, 0, 0,
     "how ranks form the global cross-correlation: allreduce C (D x D floats) or allgather the "
     "normalised embeddings (2 N D floats, N the global batch) and form C on every rank"},
};

static const char *const collapse_names[] = {"warn", "stop", NULL};
static const char *const knn_split_names[] = {"none", "val", "test", "clouds", NULL};

const char *tw_cfg_knn_split_name(tw_cfg_knn_split s) { return s == TW_KNN_NONE ? NULL : knn_split_names[s]; }

#define O tw_pretrain_monitor_cfg
static const tw_cfg_key monitor_keys[] = {
    {"monitor.every_steps", TW_CFG_I64, offsetof(O, every_steps), 1, NULL, "0", TW_CFG_LO, -1, 0,
     "steps between monitor checks (embedding health, online kNN; docs/monitor.md); 0: once an epoch, "
     "-1: none"},
    {"monitor.knn_split", TW_CFG_ENUM, offsetof(O, knn_split), 1, knn_split_names, "val", 0, 0, 0,
     "the online kNN's labelled queries (the memory is the train split), or none"},
    {"monitor.knn_memory", TW_CFG_I64, offsetof(O, knn_memory), 1, NULL, "5000", TW_CFG_LO, 1, 0,
     "at most this many train patches as the kNN's memory (a fixed label-fraction subset)"},
    {"monitor.knn_queries", TW_CFG_I64, offsetof(O, knn_queries), 1, NULL, "2000", TW_CFG_LO, 1, 0,
     "at most this many patches of monitor.knn_split as the kNN's queries"},
    {"monitor.erank_rows", TW_CFG_INT, offsetof(O, erank_rows), 1, NULL, "256", TW_CFG_LO | TW_CFG_HI, 2, 4096,
     "rows of the step's embeddings (over all ranks) whose effective rank is measured"},
    {"monitor.patience", TW_CFG_INT, offsetof(O, patience), 1, NULL, "3", TW_CFG_LO, 1, 0,
     "consecutive checks past the collapse thresholds before the alarm"},
    {"monitor.on_collapse", TW_CFG_ENUM, offsetof(O, on_collapse), 1, collapse_names, "warn", 0, 0, 0,
     "warn (a warning line) or stop (a checkpoint, then exit 1 with the reason)"},
};
#undef O

static const char *check(const void *cfg_, char *why, size_t n_why) {
    const tw_pretrain_cfg *cfg = cfg_;
    const char *bad = tw_cfg_sections_check(&cfg->data, &cfg->optim, &cfg->augment, why, n_why);
    if (bad) return bad;
    int both = cfg->data.source == TW_SOURCE_S1S2;
    int cross = cfg->loss.pairing == TW_PAIRING_CROSS || cfg->data.views == TW_CFG_VIEWS_CROSS;
    if (both && !cross) {
        snprintf(why, n_why, "data.source s1+s2 pairs S1 with S2: it needs data.views cross (or loss.pairing cross)");
        return "data.views";
    }
    if (!both && cross) {
        snprintf(why, n_why, "cross pairs S1 with S2: it needs data.source s1+s2");
        return cfg->data.views == TW_CFG_VIEWS_CROSS ? "data.views" : "loss.pairing";
    }
    if (cfg->loss.intra > 0 && !cross) {
        snprintf(why, n_why, "intra-modal terms are added to a cross-modal loss: they need loss.pairing cross");
        return "loss.intra";
    }
    if (cfg->loss.common_dims > 0 && cfg->loss.common_dims < cfg->model.projector_dim && !(cfg->loss.intra > 0)) {
        snprintf(why, n_why, "unique dimensions are shaped by the intra-modal terms alone: they need loss.intra > 0");
        return "loss.common_dims";
    }
    if (cfg->loss.common_dims > cfg->model.projector_dim) {
        snprintf(why, n_why, "%d common dimensions in a %d-wide projector", cfg->loss.common_dims,
                 cfg->model.projector_dim);
        return "loss.common_dims";
    }
    if (cfg->data.views == TW_CFG_VIEWS_SEASONAL && cfg->loss.pairing == TW_PAIRING_CROSS) {
        snprintf(why, n_why, "seasonal views pair two acquisitions of one source; loss.pairing cross pairs S1 with S2");
        return "data.views";
    }
    return NULL;
}

#define PART(keys, n, field) {keys, n, offsetof(tw_pretrain_cfg, field)}

const tw_cfg_schema *tw_pretrain_schema(void) {
    static tw_cfg_schema schema;
    static tw_cfg_key storage[112];
    if (!schema.keys) {
        const tw_cfg_part parts[] = {
            PART(tw_cfg_run_keys, tw_cfg_n_run_keys, run),
            PART(tw_cfg_data_keys, tw_cfg_n_data_keys, data),
            PART(model_keys, (int)(sizeof model_keys / sizeof model_keys[0]), model),
            PART(loss_keys, (int)(sizeof loss_keys / sizeof loss_keys[0]), loss),
            PART(tw_cfg_optim_keys, tw_cfg_n_optim_keys, optim),
            PART(tw_cfg_backend_keys, tw_cfg_n_backend_keys, backend),
            PART(tw_cfg_augment_keys, tw_cfg_n_augment_keys, augment),
            PART(monitor_keys, (int)(sizeof monitor_keys / sizeof monitor_keys[0]), monitor),
        };
        tw_cfg_schema_build(&schema, storage, 112, "pretrain", sizeof(tw_pretrain_cfg), check, parts,
                            (int)(sizeof parts / sizeof parts[0]), NULL, 0);
    }
    return &schema;
}
