/* tw_optim_from_pretrain: the config's optim section as tw_optim_hparams and tw_schedule. */
#include "optim/optim_config.h"

#include "core/log.h"

void tw_optim_from_pretrain(tw_optim_hparams *h, tw_schedule *s, const tw_pretrain_cfg *cfg,
                            int64_t steps_per_epoch) {
    TW_ASSERT(steps_per_epoch >= 1);
    static const tw_optim_kind kinds[] = {
        [TW_OPTIM_ADAM] = TW_OPTIM_KIND_ADAM, [TW_OPTIM_ADAMW] = TW_OPTIM_KIND_ADAMW,
        [TW_OPTIM_LARS] = TW_OPTIM_KIND_LARS, [TW_OPTIM_SGD] = TW_OPTIM_KIND_SGD,
    };
    h->kind = kinds[cfg->optim.name];
    h->lr = cfg->optim.lr_batch_scale ? (double)cfg->data.batch / 256.0 * cfg->optim.lr : cfg->optim.lr;
    h->lr_bias_scale = cfg->optim.lr_bias_scale;
    h->weight_decay = cfg->optim.weight_decay;
    h->momentum = cfg->optim.momentum;
    h->nesterov = cfg->optim.nesterov;
    h->beta1 = cfg->optim.betas[0];
    h->beta2 = cfg->optim.betas[1];
    h->eps = cfg->optim.eps;
    h->eta = cfg->optim.eta;
    s->kind = cfg->optim.schedule == TW_SCHED_CONSTANT ? TW_SCHEDULE_CONSTANT : TW_SCHEDULE_COSINE;
    s->warmup_steps = (int64_t)cfg->optim.warmup_epochs * steps_per_epoch;
    s->total_steps = (int64_t)cfg->optim.epochs * steps_per_epoch;
    s->final_ratio = cfg->optim.final_lr_ratio;
}
