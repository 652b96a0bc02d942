/* The pre-training schema: one row per key of tw_pretrain_cfg (pretrain.h) with its type,
 * default, range and help, plus the rules that span keys. docs/config.md describes the same keys
 * for people; tests/config checks that every key is documented there. */
#include <stddef.h>
#include <stdio.h>

#include "config/pretrain.h"

#define OFF(field) offsetof(tw_pretrain_cfg, field)
#define GE TW_CFG_LO
#define GT TW_CFG_LO_EXCL
#define LE TW_CFG_HI
#define LT TW_CFG_HI_EXCL

#define KI(path, field, def, flags, lo, hi, help) {path, TW_CFG_INT, OFF(field), 1, NULL, def, flags, lo, hi, help}
#define KL(path, field, def, flags, lo, hi, help) {path, TW_CFG_I64, OFF(field), 1, NULL, def, flags, lo, hi, help}
#define KF(path, field, def, flags, lo, hi, help) {path, TW_CFG_FLOAT, OFF(field), 1, NULL, def, flags, lo, hi, help}
#define KB(path, field, def, help) {path, TW_CFG_BOOL, OFF(field), 1, NULL, def, 0, 0, 0, help}
#define KS(path, field, def, flags, help) {path, TW_CFG_STRING, OFF(field), 1, NULL, def, flags, 0, 0, help}
#define KE(path, field, names, def, help) {path, TW_CFG_ENUM, OFF(field), 1, names, def, 0, 0, 0, help}
#define KP(path, field, def, help) KF(path, field, def, GE | LE, 0, 1, help)   /* a probability */

static const char *const split_names[] = {"train", "val", "test", "clouds", NULL};
static const char *const source_names[] = {"s1", "s2", NULL};
static const char *const bands_names[] = {"rgb", "all", NULL};
static const char *const bn_names[] = {"local", "sync", NULL};
static const char *const optim_names[] = {"adam", "adamw", "lars", "sgd", NULL};
static const char *const sched_names[] = {"cosine", "constant", NULL};
static const char *const device_names[] = {"cpu", "cuda", NULL};
static const char *const precision_names[] = {"auto", "fp32", "bf16", NULL};
static const char *const comm_names[] = {"auto", "single", "mpi", "nccl", NULL};

/* Per-view augmentation probabilities; the defaults follow Barlow Twins' asymmetric views
 * (facebookresearch/barlowtwins main.py Transform: blur 1.0 vs 0.1, solarize 0.0 vs 0.2), with
 * noise, speckle and band dropout standing in for solarisation on multispectral and SAR data. */
