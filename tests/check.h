/* The C tests' CHECK: when cond is false, prints FAIL with file:line, the condition and a printf
 * message to stderr and counts it in n_fail; a test ends non-zero when n_fail > 0. Header-only:
 * each test program includes it once. */
#ifndef TW_TESTS_CHECK_H
#define TW_TESTS_CHECK_H

#include <stdio.h>

static int n_fail = 0;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            n_fail++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

#endif
