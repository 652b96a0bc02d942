"""End-to-end cross-modal Barlow Twins (`loss.pairing: cross`) on synthetic S1+S2 shards, on the CPU:
1. `twinfuse pretrain data.source=s1+s2 loss.pairing=cross` runs a few steps with finite losses; its
   checkpoint is a barlow-twins checkpoint of sources s1+s2 holding s1.backbone.* (2-channel stem),
   s2.backbone.* (12-channel stem), each branch's projector and the loss's bn.*, and the two
   backbones did not start as copies of each other;
   with DeCUR's intra-modal terms (loss.intra, loss.common_dims: four views a step) it runs with
   finite losses other than the plain cross run's, the same checkpoint keys, the loss's BN counting
   four batches a step and the branches' BNs two; stopped at step 2 and resumed, it ends bit-equal
   to a run of 4 steps straight;
2. s1+s2 without loss.pairing=cross, and cross with one source, are refused naming loss.pairing;
   loss.intra without cross, loss.common_dims without loss.intra or wider than the projector are
   refused naming their key;
3. `twinfuse finetune` with feature fusion, model.init=ssl:<that checkpoint>, model.mode=frozen for
   one epoch: the fine-tuned checkpoint's s1.* and s2.* backbones (weights, BN buffers, counters)
   are the pre-training checkpoint's s1.backbone.* and s2.backbone.*, bit for bit; `twinfuse embed`
   of the pre-training checkpoint gives 1024 features per patch (feature fusion's);
4. a single-source S2 model from the same checkpoint: its backbone.* is s2.backbone.* (frozen, bit-equal);
   early fusion's one backbone over both sources is refused.
usage: run_cross.py TWINFUSE REPO_DIR SHARD_DIR WORK_DIR"""
import glob
import json
import os
import shutil
import sys

import h5py
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import check, failures, runner  # noqa: E402

TWINFUSE, REPO, SHARDS, WORK = sys.argv[1:5]
PRE_CONFIG = os.path.join(REPO, "configs", "pretrain", "demo_s1.yaml")
FT_CONFIG = os.path.join(REPO, "configs", "finetune", "demo.yaml")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
COMMON = [f"data.shards={SHARDS}", f"run.out_dir={WORK}", "data.size=32", "data.batch=8", "backend.threads=1",
          "backend.precision=fp32", "run.log_every=1", "run.resume=never", "data.s2_bands=all"]



twinfuse = runner(TWINFUSE, env=ENV)


def newest_ckpt(name):
    return sorted(glob.glob(os.path.join(WORK, name, "ckpt-*.safetensors")))[-1]


def backbone_of(t, src_prefix, dst_prefix):
    return {dst_prefix + k[len(src_prefix):]: v for k, v in t.items() if k.startswith(src_prefix)}


def same_tensors(a, b):
    return bool(a) and all(k in b and a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in a)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)

# 1. Three steps of cross-modal pre-training.
PRE = ["model.projector_dim=64", "data.source=s1+s2", "loss.pairing=cross"]
twinfuse("pretrain", PRE_CONFIG, "run.name=cross", *COMMON, *PRE, "run.max_steps=3", "run.ckpt_every_steps=3")
with open(os.path.join(WORK, "cross", "metrics.jsonl")) as f:
    steps = [json.loads(line) for line in f if '"loss"' in line]
check(len(steps) == 3 and all(np.isfinite(m["loss"]) and m["loss"] > 0 for m in steps),
      f"cross pre-training: 3 finite losses {[round(m['loss'], 3) for m in steps]}")
ssl = newest_ckpt("cross")
meta = safe_open(ssl, "np").metadata()
check(meta.get("task") == "barlow-twins" and meta.get("sources") == "s1+s2",
      f"checkpoint task {meta.get('task')}, sources {meta.get('sources')}")
pre = load_file(ssl)
shapes = {k: pre[k].shape for k in ("s1.backbone.conv1.weight", "s2.backbone.conv1.weight",
                                    "s1.projector.6.weight", "s2.projector.6.weight", "bn.running_var") if k in pre}
check(shapes.get("s1.backbone.conv1.weight") == (64, 2, 7, 7) and shapes.get("s2.backbone.conv1.weight") ==
      (64, 12, 7, 7) and shapes.get("s1.projector.6.weight") == (64, 64) and
      shapes.get("s2.projector.6.weight") == (64, 64) and shapes.get("bn.running_var") == (64,),
      f"the checkpoint's s1.*, s2.* and bn.* tensors: {shapes}")
check(not any(k.startswith(("backbone.", "projector.")) for k in pre), "no single-source names in it")
w1, w2 = pre.get("s1.backbone.layer1.0.conv1.weight"), pre.get("s2.backbone.layer1.0.conv1.weight")
check(w1 is not None and w2 is not None and not np.allclose(w1, w2, atol=1e-3),
      "the two backbones are distinct (the S2 branch has its own seed)")

# 1b. The same with DeCUR's intra-modal terms: 48 of the 64 dimensions common.
DECUR = [*PRE, "loss.intra=0.5", "loss.common_dims=48"]
twinfuse("pretrain", PRE_CONFIG, "run.name=decur", *COMMON, *DECUR, "run.max_steps=3", "run.ckpt_every_steps=3")
with open(os.path.join(WORK, "decur", "metrics.jsonl")) as f:
    dsteps = [json.loads(line) for line in f if '"loss"' in line]
