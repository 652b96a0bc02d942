/* The shared sections' key tables (sections.h): one row per key with its type, default, range and
 * help; offsets are relative to the section's struct. Commands place them in their own struct and
 * may change a default (tw_cfg_schema_build); docs/config.md describes the same keys for people. */
#include <stddef.h>
#include <stdio.h>

#include "config/sections.h"

#define GE TW_CFG_LO
#define GT TW_CFG_LO_EXCL
#define LE TW_CFG_HI
#define LT TW_CFG_HI_EXCL

#define KI(T, path, field, def, flags, lo, hi, help) {path, TW_CFG_INT, offsetof(T, field), 1, NULL, def, flags, lo, hi, help}
#define KL(T, path, field, def, flags, lo, hi, help) {path, TW_CFG_I64, offsetof(T, field), 1, NULL, def, flags, lo, hi, help}
#define KF(T, path, field, def, flags, lo, hi, help) {path, TW_CFG_FLOAT, offsetof(T, field), 1, NULL, def, flags, lo, hi, help}
#define KB(T, path, field, def, help) {path, TW_CFG_BOOL, offsetof(T, field), 1, NULL, def, 0, 0, 0, help}
#define KS(T, path, field, def, flags, help) {path, TW_CFG_STRING, offsetof(T, field), 1, NULL, def, flags, 0, 0, help}
#define KE(T, path, field, names, def, help) {path, TW_CFG_ENUM, offsetof(T, field), 1, names, def, 0, 0, 0, help}
#define KP(T, path, field, def, help) KF(T, path, field, def, GE | LE, 0, 1, help)   /* a probability */
#define COUNT(a) ((int)(sizeof a / sizeof a[0]))

const char *const tw_cfg_split_names[] = {"train", "val", "test", "clouds", NULL};
const char *const tw_cfg_source_names[] = {"s1", "s2", "s1+s2", NULL};
static const char *const bands_names[] = {"rgb", "all", NULL};
static const char *const views_names[] = {"augment", "seasonal", "cross", NULL};
static const char *const optim_names[] = {"adam", "adamw", "lars", "sgd", NULL};
static const char *const sched_names[] = {"cosine", "constant", NULL};
static const char *const device_names[] = {"cpu", "cuda", NULL};
static const char *const precision_names[] = {"auto", "fp32", "bf16", NULL};
static const char *const comm_names[] = {"auto", "single", "mpi", "nccl", NULL};
static const char *const graph_names[] = {"auto", "on", "off", NULL};

#define R tw_run_cfg
const tw_cfg_key tw_cfg_run_keys[] = {
    KS(R, "run.name", name, "pretrain", 0, "run name; outputs go to run.out_dir/run.name/"),
    KS(R, "run.out_dir", out_dir, "runs", 0, "directory holding the runs"),
    KL(R, "run.seed", seed, "0", GE, 0, 0, "seed of the sample order, augmentations and weights"),
    KS(R, "run.resume", resume, "auto", 0,
       "auto (the latest checkpoint of this run if any), never, or a checkpoint path"),
    KI(R, "run.log_every", log_every, "10", GE, 1, 0, "steps between log lines"),
    KI(R, "run.ckpt_every_steps", ckpt_every_steps, "1000", GE, 0, 0,
       "steps between checkpoints; 0: only at the end"),
    KL(R, "run.max_steps", max_steps, "null", GE | TW_CFG_NULLABLE, 0, 0,
       "stop after this many steps (the schedule still spans optim.epochs); null: run every epoch"),
};
const int tw_cfg_n_run_keys = COUNT(tw_cfg_run_keys);
#undef R

