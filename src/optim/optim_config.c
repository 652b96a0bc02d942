/* tw_optim_from_cfg: the config's optim section as tw_optim_hparams and tw_schedule. */
#include "optim/optim_config.h"

#include "core/log.h"

void tw_optim_from_cfg(tw_optim_hparams *h, tw_schedule *s, const tw_optim_cfg *c, int batch,
                       int64_t steps_per_epoch) {
    TW_ASSERT(steps_per_epoch >= 1);
    static const tw_optim_kind kinds[] = {
        [TW_OPTIM_ADAM] = TW_OPTIM_KIND_ADAM, [TW_OPTIM_ADAMW] = TW_OPTIM_KIND_ADAMW,
        [TW_OPTIM_LARS] = TW_OPTIM_KIND_LARS, [TW_OPTIM_SGD] = TW_OPTIM_KIND_SGD,
    };
    h->kind = kinds[c->name];
    h->lr = c->lr_batch_scale ? (double)batch / 256.0 * c->lr : c->lr;
    h->lr_bias_scale = c->lr_bias_scale;
    h->weight_decay = c->weight_decay;
    h->momentum = c->momentum;
    h->nesterov = c->nesterov;
    h->beta1 = c->betas[0];
    h->beta2 = c->betas[1];
    h->eps = c->eps;
    h->eta = c->eta;
    s->kind = c->schedule == TW_SCHED_CONSTANT ? TW_SCHEDULE_CONSTANT : TW_SCHEDULE_COSINE;
    s->warmup_steps = (int64_t)c->warmup_epochs * steps_per_epoch;
    s->total_steps = (int64_t)c->epochs * steps_per_epoch;
    s->final_ratio = c->final_lr_ratio;
}
