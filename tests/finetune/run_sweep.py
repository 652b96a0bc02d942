"""`twinfuse sweep` end to end on synthetic shards: a two-cell grid (S1 and S1+S2 feature fusion,
scratch, fine-tuned, one label fraction) of a few steps each:
1. both cells train and are evaluated; results.csv has a row per cell and split, and results.md
   shows the same mAPs; every PNG is a PNG whose JSON sidecar draws exactly results.csv's values;
2. a rerun skips both cells and writes the same results.csv;
3. a cell killed (SIGKILL) after its first checkpoint resumes from it and ends with the weights of
   an uninterrupted run of the same cell, bit for bit;
4. bad grids are refused naming the key.
usage: run_sweep.py TWINFUSE SRC_DIR SHARD_DIR WORK_DIR"""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import check, failures, runner  # noqa: E402

TWINFUSE, SRC, SHARDS, WORK = sys.argv[1:5]
CONFIG = os.path.join(SRC, "configs", "finetune", "demo.yaml")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
GRID = ['sweep.sources="s1,s1+s2"', 'sweep.experiments="scratch:finetune"', 'sweep.fractions="0.5"',
        'sweep.splits="val,clouds"']
COMMON = [f"data.shards={SHARDS}", f"run.out_dir={WORK}", "data.size=32", "data.batch=8", "optim.epochs=2",
          "backend.threads=1", "backend.precision=fp32", "model.head=gated", *GRID]



twinfuse = runner(TWINFUSE, env=ENV)


def sweep(name, *over, expect=0):
    return twinfuse("sweep", CONFIG, f"run.name={name}", *COMMON, *over, expect=expect)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)

# 1. Two cells.
p = sweep("two")
d = os.path.join(WORK, "two")
cells = ["s1-scratch-finetune-f0.5-s0", "s1+s2-feature-gated-scratch-finetune-f0.5-s0"]
check(all(os.path.exists(os.path.join(d, c, "eval.json")) for c in cells), "both cells evaluated")
rows = list(csv.DictReader(open(os.path.join(d, "results.csv"))))
check(sorted((r["cell"], r["split"]) for r in rows) == sorted((c, s) for c in cells for s in ("val", "clouds")),
      f"results.csv: a row per cell and split ({len(rows)} rows)")
for r in rows:
    ev = json.load(open(os.path.join(d, r["cell"], "eval.json")))
    got = {s["split"]: s for s in ev["splits"]}[r["split"]]
    check(abs(got["map_macro"] - float(r["map_macro"])) < 5e-7 and int(r["steps"]) == 8,
          f"{r['cell']} {r['split']}: results.csv mAP {r['map_macro']} = eval.json's, {r['steps']} steps")
md = open(os.path.join(d, "results.md")).read()
check(all(f"{float(r['map_macro']):.4f}" in md for r in rows), "results.md shows every results.csv mAP")
pngs = sorted(f for f in os.listdir(d) if f.endswith(".png"))
check(len(pngs) >= 2, f"plots: {pngs}")
for png in pngs:
    ok = open(os.path.join(d, png), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    side = json.load(open(os.path.join(d, png + ".json")))
    ys = sorted(round(y, 4) for s in side["series"] for y in s["y"] if y is not None)
    split = "clouds" if "clouds" in png else "val"
    want = [r for r in rows if r["split"] == split]
    if "s1_s2" in png:
        want = [r for r in want if r["source"] == "s1+s2"]
    elif "_s1" in png:
        want = [r for r in want if r["source"] == "s1"]
    check(ok and ys == sorted(round(float(r["map_macro"]), 4) for r in want),
          f"{png}: a PNG whose sidecar draws results.csv's {split} values {ys}")
before = open(os.path.join(d, "results.csv")).read()

# 2. Rerun: nothing to do.
p = sweep("two")
check(p.stdout.count("done, skipped") == 2, "a rerun skips both finished cells")
check(open(os.path.join(d, "results.csv")).read() == before, "and writes the same results.csv")

# 3. Kill the first cell after its first checkpoint (epoch 1 of 2), resume; compare with "two".
cell = os.path.join(WORK, "kill", cells[0])
proc = subprocess.Popen([TWINFUSE, "sweep", CONFIG, "run.name=kill", "--cell", "0", *COMMON], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, env=ENV)
t0 = time.time()
while time.time() - t0 < 300 and not os.path.exists(os.path.join(cell, "ckpt-00000004.safetensors")):
    time.sleep(0.02)
proc.send_signal(signal.SIGKILL)
proc.wait()
killed_early = not os.path.exists(os.path.join(cell, "ckpt-00000008.safetensors"))
p = sweep("kill", "--cell", "0")
check(killed_early and "resumed from" in p.stdout and "at step 4" in p.stdout,
      "the killed cell resumes from its step-4 checkpoint")
a = load_file(os.path.join(d, cells[0], "ckpt-00000008.safetensors"))
b = load_file(os.path.join(cell, "ckpt-00000008.safetensors"))
check(set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a),
      f"and ends with the uninterrupted cell's weights, bit for bit ({len(a)} tensors)")
check(len(list(csv.DictReader(open(os.path.join(WORK, "kill", "results.csv"))))) == 2,
      "--cell writes results.csv with the finished cell only")

# 4. Bad grids.
for over, needle in ((['sweep.sources="s3"'], "sweep.sources"), (['sweep.fractions="0,1"'], "sweep.fractions"),
                     (['sweep.experiments="ssl:frozen"'], "sweep.ssl_s1"),
                     (['sweep.experiments="scratch"'], "sweep.experiments"),
                     (["--cell", "9"], "--cell 9")):
    p = sweep("bad", *over, expect=1)
    check(needle in p.stderr, f"{' '.join(over)}: refused naming {needle}: {p.stderr.strip()[-160:]}")

print("FAIL" if failures else "PASS")
if not failures:   # the runs' checkpoints are gigabytes; kept only to look into a failure
    shutil.rmtree(WORK, ignore_errors=True)
sys.exit(1 if failures else 0)
