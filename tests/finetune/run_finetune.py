"""End-to-end `twinfuse finetune`, `evaluate` and `embed` on synthetic S1+S2 shards, on the CPU:
1. feature fusion (gated head) trains: the loss falls, a validation per epoch, best.safetensors;
2. a run stopped after epoch 1 and resumed (resume=auto) ends with the uninterrupted run's
   weights and buffers, bit for bit;
3. frozen mode from a torchvision-named file: the S2 backbone ends bit-equal to the file;
4. ssl init from a short `twinfuse pretrain` checkpoint, and `embed` of it and of a fine-tuned one;
5. evaluate on val, test and clouds: the predictions CSV recomputed with scikit-learn gives the
   JSON report's numbers; with MPIRUN, 2 ranks report the same as 1 and fine-tuning on 2 ranks
   (BN statistics frozen, so batch splits do not matter) follows the 1-rank losses;
6. bad input: exit != 0 and a message naming the key or the file.
usage: run_finetune.py TWINFUSE PYTHON_DIR SHARD_DIR WORK_DIR [MPIRUN]"""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import torch
import torchvision
from safetensors.numpy import load_file
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import check, failures, runner  # noqa: E402

TWINFUSE, HERE, SHARDS, WORK = sys.argv[1:5]
MPIRUN = sys.argv[5] if len(sys.argv) > 5 else None
CONFIG = os.path.join(HERE, "..", "..", "configs", "finetune", "demo.yaml")
COMMON = [f"data.shards={SHARDS}", f"run.out_dir={WORK}", "data.size=64", "data.batch=8", "optim.epochs=2",
          "run.log_every=1", "backend.threads=1", "backend.precision=fp32", "model.init=scratch"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}



twinfuse = runner(TWINFUSE, env=ENV, mpirun=MPIRUN)


def finetune(name, *over, expect=0, ranks=1):
    return twinfuse("finetune", CONFIG, f"run.name={name}", *COMMON, *over, expect=expect, ranks=ranks)


def losses(name):
    with open(os.path.join(WORK, name, "metrics.jsonl")) as f:
        return {m["step"]: m["loss"] for m in map(json.loads, f)}


def tensors(path):
    return load_file(path)


def same_tensors(a, b, prefix=""):
    keys = [k for k in a if k.startswith(prefix)]
    return bool(keys) and all(k in b and a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in keys)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)

# 1. Training: 64 patches, 8 steps per epoch, a validation after each epoch.
p = finetune("whole", "run.resume=never")
l = losses("whole")
steps = sorted(l)
check(len(steps) == 16, f"16 steps logged ({len(steps)})")
first, last = np.mean([l[s] for s in steps[:4]]), np.mean([l[s] for s in steps[-4:]])
check(last < first, f"loss falls: mean of the first 4 steps {first:.4f}, of the last 4 {last:.4f}")
check(p.stdout.count("# validation after epoch") == 2, "a validation after each of the 2 epochs")
best = os.path.join(WORK, "whole", "best.safetensors")
check(os.path.exists(best), "best.safetensors written")
final = os.path.join(WORK, "whole", "ckpt-00000016.safetensors")

# 2. Stopped after epoch 1 (a checkpoint follows every validation), resumed: bit-equal end.
finetune("split", "run.resume=never", "run.max_steps=8")
p = finetune("split")
check("# resumed from" in p.stdout and "at step 8" in p.stdout, "resumed at step 8")
a, b = tensors(final), tensors(os.path.join(WORK, "split", "ckpt-00000016.safetensors"))
check(set(a) == set(b) and same_tensors(a, b), f"resumed run ends bit-equal to the uninterrupted one ({len(a)} tensors)")

# 3. Frozen (TL) from a torchvision-named file: the S2 backbone (RGB: the file's own shape) stays the file.
torch.manual_seed(0)
net = torchvision.models.resnet18()
for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.1, 0.1)
        m.running_var.uniform_(0.5, 1.5)
sd = {k: v.contiguous() for k, v in net.state_dict().items()}
weights = os.path.join(WORK, "tv.safetensors")
save_file(sd, weights)
finetune("frozen", "run.resume=never", "model.mode=frozen", f"model.init=weights:{weights}", "optim.epochs=1")
got = tensors(os.path.join(WORK, "frozen", "ckpt-00000008.safetensors"))
file_sd = {"s2." + k: v.numpy() for k, v in sd.items() if not k.startswith("fc.")}
check(same_tensors(file_sd, got), "frozen S2 backbone (weights, BN buffers, counters) bit-equal to the file")
check(any(k.startswith("head.") for k in got), "the head is saved")

