/* The comparisons every C test trusts (check.h), checked on cases whose verdict is known: within
 * and just outside each bound, NaN and Inf against finite values, NaN against NaN, an all-zero
 * reference. usage: test_check; exit 0 pass, 1 fail. */
#include <math.h>

#include "check.h"

int main(void) {
    const float want[4] = {1.0f, -2.0f, 0.5f, 0.0f};
    float got[4] = {1.0f, -2.0f, 0.5f, 0.0f};
    CHECK(check_close("equal", got, want, 4, 0.0), "equal arrays fail at tol 0");
    got[1] = -2.0f + 0.019f;   /* 0.0095 of max |want| = 2 */
    CHECK(check_close("within 1e-2 of the scale", got, want, 4, 1e-2), "an error of 0.95%% fails at 1%%");
    CHECK(!check_close("outside 5e-3 of the scale", got, want, 4, 5e-3), "an error of 0.95%% passes at 0.5%%");
    CHECK(check_close_tol("atol 0.02", got, want, 4, 0.02, 0.0), "0.019 fails atol 0.02");
    CHECK(!check_close_tol("atol 0.01", got, want, 4, 0.01, 0.0), "0.019 passes atol 0.01");
    CHECK(check_close_l2("l2 within 1e-2", got, want, 4, 1e-2), "l2 error 0.0083 fails 1e-2");
    CHECK(!check_close_l2("l2 outside 5e-3", got, want, 4, 5e-3), "l2 error 0.0083 passes 5e-3");
    got[1] = want[1];
    got[2] = NAN;
    CHECK(!check_close("NaN against a value", got, want, 4, 1.0), "a NaN passes check_close");
    CHECK(!check_close_tol("NaN against a value", got, want, 4, 1e9, 1e9), "a NaN passes check_close_tol");
    CHECK(!check_close_l2("NaN against a value", got, want, 4, 1e9), "a NaN passes check_close_l2");
    got[2] = INFINITY;
    CHECK(!check_close("Inf against a value", got, want, 4, 1e9), "an Inf passes check_close");
    const double nan_d[2] = {NAN, 1.0};
    CHECK(check_close_tol_d("NaN where NaN is wanted", nan_d, nan_d, 2, 0.0, 0.0),
          "NaN against NaN fails (the reference has it too)");
    const float zero[3] = {0}, small[3] = {1e-7f, 0, 0};
    CHECK(check_close("all-zero reference, tol absolute", small, zero, 3, 1e-6),
          "1e-7 against zeros fails at 1e-6");
    CHECK(!check_close("all-zero reference, tol absolute", small, zero, 3, 1e-8),
          "1e-7 against zeros passes at 1e-8");
    printf("%s test_check\n", check_n_fail ? "FAIL" : "PASS");
    return check_exit_code();
}