#define AUG_VIEW(v, blur_p, rare_p)                                                              \
    KP("augment." #v ".crop", augment.v.crop, "1.0", "probability of a random resized crop"),     \
    KP("augment." #v ".flip", augment.v.flip, "0.5", "probability of each of the horizontal and vertical flips"), \
    KP("augment." #v ".rot90", augment.v.rot90, "0.5", "probability of a rotation by k*90 degrees, k uniform in 1..3"), \
    KP("augment." #v ".jitter", augment.v.jitter, "0.8", "probability of brightness/contrast jitter"), \
    KP("augment." #v ".blur", augment.v.blur, blur_p, "probability of a Gaussian blur"),          \
    KP("augment." #v ".noise", augment.v.noise, rare_p, "probability of additive Gaussian noise"), \
    KP("augment." #v ".speckle", augment.v.speckle, rare_p, "probability of multiplicative speckle"), \
    KP("augment." #v ".band_dropout", augment.v.band_dropout, rare_p, "probability of band dropout")

static const tw_cfg_key keys[] = {
    KS("run.name", run.name, "pretrain", 0, "run name; outputs go to run.out_dir/run.name/"),
    KS("run.out_dir", run.out_dir, "runs", 0, "directory holding the runs"),
    KL("run.seed", run.seed, "0", GE, 0, 0, "seed of the sample order, augmentations and weights"),
    KS("run.resume", run.resume, "auto", 0,
       "auto (the latest checkpoint of this run if any), never, or a checkpoint path"),
    KI("run.log_every", run.log_every, "10", GE, 1, 0, "steps between log lines"),
    KI("run.ckpt_every_steps", run.ckpt_every_steps, "1000", GE, 0, 0,
       "steps between checkpoints; 0: only at the end"),
    KL("run.max_steps", run.max_steps, "null", GE | TW_CFG_NULLABLE, 0, 0,
       "stop after this many steps (the schedule still spans optim.epochs); null: run every epoch"),

    KS("data.shards", data.shards, "\"\"", TW_CFG_REQUIRED, "directory of HDF5 shards <split>-<index>.h5"),
    KE("data.split", data.split, split_names, "train", "which split's shards to read"),
    KE("data.source", data.source, source_names, "s2", "modality: s1 (SAR VV, VH) or s2 (optical)"),
    KE("data.s2_bands", data.s2_bands, bands_names, "all", "S2 bands: rgb (B04, B03, B02) or all 12"),
    KI("data.size", data.size, "120", GE | LE, 16, 1024, "side of the square views, pixels"),
    KI("data.batch", data.batch, "256", GE | LE, 2, 1 << 20, "global batch: pairs per step over all ranks"),
    KI("data.prefetch", data.prefetch, "2", GE | LE, 0, 64, "batches prepared ahead on each rank"),

    KI("model.projector_dim", model.projector_dim, "2048", GE | LE, 16, 65536,
       "width of the three projector layers"),
    KE("model.backbone_bn", model.backbone_bn, bn_names, "local",
       "backbone batch norm statistics: local (per rank) or sync (all-reduced)"),

    KF("loss.lambda", loss.lambda, "0.0051", GE, 0, 0, "weight of the off-diagonal (redundancy) terms"),

    KE("optim.name", optim.name, optim_names, "adam", "optimizer"),
    KF("optim.lr", optim.lr, "0.001", GT, 0, 0, "peak learning rate of the weights (after warm-up)"),
    KF("optim.lr_bias_scale", optim.lr_bias_scale, "1.0", GT, 0, 0,
       "1-D parameters (biases, BN) get lr * lr_bias_scale (official LARS recipe: 0.0048/0.2 = 0.024)"),
    KB("optim.lr_batch_scale", optim.lr_batch_scale, "false",
       "multiply lr by data.batch / 256, as the official recipe's base_lr"),
    KF("optim.weight_decay", optim.weight_decay, "0.0", GE, 0, 0,
       "weight decay (L2 for adam and sgd, decoupled for adamw); never on 1-D parameters for lars and sgd"),
    KF("optim.momentum", optim.momentum, "0.9", GE | LT, 0, 1, "momentum of lars and sgd"),
    KB("optim.nesterov", optim.nesterov, "false", "Nesterov momentum (sgd)"),
    {"optim.betas", TW_CFG_FLOATS, OFF(optim.betas), 2, NULL, "[0.9, 0.999]", GE | LT, 0, 1,
     "Adam's beta1, beta2"},
    KF("optim.eps", optim.eps, "1e-08", GT, 0, 0, "Adam's epsilon"),
    KF("optim.eta", optim.eta, "0.001", GT, 0, 0, "LARS trust coefficient"),
    KI("optim.warmup_epochs", optim.warmup_epochs, "10", GE, 0, 0, "epochs of linear warm-up from 0"),
    KI("optim.epochs", optim.epochs, "1000", GE, 1, 0, "epochs of the whole schedule"),
    KE("optim.schedule", optim.schedule, sched_names, "cosine",
       "after warm-up: cosine decay to lr * final_lr_ratio, or constant lr"),
    KF("optim.final_lr_ratio", optim.final_lr_ratio, "0.001", GE | LE, 0, 1,
       "end of the cosine decay as a fraction of lr (official recipe: 0.001)"),

    KE("backend.device", backend.device, device_names, "cpu", "compute device"),
    KE("backend.precision", backend.precision, precision_names, "auto",
       "auto: bf16 where the hardware computes it natively, else fp32"),
    KI("backend.threads", backend.threads, "0", GE | LE, 0, 1024, "CPU threads per rank; 0: cores / local ranks"),
    KE("backend.comm", backend.comm, comm_names, "auto",
       "communicator: auto (mpi when launched by mpirun or srun, nccl on cuda), single, mpi, nccl"),

    AUG_VIEW(view1, "1.0", "0.0"),
    AUG_VIEW(view2, "0.1", "0.2"),
    KF("augment.crop_min_scale", augment.crop_min_scale, "0.08", GT | LE, 0, 1,
       "smallest crop area as a fraction of the image (RandomResizedCrop scale[0])"),
    KF("augment.jitter_brightness", augment.jitter_brightness, "0.4", GE, 0, 0,
       "brightness shift uniform in [-b, b], in per-band std units"),
    KF("augment.jitter_contrast", augment.jitter_contrast, "0.4", GE | LT, 0, 1,
       "contrast factor uniform in [1 - c, 1 + c]"),
    KF("augment.blur_sigma_min", augment.blur_sigma_min, "0.1", GT, 0, 0, "smallest blur sigma, pixels"),
    KF("augment.blur_sigma_max", augment.blur_sigma_max, "2.0", GT, 0, 0, "largest blur sigma, pixels"),
    KF("augment.noise_std", augment.noise_std, "0.1", GE, 0, 0, "std of the additive noise, per-band std units"),
    KI("augment.speckle_looks", augment.speckle_looks, "4", GE | LE, 1, 1000,
       "equivalent number of looks L: speckle ~ Gamma(L, 1/L)"),
    KF("augment.band_dropout_frac", augment.band_dropout_frac, "0.25", GT | LT, 0, 1,
       "fraction of the bands zeroed by band dropout (at least one band stays)"),
};

static const char *check(const void *cfg_, char *why, size_t n_why) {
    const tw_pretrain_cfg *cfg = cfg_;
    if (cfg->optim.warmup_epochs >= cfg->optim.epochs) {
        snprintf(why, n_why, "must be below optim.epochs (%d), got %d", cfg->optim.epochs,
                 cfg->optim.warmup_epochs);
        return "optim.warmup_epochs";
    }
    if (cfg->augment.blur_sigma_min > cfg->augment.blur_sigma_max) {
        snprintf(why, n_why, "must be >= augment.blur_sigma_min (%g), got %g", cfg->augment.blur_sigma_min,
                 cfg->augment.blur_sigma_max);
        return "augment.blur_sigma_max";
    }
    return NULL;
}

static const tw_cfg_schema schema = {
    "pretrain", keys, (int)(sizeof keys / sizeof keys[0]), sizeof(tw_pretrain_cfg), check,
};

const tw_cfg_schema *tw_pretrain_schema(void) { return &schema; }
