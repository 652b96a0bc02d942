/* The sweep schema: the fine-tuning keys (finetune.c) for the base of every cell, and the grid's
 * sweep.* keys. The base is checked key by key here and as a whole in each cell, once the cell's
 * source, fusion and initialisation are set (src/train/sweep.c). */
#include <stddef.h>
#include <stdio.h>

#include "config/sweep.h"

#define G tw_sweep_grid_cfg
#define KS(path, field, def, help) {path, TW_CFG_STRING, offsetof(G, field), 1, NULL, def, 0, 0, 0, help}
static const tw_cfg_key grid_keys[] = {
    KS("sweep.sources", sources, "\"s1,s2,s1+s2\"", "comma-separated sources of the grid: s1, s2, s1+s2"),
    KS("sweep.fusions", fusions, "feature:gated",
       "for s1+s2, comma-separated fusions: early, feature:<head> (concat-linear, concat-mlp, gated)"),
    KS("sweep.experiments", experiments, "\"scratch:finetune,ssl:frozen,ssl:finetune\"",
       "comma-separated init:mode pairs; init scratch, weights, ssl or ssl-cross; mode frozen (TL) or finetune (FT)"),
    KS("sweep.fractions", fractions, "\"0.01,0.05,0.1,0.2,0.5,1\"", "comma-separated label fractions in (0, 1]"),
    KS("sweep.seeds", seeds, "\"0\"", "comma-separated run seeds (each cell once per seed)"),
    KS("sweep.splits", splits, "\"val,test,clouds\"", "comma-separated splits every cell is evaluated on"),
    KS("sweep.weights", weights, "\"\"", "init weights: a torchvision-named ResNet18 safetensors file"),
    KS("sweep.ssl_s1", ssl_s1, "\"\"", "init ssl: the S1 Barlow Twins pre-training checkpoint"),
    KS("sweep.ssl_s2", ssl_s2, "\"\"", "init ssl: the S2 Barlow Twins pre-training checkpoint"),
    KS("sweep.ssl_cross", ssl_cross, "\"\"",
       "init ssl-cross: a cross-modal Barlow Twins checkpoint (data.source=s1+s2, loss.pairing=cross)"),
    {"sweep.epoch_scale_max", TW_CFG_FLOAT, offsetof(G, epoch_scale_max), 1, NULL, "1.0", TW_CFG_LO, 1, 0,
     "a cell at fraction f trains min(1/f, this) times optim.epochs (1: the same epochs at every fraction)"},
};
#undef KS
#undef G

static const char *check(const void *cfg_, char *why, size_t n_why) {
    const tw_sweep_cfg *c = cfg_;
    return tw_cfg_sections_check(&c->ft.data, &c->ft.optim, &c->ft.augment, why, n_why);
}

const tw_cfg_schema *tw_sweep_schema(void) {
    static tw_cfg_schema schema;
    static tw_cfg_key storage[128];
    if (!schema.keys) {
        const tw_cfg_schema *ft = tw_finetune_schema();
        const tw_cfg_part parts[] = {
            {ft->keys, ft->n_keys, offsetof(tw_sweep_cfg, ft)},
            {grid_keys, (int)(sizeof grid_keys / sizeof grid_keys[0]), offsetof(tw_sweep_cfg, sweep)},
        };
        const tw_cfg_default defaults[] = {{"run.name", "sweep"}};
        tw_cfg_schema_build(&schema, storage, 128, "sweep", sizeof(tw_sweep_cfg), check, parts, 2, defaults, 1);
    }
    return &schema;
}
