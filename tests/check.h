/* The C tests' one set of checks (library tw_test_check, tests/check.c): exit codes, CHECK and a
 * failure count, comparisons of host arrays that print the worst errors, reference tensors read
 * from a safetensors file that a PyTorch script wrote, and the communicator a test asks for.
 * Backend-specific fixtures (layout packing, the backend under test) are tests/backend/tb.h. */
#ifndef TW_TESTS_CHECK_H
#define TW_TESTS_CHECK_H

#include <stddef.h>
#include <stdio.h>

#include "core/log.h"
#include "core/safetensors.h"
#include "dist/comm.h"

/* Exit codes (CTest SKIP_RETURN_CODE 77): never print a failure and exit 0. */
enum { TW_TEST_PASS = 0, TW_TEST_FAIL = 1, TW_TEST_SKIP = 77 };

/* Failures counted so far by CHECK and CHECK_SAY (the whole program's). */
extern int check_n_fail;
/* TW_TEST_FAIL when a CHECK failed, else TW_TEST_PASS. */
int check_exit_code(void);

/* When cond is false: counts a failure and prints FAIL [rank] file:line, the condition and a
 * printf message to stderr. Silent when it holds. */
#define CHECK(cond, ...)                                                                    \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            check_n_fail++;                                                                 \
            fprintf(stderr, "FAIL [rank %d] %s:%d: %s: ", tw_log_rank(), __FILE__, __LINE__, \
                    #cond);                                                                 \
            fprintf(stderr, __VA_ARGS__);                                                   \
            fputc('\n', stderr);                                                            \
        }                                                                                   \
    } while (0)
/* The same, but says the message on stdout either way ("  ok  " or "  FAIL"), for tests whose
 * log lists every check. */
#define CHECK_SAY(cond, ...)                                                                \
    do {                                                                                    \
        int ok_ = (cond);                                                                   \
        printf("%s ", ok_ ? "  ok  " : "  FAIL");                                           \
        printf(__VA_ARGS__);                                                                \
        printf("\n");                                                                       \
        if (!ok_) check_n_fail++;                                                           \
    } while (0)

/* The comparisons print one line each (PASS/FAIL, the errors, the worst and first mismatches)
 * and return 1 when they pass; they do not count (the caller decides what a mismatch means).
 * Non-finite values fail unless want has NaN in the same place. */

/* max |got - want| <= atol + rtol max |want|. */
int check_close_tol(const char *what, const float *got, const float *want, size_t n, double atol,
                    double rtol);
int check_close_tol_d(const char *what, const double *got, const double *want, size_t n,
                      double atol, double rtol);
/* max |got - want| <= tol max |want| (tol alone when want is all 0): a bound relative to the
 * tensor's scale, so that the entries near 0 every gradient has do not dominate. */
int check_close(const char *what, const float *got, const float *want, size_t n, double tol);
/* ||got - want||₂ <= tol ||want||₂, for tensors whose small entries carry rounding noise (an Adam
 * step turns a gradient of the noise's size into a full step). */
int check_close_l2(const char *what, const float *got, const float *want, size_t n, double tol);

/* A malloc'd host copy of the F32 tensor `name` of f; exits TW_TEST_FAIL with a message naming
 * the file and the tensor when it is missing or unreadable. */
float *check_read_f32(tw_st_file *f, const char *name, size_t *n_elems);

/* kind "single" or "mpi"; exits TW_TEST_SKIP when MPI was asked for and this build has none,
 * TW_TEST_FAIL on any other failure. */
tw_comm *check_comm(const char *kind, int *argc, char ***argv);

#endif
