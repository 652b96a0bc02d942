"""End-to-end `twinfuse probe` on a short pre-training's checkpoint (synthetic shards, CPU):
1. the JSON has every method x fraction x split, and its fraction-1 kNN mAP equals scikit-learn's
   KNeighborsClassifier (cosine, weights exp(-dist / T)) and its linear-probe mAP is within 0.005
   of LogisticRegression (C = 1 / (l2 n), standardised features) on the features `twinfuse embed`
   writes of the same checkpoint;
2. model.init=scratch probes a random backbone (another result, "init": "scratch"); the
   checkpoint's backbone exported (torchvision names) and probed as weights:FILE scores the same;
3. with MPIRUN given, 2 ranks give the same kNN and linear mAP as 1;
4. bad input: a missing checkpoint and a bad --fractions exit non-zero with a message.
usage: run_probe.py TWINFUSE CONFIG WORK_DIR [MPIRUN]"""
import json
import os
import shutil
import subprocess
import sys
import warnings

import h5py
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import check, failures  # noqa: E402

TWINFUSE, CONFIG, WORK = sys.argv[1:4]
MPIRUN = sys.argv[4] if len(sys.argv) > 4 else None
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args, expect=0, ranks=1):
    cmd = [TWINFUSE, *args]
    if ranks > 1:
        cmd = [MPIRUN, "--oversubscribe", "-np", str(ranks), "-x", "OMP_NUM_THREADS=1", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if (p.returncode == 0) != (expect == 0):
        print(p.stdout[-3000:], p.stderr[-3000:])
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}, want {expect}")
    return p


def results(path):
    with open(path) as f:
        doc = json.load(f)
    return doc, {(r["method"], r["label_fraction"], r["split"]): r for r in doc["results"]}


shutil.rmtree(WORK, ignore_errors=True)
shards = os.path.join(WORK, "synth")
os.makedirs(shards)
run("synth", "--out", shards, "--size", "32", "--train", "120", "--val", "48", "--test", "40", "--clouds", "0",
    "--shard-size", "64", "--seed", "7")
run("pretrain", CONFIG, f"data.shards={shards}", f"run.out_dir={WORK}", "run.name=pt", "data.size=32",
    "data.batch=8", "model.projector_dim=64", "run.max_steps=3", "run.ckpt_every_steps=3", "backend.threads=1")
ckpt = os.path.join(WORK, "pt", "ckpt-00000003.safetensors")
check(os.path.isfile(ckpt), "the pre-training wrote its checkpoint")

# 1. Every result, and fraction 1 against scikit-learn on the embedded features.
out1 = os.path.join(WORK, "probe1.json")
p = run("probe", ckpt, "--fractions", "0.1,1", "--splits", "val,test", "--out", out1, "eval.batch=8")
doc, res = results(out1)
check(len(res) == 2 * 2 * 2, f"8 results (knn, linear x 2 fractions x 2 splits): {len(res)}")
check(doc["d_feats"] == 512 and doc["n_train_split"] == 120, f"512 features of 120 patches: {doc['d_feats']}, "
      f"{doc['n_train_split']}")
check(0 < res[("knn", 0.1, "val")]["n_train"] < 120, "fraction 0.1 trains on a subset")
feats = {}
for split in ("train", "val"):
    h5 = os.path.join(WORK, f"{split}.h5")
    run("embed", ckpt, "--split", split, "--out", h5, "eval.batch=8")
    with h5py.File(h5) as f:
        feats[split] = (f["features"][:], f["labels"][:].astype(np.float64))
(xtr, ytr), (xva, yva) = feats["train"], feats["val"]


