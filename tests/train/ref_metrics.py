"""Reference for train.metrics: random and adversarial multi-label cases with scikit-learn's
average_precision_score (per class, macro, micro) and f1_score at 0.5 (logit >= 0), written as a
text file that test_metrics.c reads: per case a line `case NAME N K`, N*K scores (%.9g, exact
f32), N*K labels, then K per-class APs, mAP macro, mAP micro, K per-class F1, F1 macro, F1 micro."""
import sys
import warnings

import numpy as np
from sklearn.metrics import average_precision_score, f1_score


def cases(rng):
    def lab(n, k, p=None):
        p = rng.uniform(0.02, 0.6, k) if p is None else p
        return (rng.random((n, k)) < p).astype(np.float32)

    n, k = 2000, 19
    yield "random19", rng.normal(size=(n, k)).astype(np.float32), lab(n, k)
    n, k = 1500, 43
    yield "random43", (rng.normal(size=(n, k)) * 3).astype(np.float32), lab(n, k)
    n, k = 3000, 19
    y = lab(n, k)
    yield "heavy_ties", np.round(rng.normal(size=(n, k)) + 0.8 * y, 1).astype(np.float32), y
    s = rng.integers(-2, 3, size=(n, k)).astype(np.float32)   # five values, exact 0 among them
    yield "five_values", s, lab(n, k)
    n, k = 500, 19
    y = lab(n, k)
    y[:, 3] = 0      # no positives
    y[:, 7] = 1      # all positive
    y[:, 11] = 0
    y[17, 11] = 1    # one positive
    yield "no_pos_all_pos", rng.normal(size=(n, k)).astype(np.float32), y
    k = 19
    y1 = np.zeros((1, k), np.float32)
    y1[0, [0, 5, 9]] = 1
    yield "one_sample", rng.normal(size=(1, k)).astype(np.float32), y1
    yield "one_sample_no_pos", rng.normal(size=(1, k)).astype(np.float32), np.zeros((1, k), np.float32)
    n, k = 200, 5
    yield "all_equal", np.full((n, k), 0.25, np.float32), lab(n, k)
    yield "all_equal_zero", np.zeros((n, k), np.float32), lab(n, k)
    yield "no_pos_at_all", rng.normal(size=(10, 3)).astype(np.float32), np.zeros((10, 3), np.float32)
    s = rng.normal(size=(n, k)).astype(np.float32) * 1e-3
    s[::7] = 0.0
    s[::11] = -0.0
    yield "near_zero", s, lab(n, k)
    y = lab(n, k)
    yield "perfect", (y * 2 - 1 + rng.normal(size=(n, k)) * 0.1).astype(np.float32), y
    yield "inverted", (1 - 2 * y).astype(np.float32), y


def main():
    rng = np.random.default_rng(20261201)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, s, y in cases(rng):
            n, k = s.shape
            yi = y.astype(int)
            ap = average_precision_score(yi, s, average=None)
            mac = average_precision_score(yi, s, average="macro")
            mic = average_precision_score(yi, s, average="micro")
            pred = (s >= 0).astype(int)
            f1 = f1_score(yi, pred, average=None)
            f1mac = f1_score(yi, pred, average="macro")
            f1mic = f1_score(yi, pred, average="micro")
            out.append(f"case {name} {n} {k}")
            out.append(" ".join(f"{v:.9g}" for v in s.ravel()))
            out.append(" ".join(str(v) for v in yi.ravel()))
            out.append(" ".join(f"{v:.17g}" for v in list(ap) + [mac, mic] + list(f1) + [f1mac, f1mic]))
    with open(sys.argv[1], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
