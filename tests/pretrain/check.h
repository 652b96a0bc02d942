/* Helpers shared by the pretrain tests: read a reference tensor from a safetensors file written by
 * a PyTorch script, compare arrays and print the worst errors, make the communicator a test asks
 * for ("single" or "mpi"). */
#ifndef TW_TEST_CHECK_H
#define TW_TEST_CHECK_H

#include <stddef.h>

#include "core/safetensors.h"
#include "dist/comm.h"

/* malloc'd host copy of the F32 tensor `name`; exits 1 with a message when it is missing. */
float *check_read(tw_st_file *f, const char *name, size_t *n_elems);
/* Max abs error over max |want| <= tol (a norm-relative bound, so tiny entries do not dominate).
 * Prints one line with the errors and the first mismatches; returns 1 when it passes. */
int check_close(const char *what, const float *got, const float *want, size_t n, double tol);
/* ||got - want||₂ / ||want||₂ <= tol, for tensors whose small entries carry rounding noise (an
 * Adam step turns a gradient of the noise's size into a full step). Returns 1 when it passes. */
int check_close_l2(const char *what, const float *got, const float *want, size_t n, double tol);
/* kind "single" or "mpi"; exits 77 when MPI was asked for and this build has none. */
tw_comm *check_comm(const char *kind, int *argc, char ***argv);

#endif
