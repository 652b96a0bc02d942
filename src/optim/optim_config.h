/* From the shared optim section (config/sections.h) to the optimizer's hyper-parameters and
 * schedule, in one place: the batch scaling of the rate and the epochs-to-steps arithmetic. */
#ifndef TW_OPTIM_CONFIG_H
#define TW_OPTIM_CONFIG_H

#include "config/sections.h"
#include "optim/optim.h"

/* steps_per_epoch: global batches per epoch (>= 1). lr = optim.lr, times batch / 256 when
 * optim.lr_batch_scale (the official base_lr = batch_size / 256). */
void tw_optim_from_cfg(tw_optim_hparams *h, tw_schedule *s, const tw_optim_cfg *c, int batch,
                       int64_t steps_per_epoch);

#endif