check(len(dsteps) == 3 and all(np.isfinite(m["loss"]) and m["loss"] > 0 for m in dsteps) and
      all(abs(a["loss"] - b["loss"]) > 1e-3 * b["loss"] for a, b in zip(dsteps, steps)),
      f"intra-modal terms: 3 finite losses {[round(m['loss'], 3) for m in dsteps]}, not the cross run's")
dpre = load_file(newest_ckpt("decur"))
check(dpre.keys() == pre.keys(), "the same checkpoint keys as plain cross-modal pre-training")
counts = {k: int(dpre[k]) for k in ("bn.num_batches_tracked", "s1.backbone.bn1.num_batches_tracked",
                                     "s2.projector.1.num_batches_tracked") if k in dpre}
check(counts == {"bn.num_batches_tracked": 12, "s1.backbone.bn1.num_batches_tracked": 6,
                 "s2.projector.1.num_batches_tracked": 6},
      f"4 views a step: the loss's BN saw 4 batches a step, each branch's 2 (after 3 steps: {counts})")
twinfuse("pretrain", PRE_CONFIG, "run.name=decur-straight", *COMMON, *DECUR, "run.max_steps=4",
         "run.ckpt_every_steps=4")
twinfuse("pretrain", PRE_CONFIG, "run.name=decur-resumed", *COMMON, *DECUR, "run.max_steps=2",
         "run.ckpt_every_steps=2")
p = twinfuse("pretrain", PRE_CONFIG, "run.name=decur-resumed", *COMMON, *DECUR, "run.max_steps=4",
             "run.ckpt_every_steps=2", "run.resume=auto")
a, b = load_file(newest_ckpt("decur-straight")), load_file(newest_ckpt("decur-resumed"))
check("resumed from" in p.stdout + p.stderr and a.keys() == b.keys() and
      all(np.array_equal(a[k], b[k]) for k in a),
      "intra-modal terms: stopped at step 2 and resumed, bit-equal to 4 steps straight")

# 2. Bad pairings.
for over, want in ((["data.source=s1+s2", "loss.pairing=views"], "loss.pairing"),
                   (["data.source=s1+s2"], "loss.pairing"),
                   (["data.source=s2", "loss.pairing=cross"], "loss.pairing"),
                   (["data.source=s2", "loss.intra=1"], "loss.intra"),
                   (["data.source=s1+s2", "loss.pairing=cross", "loss.common_dims=32"], "loss.common_dims"),
                   (["data.source=s1+s2", "loss.pairing=cross", "loss.intra=1", "loss.common_dims=65"],
                    "loss.common_dims")):
    p = twinfuse("pretrain", PRE_CONFIG, "run.name=bad", *COMMON, "model.projector_dim=64", *over, expect=1)
    check(want in p.stderr + p.stdout, f"pretrain {' '.join(over)} refused naming {want}")

# 3. Feature fusion, both backbones from the cross-modal checkpoint, frozen, one epoch.
FT = ["optim.epochs=1", "model.mode=frozen", f"model.init=ssl:{ssl}"]
twinfuse("finetune", FT_CONFIG, "run.name=ft", *COMMON, "data.source=s1+s2", "model.fusion=feature", *FT)
got = load_file(newest_ckpt("ft"))
for s in ("s1", "s2"):
    want = backbone_of(pre, f"{s}.backbone.", f"{s}.")
    check(len(want) > 100 and same_tensors(want, got),
          f"feature fusion's {s} backbone ({len(want)} tensors) bit-equal to the checkpoint's {s}.backbone.*")

feats = os.path.join(WORK, "val-cross.h5")
twinfuse("embed", ssl, "--split", "val", "--out", feats, "backend.threads=1")
with h5py.File(feats) as f:
    n_val = len(f["name"])
    check(n_val > 0 and f["features"].shape == (n_val, 1024) and f.attrs["source"] == "s1+s2",
          f"embed of the cross-modal checkpoint: {f['features'].shape} features (S1's then S2's)")

# 4. One source from the cross-modal checkpoint; early fusion refused.
twinfuse("finetune", FT_CONFIG, "run.name=ft-s2", *COMMON, "data.source=s2", "model.fusion=none",
         "model.head=concat-linear", *FT, "run.max_steps=2")
got = load_file(newest_ckpt("ft-s2"))
want = backbone_of(pre, "s2.backbone.", "backbone.")
check(len(want) > 100 and same_tensors(want, got),
      "a single-source S2 model's backbone.* is the checkpoint's s2.backbone.* (frozen, bit-equal)")
p = twinfuse("finetune", FT_CONFIG, "run.name=bad", *COMMON, "data.source=s1+s2", "model.fusion=early",
             "model.head=concat-linear", *FT, expect=1)
check("cross-modal" in p.stderr + p.stdout, "early fusion from a cross-modal checkpoint refused")

if failures:
    print(f"FAIL: {len(failures)} check(s)")
    sys.exit(1)
print("PASS")
shutil.rmtree(WORK, ignore_errors=True)   # the runs' checkpoints: kept only to look into a failure
