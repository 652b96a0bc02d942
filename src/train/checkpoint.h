/* Checkpoints of any task: its parameters, BN buffers and counters under torch's names (loadable
 * by safetensors.torch), the optimizer's moments, and in the header's metadata the task and its
 * sources, the step, the loader's position, the seed (all randomness is Philox keyed by it: the
 * RNG state), the best validation score so far, the configuration as YAML and a checksum of the
 * whole state and of that metadata. Writing is atomic (core/atomic_file.h); rank 0 writes and every rank reads. */
#ifndef TW_CHECKPOINT_H
#define TW_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/params.h"
#include "optim/optim.h"

#define TW_CKPT_FORMAT "twinfuse-checkpoint/3"
/* Format 2: the same, but its checksum covers the tensors only; still read (docs/pretrain.md). */
#define TW_CKPT_FORMAT_2 "twinfuse-checkpoint/2"
/* What pre-training wrote before tasks had names; read as task barlow-twins. */
#define TW_CKPT_FORMAT_PRETRAIN_1 "twinfuse-pretrain/1"

typedef struct tw_ckpt_state {
    int64_t step;                       /* optimizer steps done */
    int64_t loader_epoch, loader_step;  /* the batch the next step reads */
    uint64_t seed;
    double loss;                        /* the loss of the last step before the checkpoint */
    double best_score;                  /* the best validation score so far; -1: none yet */
    int64_t best_step;                  /* the step it was reached at */
} tw_ckpt_state;

/* What a checkpoint holds: the task's arena, the optimizer (NULL: weights only, e.g.
 * best.safetensors), the task's name ("barlow-twins", "classification") and sources ("s2", ...). */
typedef struct tw_ckpt_content {
    tw_params *P;
    tw_optim *optim;
    const char *task, *sources;
} tw_ckpt_content;

/* Writes path (rank 0's job). config_yaml: the effective configuration. */
tw_status tw_ckpt_save(const char *path, const tw_ckpt_content *c, const tw_ckpt_state *s,
                       const char *config_yaml, tw_err *err);
/* Loads path into c->P (parameters, buffers, counters), c->optim (its moments and step count;
 * NULL: the file's optimizer state is only checked) and s; the file's task and sources must be
 * c's. The checksum is checked; any mismatch is a status naming the file and what is wrong. */
tw_status tw_ckpt_load(const char *path, const tw_ckpt_content *c, tw_ckpt_state *s, tw_err *err);

/* A checkpoint's task and sources without loading it (for `twinfuse evaluate`), and its
 * configuration text (malloc'd; free it). */
typedef struct tw_ckpt_info {
    char task[32], sources[16];
    char *config;
    int64_t step;
} tw_ckpt_info;
tw_status tw_ckpt_info_read(tw_ckpt_info *out, const char *path, tw_err *err);
void tw_ckpt_info_free(tw_ckpt_info *i);

/* "<dir>/ckpt-<step, 8 digits>.safetensors" */
void tw_ckpt_path(char *buf, size_t n_bytes, const char *dir, int64_t step);
/* The checkpoints in dir, newest (highest step) first; *paths is malloc'd, free with
 * tw_ckpt_list_free. Returns how many (0 when dir has none or does not exist). */
int tw_ckpt_list(char ***paths, const char *dir);
void tw_ckpt_list_free(char **paths, int n);
/* Removes the temporary files of checkpoint writes that never finished (a process killed while
 * writing: "ckpt-<step>.safetensors.tmp.XXXXXX", core/atomic_file.h). Rank 0, before a run starts
 * writing. Returns how many. */
int tw_ckpt_torn_remove(const char *dir);

#endif
