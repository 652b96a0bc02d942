/* Pre-training checkpoints: the model's parameters, BN buffers and counters under torch's names
 * (loadable by safetensors.torch), the optimizer's moments, and in the header's metadata the
 * step, the loader's position, the seed (all randomness is Philox keyed by it: the RNG state),
 * the configuration as YAML and a checksum of the whole state. Writing is atomic (tmp, fsync,
 * rename: core/safetensors.c); rank 0 writes and every rank reads. */
#ifndef TW_CHECKPOINT_H
#define TW_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "train/bt_model.h"

#define TW_CKPT_FORMAT "twinfuse-pretrain/1"

typedef struct tw_ckpt_state {
    int64_t step;                       /* optimizer steps done */
    int64_t loader_epoch, loader_step;  /* the batch the next step reads */
    uint64_t seed;
    double loss;                        /* the loss of the last step before the checkpoint */
} tw_ckpt_state;

/* Writes path (rank 0's job). config_yaml: the effective configuration. */
tw_status tw_ckpt_save(const char *path, tw_bt_model *m, const tw_ckpt_state *s,
                       const char *config_yaml, tw_err *err);
/* Loads path into m (parameters, buffers, counters, optimizer state and its step count) and s,
 * and checks the checksum; any mismatch is a status naming the file and what is wrong. */
tw_status tw_ckpt_load(const char *path, tw_bt_model *m, tw_ckpt_state *s, tw_err *err);

/* "<dir>/ckpt-<step, 8 digits>.safetensors" */
void tw_ckpt_path(char *buf, size_t n_bytes, const char *dir, int64_t step);
/* The checkpoints in dir, newest (highest step) first; *paths is malloc'd, free with
 * tw_ckpt_list_free. Returns how many (0 when dir has none or does not exist). */
int tw_ckpt_list(char ***paths, const char *dir);
void tw_ckpt_list_free(char **paths, int n);

#endif
