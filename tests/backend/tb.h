/* Fixtures shared by the backend tests: the backend under test, host-side packing of NCHW data
 * into each layout (written independently of the backend, so that tw_reorder is tested rather
 * than trusted), and the reader for the reference files that tests/backend/ref_ops.py writes.
 * The checks and exit codes are tests/check.h's. */
#ifndef TW_TB_H
#define TW_TB_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "check.h"
#include "core/rng.h"

/* The backend at precision prec; exits 77 with a message when bf16 is asked for on a CPU
 * without native bf16, 1 on any other failure. */
tw_backend *tb_backend(tw_precision prec);

/* Uniform values in [-scale, scale). */
void tb_fill(tw_rng *r, float *x, size_t n, float scale);
float *tb_alloc_rand(tw_rng *r, size_t n, float scale);

/* Element index of logical (n, c, h, w) in t's layout. */
size_t tb_offset(const tw_tensor *t, int n, int c, int h, int w);
/* A zeroed backend tensor. */
tw_tensor tb_tensor(tw_backend *be, int n, int c, int h, int w, tw_dtype dt, tw_layout l);
void tb_tensor_free(tw_backend *be, tw_tensor *t);
/* Host NCHW f32 -> t (rounded to bf16 where t is bf16); padding channels set to zero. */
void tb_put(tw_backend *be, tw_tensor *t, const float *nchw);
/* t -> host NCHW f32. */
void tb_get(tw_backend *be, float *nchw, const tw_tensor *t);
/* 1 when every padding channel of a blocked t is zero. */
int tb_pad_zero(tw_backend *be, const tw_tensor *t);
/* Round each value to bf16 and back (what a bf16 tensor holds). */
void tb_round_bf16(float *x, size_t n);

/* Reference file: records of [u32 name length][name][u64 n][n f32], written by ref_ops.py. */
typedef struct tb_ref tb_ref;
tb_ref *tb_ref_open(const char *path);   /* exits 1 with a message when it cannot */
/* The record `name` (exits 1 when it is missing or when want_n != 0 and its size differs). */
const float *tb_ref_get(tb_ref *r, const char *name, size_t want_n);
void tb_ref_close(tb_ref *r);

#endif