#define D tw_data_cfg
const tw_cfg_key tw_cfg_data_keys[] = {
    KS(D, "data.shards", shards, "\"\"", TW_CFG_REQUIRED, "directory of HDF5 shards <split>-<index>.h5"),
    KE(D, "data.split", split, tw_cfg_split_names, "train", "which split's shards to train on"),
    KE(D, "data.source", source, tw_cfg_source_names, "s2",
       "modality: s1 (SAR VV, VH), s2 (optical) or s1+s2 (both, for fusion)"),
    KE(D, "data.s2_bands", s2_bands, bands_names, "all", "S2 bands: rgb (B04, B03, B02) or all 12"),
    KI(D, "data.size", size, "120", GE | LE, 16, 1024, "side of the square views, pixels"),
    KI(D, "data.batch", batch, "256", GE | LE, 2, 1 << 20, "global batch: samples (pairs) per step over all ranks"),
    KI(D, "data.prefetch", prefetch, "2", GE | LE, 0, 64, "batches prepared ahead on each rank"),
    KF(D, "data.label_fraction", label_fraction, "1.0", GT | LE, 0, 1,
       "fraction of the split trained on: nested subsets (1% inside 5% inside ...), rare classes kept"),
    KL(D, "data.subset_seed", subset_seed, "0", GE, 0, 0,
       "seed of the label-fraction subsets (independent of run.seed, so seeds share the subset)"),
    KI(D, "data.classes", classes, "19", GE | LE, 19, 43, "label nomenclature: 19 (BigEarthNet-19) or 43 (v1)"),
    KE(D, "data.views", views, views_names, "augment",
       "pre-training pairs: augment (two augmentations of one acquisition), seasonal (two acquisitions of one "
       "location, each augmented; shards with a time axis) or cross (S1 with S2, as loss.pairing cross)"),
    KI(D, "data.max_open", max_open, "256", GE | LE, 1, 1 << 20,
       "shards a rank keeps open at once (about 1 MB each; a re-open costs about 1 ms): at least the split's shards"),
};
const int tw_cfg_n_data_keys = COUNT(tw_cfg_data_keys);
#undef D

#define O tw_optim_cfg
const tw_cfg_key tw_cfg_optim_keys[] = {
    KE(O, "optim.name", name, optim_names, "adam", "optimizer"),
    KF(O, "optim.lr", lr, "0.001", GT, 0, 0, "peak learning rate of the weights (after warm-up)"),
    KF(O, "optim.lr_bias_scale", lr_bias_scale, "1.0", GT, 0, 0,
       "1-D parameters (biases, BN) get lr * lr_bias_scale (official LARS recipe: 0.0048/0.2 = 0.024)"),
    KB(O, "optim.lr_batch_scale", lr_batch_scale, "false",
       "multiply lr by data.batch / 256, as the official recipe's base_lr"),
    KF(O, "optim.weight_decay", weight_decay, "0.0", GE, 0, 0,
       "weight decay (L2 for adam and sgd, decoupled for adamw); never on 1-D parameters for lars and sgd"),
    KF(O, "optim.momentum", momentum, "0.9", GE | LT, 0, 1, "momentum of lars and sgd"),
    KB(O, "optim.nesterov", nesterov, "false", "Nesterov momentum (sgd)"),
    {"optim.betas", TW_CFG_FLOATS, offsetof(O, betas), 2, NULL, "[0.9, 0.999]", GE | LT, 0, 1,
     "Adam's beta1, beta2"},
    KF(O, "optim.eps", eps, "1e-08", GT, 0, 0, "Adam's epsilon"),
    KF(O, "optim.eta", eta, "0.001", GT, 0, 0, "LARS trust coefficient"),
    KI(O, "optim.warmup_epochs", warmup_epochs, "10", GE, 0, 0, "epochs of linear warm-up from 0"),
    KI(O, "optim.epochs", epochs, "1000", GE, 1, 0, "epochs of the whole schedule"),
    KE(O, "optim.schedule", schedule, sched_names, "cosine",
       "after warm-up: cosine decay to lr * final_lr_ratio, or constant lr"),
    KF(O, "optim.final_lr_ratio", final_lr_ratio, "0.001", GE | LE, 0, 1,
       "end of the cosine decay as a fraction of lr (official recipe: 0.001)"),
};
const int tw_cfg_n_optim_keys = COUNT(tw_cfg_optim_keys);
#undef O

#define B tw_backend_cfg
const tw_cfg_key tw_cfg_backend_keys[] = {
    KE(B, "backend.device", device, device_names, "cpu", "compute device"),
    KE(B, "backend.precision", precision, precision_names, "auto",
       "auto: bf16 where the hardware computes it natively, else fp32"),
    KI(B, "backend.threads", threads, "0", GE | LE, 0, 1024, "CPU threads per rank; 0: cores / local ranks"),
    KE(B, "backend.comm", comm, comm_names, "auto",
       "communicator: auto (mpi when launched by mpirun or srun, nccl on cuda), single, mpi, nccl"),
    KI(B, "backend.bucket_kib", bucket_kib, "4096", GE | LE, 0, 1048576,
       "gradient all-reduce bucket in KiB, started while backward runs (docs/scaling.md); 0: one bucket"),
    KE(B, "backend.graph", graph, graph_names, "auto",
       "the training step recorded once as a CUDA graph and replayed: auto (on with cuda), on, off; "
       "the CPU runs it eagerly"),
};
const int tw_cfg_n_backend_keys = COUNT(tw_cfg_backend_keys);
#undef B