# 4. ssl: a two-step S1 pre-training, its backbone into the S1 branch; embed of both checkpoints.
pre = twinfuse("pretrain", os.path.join(HERE, "..", "..", "configs", "pretrain", "demo_s1.yaml"),
               f"data.shards={SHARDS}", f"run.out_dir={WORK}", "run.name=pre-s1", "data.size=64", "data.batch=8",
               "model.projector_dim=64", "run.max_steps=2", "backend.threads=1", "backend.precision=fp32")
ssl = os.path.join(WORK, "pre-s1", "ckpt-00000002.safetensors")
finetune("ssl", "run.resume=never", f"model.init_s1=ssl:{ssl}", "model.mode=frozen", "optim.epochs=1")
got, pre_t = tensors(os.path.join(WORK, "ssl", "ckpt-00000008.safetensors")), tensors(ssl)
check(same_tensors({"s1." + k[9:]: v for k, v in pre_t.items() if k.startswith("backbone.")}, got),
      "ssl init: the S1 branch is the pre-training checkpoint's backbone (frozen, bit-equal)")
feats = os.path.join(WORK, "val-s1.h5")
twinfuse("embed", ssl, "--split", "val", "--out", feats, f"data.shards={SHARDS}", "backend.threads=1")
with h5py.File(feats) as f:
    check(f["features"].shape == (24, 512) and f["labels"].shape[0] == 24 and len(f["name"]) == 24,
          f"embed of a pre-training checkpoint: {f['features'].shape} features, names and labels")
feats = os.path.join(WORK, "test-ft.h5")
twinfuse("embed", best, "--split", "test", "--out", feats, "backend.threads=1")
with h5py.File(feats) as f:
    check(f["features"].shape == (20, 1024), f"embed of a feature-fusion checkpoint: {f['features'].shape}")

# 5. Evaluate, recomputed from the predictions with scikit-learn; 2 ranks.
report, pred = os.path.join(WORK, "eval.json"), os.path.join(WORK, "pred.csv")
twinfuse("evaluate", best, "--split", "val", "--split", "test", "--split", "clouds", "--json", report,
         "--predictions", pred, "backend.threads=1")
checker = os.path.join(HERE, "..", "train", "check_predictions.py")
for split in ("val", "test", "clouds"):
    r = subprocess.run([sys.executable, checker, os.path.join(WORK, f"pred-{split}.csv"), report, split],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"{split}: the report's mAP/F1 equal scikit-learn's from the predictions file"
          + ("" if r.returncode == 0 else f": {r.stdout[-500:]} {r.stderr[-500:]}"))
if MPIRUN:
    report2 = os.path.join(WORK, "eval2.json")
    twinfuse("evaluate", best, "--split", "val", "--split", "test", "--split", "clouds", "--json", report2,
             ranks=2)
    one, two = json.load(open(report))["splits"], json.load(open(report2))["splits"]
    check(all(abs(x["map_macro"] - y["map_macro"]) < 1e-6 and x["n_samples"] == y["n_samples"]
              for x, y in zip(one, two)), "evaluate on 2 ranks reports what 1 rank does")
    finetune("bn1", "run.resume=never", "model.bn=frozen", "optim.epochs=1", "optim.name=sgd", "optim.lr=0.05")
    finetune("bn2", "run.resume=never", "model.bn=frozen", "optim.epochs=1", "optim.name=sgd", "optim.lr=0.05",
             ranks=2)
    l1, l2 = losses("bn1"), losses("bn2")
    check(sorted(l1) == sorted(l2) and all(abs(l1[s] - l2[s]) <= 1e-4 * max(1, abs(l1[s])) for s in l1),
          "finetune on 2 ranks (mean gradients) follows the 1-rank losses step by step")

# 6. Bad input.
cases = [
    (["finetune", CONFIG, *COMMON, "data.label_fraction=0"], "data.label_fraction"),
    (["finetune", CONFIG, *COMMON, "data.source=s2"], "model.fusion"),
    (["finetune", CONFIG, *COMMON, "run.name=bad", f"model.init_s1=ssl:{best}"], "classification checkpoint"),
    (["finetune", CONFIG, *COMMON, "run.name=bad", f"model.init_s2=ssl:{ssl}"], "pre-trained on s1"),
    (["finetune", CONFIG, *COMMON, "run.name=bad", "model.init=weights:/nonexistent.safetensors"], "nonexistent"),
    (["evaluate", ssl], "barlow-twins"),
    (["evaluate", best, "data.classes=43"], "head"),
    (["evaluate", best, f"data.shards={WORK}"], WORK),
]
for args, needle in cases:
    p = twinfuse(*args, expect=1)
    check(p.returncode != 0 and needle in p.stderr, f"{' '.join(args[:1] + args[-1:])}: exit {p.returncode}, "
          f"message names '{needle}': {p.stderr.strip()[-200:]}")

print("FAIL" if failures else "PASS")
if not failures:   # the runs' checkpoints are gigabytes; kept only to look into a failure
    shutil.rmtree(WORK, ignore_errors=True)
sys.exit(1 if failures else 0)