def maps(y, s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return average_precision_score(y, s, average="macro"), average_precision_score(y, s, average="micro")


k, t = doc["knn"]["k"], doc["knn"]["t"]
clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute", weights=lambda d: np.exp(-d / t))
clf.fit(xtr, ytr)
proba = clf.predict_proba(xva)
s = np.zeros(yva.shape)
for j in range(yva.shape[1]):
    cls = list(clf.classes_[j])
    s[:, j] = proba[j][:, cls.index(1.0)] if 1.0 in cls else 0.0
want = maps(yva, s)
got = res[("knn", 1.0, "val")]
check(abs(got["map_macro"] - want[0]) < 1e-5 and abs(got["map_micro"] - want[1]) < 1e-5,
      f"kNN mAP macro/micro {got['map_macro']:.6f}/{got['map_micro']:.6f}, scikit-learn {want[0]:.6f}/{want[1]:.6f}")
sc = StandardScaler().fit(xtr)
s = np.zeros(yva.shape)
for j in range(yva.shape[1]):
    if ytr[:, j].min() == ytr[:, j].max():
        s[:, j] = 30.0 if ytr[0, j] else -30.0
        continue
    lr = LogisticRegression(C=1.0 / (doc["linear"]["l2"] * len(xtr)), tol=1e-10, max_iter=100000)
    lr.fit(sc.transform(xtr), ytr[:, j])
    s[:, j] = lr.decision_function(sc.transform(xva))
want = maps(yva, s)
got = res[("linear", 1.0, "val")]
check(abs(got["map_macro"] - want[0]) < 0.005 and abs(got["map_micro"] - want[1]) < 0.005,
      f"linear mAP macro/micro {got['map_macro']:.6f}/{got['map_micro']:.6f}, scikit-learn {want[0]:.6f}/{want[1]:.6f}")
check(got["unconverged"] == 0, f"the linear probe converged ({got['iterations']} iterations at most)")

# 2. A random backbone of the same shape.
out0 = os.path.join(WORK, "probe0.json")
run("probe", ckpt, "--knn", "--fractions", "1", "--splits", "val", "--out", out0, "eval.batch=8", "model.init=scratch")
doc0, res0 = results(out0)
check(doc0["init"] == "scratch" and list(res0) == [("knn", 1.0, "val")],
      f"scratch, kNN only: {doc0['init']}, {list(res0)}")
check(res0[("knn", 1.0, "val")]["map_macro"] != res[("knn", 1.0, "val")]["map_macro"],
      "the random backbone gives another kNN mAP than the pre-trained one")

# 2b. Imported weights: the checkpoint's backbone exported with torchvision's names, probed as
# weights:FILE with the data keys given, scores as the checkpoint.
tv = os.path.join(WORK, "tv.safetensors")
run("export", ckpt, tv)
outw = os.path.join(WORK, "probe_w.json")
run("probe", f"weights:{tv}", "--knn", "--fractions", "1", "--splits", "val", "--out", outw, "eval.batch=8",
    f"data.shards={shards}", "data.source=s2", "data.s2_bands=rgb", "data.size=32")
_, resw = results(outw)
check(resw[("knn", 1.0, "val")]["map_macro"] == res[("knn", 1.0, "val")]["map_macro"],
      f"weights:FILE (the exported backbone) gives the checkpoint's kNN mAP: {resw[('knn', 1.0, 'val')]['map_macro']}")

# 3. Two ranks embed disjoint slices; the gathered features give the same mAP. Each rank runs the
# 1-rank run's batch (eval.batch 4 on 1 rank, 8 on 2), so the backend plans the same shapes (its
# layouts are chosen by timing per shape, and another batch may round differently and flip a
# near-tied neighbour).
if MPIRUN:
    out1b = os.path.join(WORK, "probe1b.json")
    run("probe", ckpt, "--fractions", "0.1,1", "--splits", "val,test", "--out", out1b, "eval.batch=4")
    out2 = os.path.join(WORK, "probe2.json")
    run("probe", ckpt, "--fractions", "0.1,1", "--splits", "val,test", "--out", out2, "eval.batch=8", ranks=2)
    _, res1b = results(out1b)
    _, res2 = results(out2)
    worst = max(abs(res2[key][m] - res1b[key][m]) for key in res1b for m in ("map_macro", "map_micro"))
    check(set(res2) == set(res1b) and worst == 0, f"2 ranks give the 1-rank mAPs (largest difference {worst:.3g})")
else:
    print("# no MPIRUN: the 2-rank check is not run")

# 4. Bad input.
p = run("probe", os.path.join(WORK, "nope.safetensors"), expect=1)
check("nope.safetensors" in p.stderr, f"a missing checkpoint is named: {p.stderr.strip()}")
p = run("probe", ckpt, "--fractions", "0,2", expect=2)
check("usage" in p.stderr, "a bad --fractions prints the usage")
sys.exit(1 if failures else 0)
