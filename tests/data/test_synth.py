#!/usr/bin/env python3
"""`twinfuse synth`: determinism (the same seed gives the same bytes with 1 or 2 threads, another
seed does not), the shard contract read through h5py (check_convert.check_attrs_and_norm: dtypes,
per-sample chunks, names, the normalisation against numpy), clouds on S2 only in the clouds
split, and the design promise of docs/synth.md: S1-only and S2-only linear probes each miss the
classes only the other sensor separates, and fusion beats both.

usage: test_synth.py TWINFUSE"""
import glob
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import check_convert  # noqa: E402
from twtest import failures, require  # noqa: E402



def synth(twinfuse, out, seed, threads, train=2000, test=1000, clouds=200, size=32):
    subprocess.run([twinfuse, "synth", "--out", out, "--seed", str(seed), "--size", str(size), "--train", str(train),
                    "--val", "50", "--test", str(test), "--clouds", str(clouds), "--shard-size", "700",
                    "--threads", str(threads)], check=True, stdout=subprocess.DEVNULL)


def read_all(d, split):
    out = {k: [] for k in ("s1", "s2", "labels", "flags", "name")}
    for p in sorted(glob.glob(os.path.join(d, f"{split}-*.h5"))):
        with h5py.File(p) as f:
            for k in out:
                out[k].append(f[k][:])
    return {k: np.concatenate(v) for k, v in out.items()}


def probe(train_x, train_y, test_x, test_y):
    """Per-class logistic regression on per-patch band means and stds: average precision."""
    m, s = train_x.mean(0), train_x.std(0) + 1e-9
    a, b = (train_x - m) / s, (test_x - m) / s
    ap = np.full(19, np.nan)
    for c in range(19):
        if train_y[:, c].min() == train_y[:, c].max() or test_y[:, c].sum() == 0:
            continue
        clf = LogisticRegression(max_iter=2000, C=10).fit(a, train_y[:, c])
        ap[c] = average_precision_score(test_y[:, c], clf.decision_function(b))
    return ap


def feats(x):
    x = x.astype(np.float64)
    return np.concatenate([x.mean((2, 3)), x.std((2, 3))], 1)


def main():
    twinfuse = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="tw_synth_")
    a, b, c = (os.path.join(tmp, n) for n in "abc")
    synth(twinfuse, a, 5, 1)
    synth(twinfuse, b, 5, 2)
    synth(twinfuse, c, 6, 2, train=100, test=10, clouds=10)
    for split in ("train", "val", "test", "clouds"):
        x, y = read_all(a, split), read_all(b, split)
        require(all(np.array_equal(x[k], y[k]) for k in x), f"{split}: 1 and 2 threads differ")
    x, z = read_all(a, "train"), read_all(c, "train")
    require(not np.array_equal(x["s2"][:100], z["s2"]), "seed 6 equals seed 5")

    check_convert.check_attrs_and_norm(a)
    require(not check_convert.failures, f"shard contract: {check_convert.failures[:3]}")

    tr, te, cl = read_all(a, "train"), read_all(a, "test"), read_all(a, "clouds")
    require((tr["flags"] == 0).all() and (te["flags"] == 0).all() and (cl["flags"] == 1).all(), "cloud flags")
    bright = lambda d: float((d["s2"][:, 1] > 2500).mean())   # B02 brighter than any land cover
    require(bright(cl) > 0.01 and bright(tr) < 0.001, f"cloud cover: clouds {bright(cl):.3f}, train {bright(tr):.4f}")
    s1_tr, s1_cl = tr["s1"].mean((0, 2, 3)), cl["s1"].mean((0, 2, 3))
    require(np.abs(s1_tr - s1_cl).max() < 1.5, f"S1 under clouds: mean {s1_cl} vs {s1_tr} dB")
    require(all(tr["labels"].sum(1) >= 1), "a patch without labels")

    ap1 = probe(feats(tr["s1"]), tr["labels"], feats(te["s1"]), te["labels"])
    ap2 = probe(feats(tr["s2"]), tr["labels"], feats(te["s2"]), te["labels"])
    ap12 = probe(np.concatenate([feats(tr["s1"]), feats(tr["s2"])], 1), tr["labels"],
                 np.concatenate([feats(te["s1"]), feats(te["s2"])], 1), te["labels"])
    m1, m2, m12 = np.nanmean(ap1), np.nanmean(ap2), np.nanmean(ap12)
    print(f"linear probe mAP: S1 {m1:.3f}  S2 {m2:.3f}  S1+S2 {m12:.3f}")
    require(m12 > max(m1, m2) + 0.05, "fusion does not beat both sensors")
    np.set_printoptions(precision=2)
    print(f"per-class AP  S1 {ap1}\n              S2 {ap2}\n           S1+S2 {ap12}")
    # S2 twins (1 of 0, 10 of 8, 18 of 17): S2 alone cannot tell them apart, S1 adds it.
    for k in (1, 10, 18):
        require(ap12[k] > ap2[k] + 0.1, f"class {k}: S1+S2 AP {ap12[k]:.2f} not above S2 AP {ap2[k]:.2f}")
    # S1 twins (4 of 2, 13 of 9, 14 of 11): S1 alone cannot tell them apart, S2 adds it.
    for k in (4, 13, 14):
        require(ap12[k] > ap1[k] + 0.1, f"class {k}: S1+S2 AP {ap12[k]:.2f} not above S1 AP {ap1[k]:.2f}")
    subprocess.run(["rm", "-rf", tmp], check=False)
    if failures:
        print(f"test_synth: {len(failures)} failures")
        return 1
    print("test_synth: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