/* Per-view augmentation probabilities; the defaults follow Barlow Twins' asymmetric views
 * (facebookresearch/barlowtwins main.py Transform: blur 1.0 vs 0.1, solarize 0.0 vs 0.2), with
 * noise, speckle and band dropout standing in for solarisation on multispectral and SAR data. */
#define A tw_augment_cfg
#define AUG_VIEW(v, blur_p, rare_p)                                                              \
    KP(A, "augment." #v ".crop", v.crop, "1.0", "probability of a random resized crop"),         \
    KP(A, "augment." #v ".flip", v.flip, "0.5", "probability of each of the horizontal and vertical flips"), \
    KP(A, "augment." #v ".rot90", v.rot90, "0.5", "probability of a rotation by k*90 degrees, k uniform in 1..3"), \
    KP(A, "augment." #v ".jitter", v.jitter, "0.8", "probability of brightness/contrast jitter"), \
    KP(A, "augment." #v ".blur", v.blur, blur_p, "probability of a Gaussian blur"),              \
    KP(A, "augment." #v ".noise", v.noise, rare_p, "probability of additive Gaussian noise"),    \
    KP(A, "augment." #v ".speckle", v.speckle, rare_p, "probability of multiplicative speckle"), \
    KP(A, "augment." #v ".band_dropout", v.band_dropout, rare_p, "probability of band dropout")
const tw_cfg_key tw_cfg_augment_keys[] = {
    AUG_VIEW(view1, "1.0", "0.0"),
    AUG_VIEW(view2, "0.1", "0.2"),
    KF(A, "augment.crop_min_scale", crop_min_scale, "0.08", GT | LE, 0, 1,
       "smallest crop area as a fraction of the image (RandomResizedCrop scale[0])"),
    KF(A, "augment.jitter_brightness", jitter_brightness, "0.4", GE, 0, 0,
       "brightness shift uniform in [-b, b], in per-band std units"),
    KF(A, "augment.jitter_contrast", jitter_contrast, "0.4", GE | LT, 0, 1,
       "contrast factor uniform in [1 - c, 1 + c]"),
    KF(A, "augment.blur_sigma_min", blur_sigma_min, "0.1", GT, 0, 0, "smallest blur sigma, pixels"),
    KF(A, "augment.blur_sigma_max", blur_sigma_max, "2.0", GT, 0, 0, "largest blur sigma, pixels"),
    KF(A, "augment.noise_std", noise_std, "0.1", GE, 0, 0, "std of the additive noise, per-band std units"),
    KI(A, "augment.speckle_looks", speckle_looks, "4", GE | LE, 1, 1000,
       "equivalent number of looks L: speckle ~ Gamma(L, 1/L)"),
    KF(A, "augment.band_dropout_frac", band_dropout_frac, "0.25", GT | LT, 0, 1,
       "fraction of the bands zeroed by band dropout (at least one band stays)"),
};
const int tw_cfg_n_augment_keys = COUNT(tw_cfg_augment_keys);
#undef A

const char *tw_cfg_sections_check(const tw_data_cfg *data, const tw_optim_cfg *optim,
                                  const tw_augment_cfg *augment, char *why, size_t n_why) {
    if (optim->warmup_epochs >= optim->epochs) {
        snprintf(why, n_why, "must be below optim.epochs (%d), got %d", optim->epochs, optim->warmup_epochs);
        return "optim.warmup_epochs";
    }
    if (augment->blur_sigma_min > augment->blur_sigma_max) {
        snprintf(why, n_why, "must be >= augment.blur_sigma_min (%g), got %g", augment->blur_sigma_min,
                 augment->blur_sigma_max);
        return "augment.blur_sigma_max";
    }
    if (data->classes != 19 && data->classes != 43) {
        snprintf(why, n_why, "must be 19 (BigEarthNet-19) or 43 (the v1 nomenclature), got %d", data->classes);
        return "data.classes";
    }
    return NULL;
}
