"""Reference for train.monitor: fixed embeddings and the health figures numpy gives (normalised
per-dimension std, the cross-correlation's two terms, effective rank, rank-k matrices with equal
singular values), weighted-kNN mAP from scikit-learn's KNeighborsClassifier with the same weighting,
and the linear probe's mAP from scikit-learn's LogisticRegression on the same standardised features.
Writes a text file test_monitor.c reads: per case a line `KIND NAME dims...`, the inputs, then the
expected figures."""
import sys
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

K_NN, T_NN, L2 = 20, 0.07, 1e-3


def put(f, a):
    f.write(" ".join("%.9g" % v for v in np.asarray(a, np.float32).ravel()) + "\n")


def maps(y, s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return average_precision_score(y, s, average="macro"), average_precision_score(y, s, average="micro")


def labels(rng, n, k, centres_assign):
    # Labels that depend on the features' cluster, so that neighbours carry information.
    p = rng.uniform(0.05, 0.5, (centres_assign.max() + 1, k))
    return (rng.random((n, k)) < p[centres_assign]).astype(np.float32)


def clustered(rng, n, d, n_clusters, spread, centres=None):
    if centres is None:
        centres = rng.normal(size=(n_clusters, d))
    a = rng.integers(0, n_clusters, n)
    return (centres[a] + spread * rng.normal(size=(n, d))).astype(np.float32), a, centres


def main(path):
    rng = np.random.default_rng(23)
    with open(path, "w") as f:
        # Normalised per-dimension std: healthy, anisotropic, one dead dimension, collapsed.
        for name, x in [("gauss", rng.normal(size=(96, 40))),
                        ("aniso", rng.normal(size=(64, 33)) * np.linspace(0.01, 3, 33)),
                        ("dead", np.c_[rng.normal(size=(50, 20)), np.full((50, 4), 2.0)]),
                        ("collapsed", np.tile(rng.normal(size=(1, 16)), (32, 1)))]:
            x = x.astype(np.float32)
            u = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
            sd = u.std(0) * np.sqrt(x.shape[1])
            f.write("std %s %d %d\n" % (name, *x.shape))
            put(f, x)
            f.write("%.17g %.17g %.17g\n" % (sd.mean(), sd.min(), (sd < 0.1).mean()))
        # The cross-correlation of two batch-normalised views.
        n, d = 128, 24
        z1 = rng.normal(size=(n, d))
        z2 = z1 + 0.5 * rng.normal(size=(n, d))
        bn = lambda z: (z - z.mean(0)) / z.std(0)
        c = (bn(z1).T @ bn(z2) / n).astype(np.float32)
        c64 = c.astype(np.float64)
        f.write("xcorr c %d\n" % d)
        put(f, c)
        f.write("%.17g %.17g\n" % (np.diag(c64).mean(), np.abs(c64[~np.eye(d, dtype=bool)]).mean()))
        # Effective rank: random, and rank-k with k equal singular values (exactly k).
        def erank(x):
            s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
            s = s[s > 1e-6 * s.max()]
            p = s / s.sum()
            return float(np.exp(-(p * np.log(p)).sum()))
        cases = [("random_wide", rng.normal(size=(40, 100))), ("random_tall", rng.normal(size=(120, 30))),
                 ("decaying", rng.normal(size=(64, 48)) * np.exp(-np.arange(48) / 6.0))]
        for r, (n, d) in [(1, (50, 32)), (3, (64, 128)), (7, (200, 40)), (16, (96, 64))]:
            u, _ = np.linalg.qr(rng.normal(size=(n, r)))
            v, _ = np.linalg.qr(rng.normal(size=(d, r)))
            cases.append(("rank%d" % r, 2.5 * u @ v.T))
        for name, x in cases:
            x = x.astype(np.float32)
            want = erank(x)
            if name.startswith("rank"):
                want = float(int(name[4:]))   # the definition's value, not numpy's
            f.write("erank %s %d %d\n" % (name, *x.shape))
            put(f, x)
            f.write("%.17g\n" % want)
        # Weighted kNN against scikit-learn.
        for name, n_mem, n_q, d, k in [("knn19", 600, 200, 64, 19), ("knn_small", 30, 25, 16, 5)]:
            mem, am, centres = clustered(rng, n_mem, d, 8, 1.5)
            q, aq, _ = clustered(rng, n_q, d, 8, 1.5, centres)
            ym = labels(rng, n_mem, k, am)
            yq = labels(rng, n_q, k, aq)
            ym[:, k - 1] = 0   # a class the memory never has: score 0 everywhere
            clf = KNeighborsClassifier(n_neighbors=min(K_NN, n_mem), metric="cosine", algorithm="brute",
                                       weights=lambda dist: np.exp(-dist / T_NN))
            clf.fit(mem, ym)
            proba = clf.predict_proba(q)
            s = np.zeros((n_q, k))
            for j in range(k):
                cls = list(clf.classes_[j])
                s[:, j] = proba[j][:, cls.index(1.0)] if 1.0 in cls else 0.0
            f.write("knn %s %d %d %d %d %d %.17g\n" % (name, n_mem, n_q, d, k, K_NN, T_NN))
            for a in (mem, ym, q, yq):
                put(f, a)
            put(f, s)
            f.write("%.17g %.17g\n" % maps(yq, s))
        # Linear probe against scikit-learn's LogisticRegression, one class at a time.
        for name, n_tr, n_te, d, k in [("linear19", 500, 300, 48, 19), ("linear_few", 24, 200, 32, 6)]:
            xtr, atr, centres = clustered(rng, n_tr, d, 6, 2.0)
            xte, ate, _ = clustered(rng, n_te, d, 6, 2.0, centres)
            xtr[:, 3] = 1.5   # a constant feature: centred only
            ytr = labels(rng, n_tr, k, atr)
            yte = labels(rng, n_te, k, ate)
            ytr[0, :] = 1
            ytr[1, :] = 0   # every class has both
            sc = StandardScaler().fit(xtr)
            s = np.zeros((n_te, k))
            for j in range(k):
                lr = LogisticRegression(C=1.0 / (L2 * n_tr), tol=1e-10, max_iter=100000)
                lr.fit(sc.transform(xtr), ytr[:, j])
                s[:, j] = lr.decision_function(sc.transform(xte))
            f.write("linear %s %d %d %d %d %.17g\n" % (name, n_tr, n_te, d, k, L2))
            for a in (xtr, ytr, xte, yte):
                put(f, a)
            put(f, s)
            f.write("%.17g %.17g\n" % maps(yte, s))


if __name__ == "__main__":
    main(sys.argv[1])
