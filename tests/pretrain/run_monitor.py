"""End-to-end monitors of `twinfuse pretrain` (docs/monitor.md), on synthetic shards, on the CPU:
1. a run with monitors (every 2 steps, online kNN on val) ends bit-identical (weights, BN buffers,
   counters, optimizer state) to the same run without them, logs a monitor line per check with
   every figure (the kNN mAP also in the progress line), and its healthy embedding never raises
   the alarm; at the default cadence on a tiny epoch the health comes every epoch and the kNN
   only every k-th (its cost bounded);
2. a constructed collapse (every patch the same image, no augmentation: every sample has the same
   embedding) raises the alarm at exactly the monitor.patience-th check: warn goes on with one
   warning; stop saves a checkpoint and exits 1 with a message naming what collapsed;
3. with MPIRUN given, 2 ranks (synchronised backbone BN) log the 1-rank run's online kNN mAP at
   step 1 within 0.01 (the ranks embed disjoint slices of the subsets, gathered; the exact
   equality of the gathering is train.probe's).
usage: run_monitor.py TWINFUSE CONFIG WORK_DIR [MPIRUN]"""
import json
import os
import shutil
import subprocess
import sys

import h5py

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import check, failures, same_state  # noqa: E402

TWINFUSE, CONFIG, WORK = sys.argv[1:4]
MPIRUN = sys.argv[4] if len(sys.argv) > 4 else None
KEYS = ("z_std_mean", "z_std_min", "z_std_low", "f_std_mean", "f_std_min", "f_std_low", "c_diag", "c_off",
        "erank_z", "erank_f", "knn_map_macro", "knn_map_micro", "bad_checks")


def run(*args, expect=0, ranks=1):
    cmd = [TWINFUSE, *args]
    if ranks > 1:
        cmd = [MPIRUN, "--oversubscribe", "-np", str(ranks), "-x", "OMP_NUM_THREADS=1", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if p.returncode != expect:
        print(p.stdout[-3000:], p.stderr[-3000:])
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}, want {expect}")
    return p


def pretrain(name, shards, *over, expect=0, ranks=1):
    return run("pretrain", CONFIG, f"data.shards={shards}", f"run.out_dir={WORK}", f"run.name={name}", "data.size=32",
               "data.batch=16", "model.projector_dim=64", "run.ckpt_every_steps=0", "run.resume=never",
               "backend.threads=1", *over, expect=expect, ranks=ranks)


def monitors(name):
    out = {}
    with open(os.path.join(WORK, name, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line.replace("nan", "NaN"))
            if "monitor" in m:
                out[m["step"]] = m["monitor"]
    return out


shutil.rmtree(WORK, ignore_errors=True)
shards = os.path.join(WORK, "synth")
os.makedirs(shards)
run("synth", "--out", shards, "--size", "32", "--train", "64", "--val", "32", "--test", "0", "--clouds", "0",
    "--shard-size", "64", "--seed", "11")

# 1. Monitors on and off: the same training; the figures logged; no alarm on a healthy run.
on = pretrain("on", shards, "run.max_steps=6", "monitor.every_steps=2", "monitor.knn_memory=40")
pretrain("off", shards, "run.max_steps=6", "monitor.every_steps=-1")
ckpt = "ckpt-00000006.safetensors"
same, why = same_state(os.path.join(WORK, "on", ckpt), os.path.join(WORK, "off", ckpt))
check(same, f"monitors on and off end bit-identical (parameters, buffers, counters, optimizer): {why}")
mon = monitors("on")
check(sorted(mon) == [2, 4, 6], f"a monitor line at steps 2, 4, 6: {sorted(mon)}")
check(all(k in m for m in mon.values() for k in KEYS), "every monitor line has every figure")
check(all(m["knn_memory"] == 40 and m["knn_queries"] == 32 for m in mon.values()),
      "the kNN memory is bounded by monitor.knn_memory (40 of 64), the queries are all of val")
check(all(m["bad_checks"] == 0 for m in mon.values()) and "collapsed" not in on.stderr + on.stdout,
      "the healthy run never raises the alarm: " + ", ".join("%.3f" % m["z_std_mean"] for m in mon.values()))
check(not monitors("off") and "# monitor" not in open(os.path.join(WORK, "off", "metrics.jsonl")).read(),
      "monitor.every_steps=-1: no monitor lines")
# The progress line carries the last check's kNN mAP: step 5's that of the check at step 4.
step5 = [ln for ln in on.stdout.splitlines() if ln.startswith("step") and ln.split()[1].startswith("5/")]
check(len(step5) == 1 and step5[0].endswith(f"| kNN {mon[4]['knn_map_macro']:.4f}"),
      f"the progress line shows the last kNN mAP: {step5}")

# 1b. The default cadence (a check an epoch) on an epoch too small for a kNN every epoch: 64
# pairs (4 steps of 16) against 16 memory + 32 query patches to embed is 48 / (6 x 64) = 12.5 %
# of an epoch's compute, so the kNN runs every ceil(0.125 / 0.03) = 5 epochs, the health every
# epoch. (The memory subset keeps every class: a few patches above 16.)
pretrain("default", shards, "run.max_steps=20", "monitor.every_steps=0", "monitor.knn_memory=16")
mon = monitors("default")
check(sorted(mon) == [4, 8, 12, 16, 20], f"the default cadence: a check an epoch (4 steps): {sorted(mon)}")
with_knn = [s for s in sorted(mon) if "knn_map_macro" in mon[s]]
check(with_knn == [20] and mon[20]["knn_every_epochs"] == 5 and 16 <= mon[20]["knn_memory"] < 32,
      f"the kNN at every 5th epoch's check only (its cost bounded): at steps {with_knn}, "
      f"k = {mon[20].get('knn_every_epochs')}")

# 2. A constructed collapse: every patch of every split the same image, no augmentation.
same_dir = os.path.join(WORK, "same")
shutil.copytree(shards, same_dir)
for name in os.listdir(same_dir):
    with h5py.File(os.path.join(same_dir, name), "r+") as f:
        for ds in ("s1", "s2"):
            f[ds][1:] = f[ds][0:1]
noaug = [f"augment.view{v}.{a}=0" for v in (1, 2) for a in ("crop", "flip", "rot90", "jitter", "blur", "noise",
                                                              "speckle", "band_dropout")]
p = pretrain("collapse_warn", same_dir, "run.max_steps=5", "monitor.every_steps=1", "monitor.patience=3", *noaug)
mon = monitors("collapse_warn")
check([mon[s]["bad_checks"] for s in sorted(mon)] == [1, 2, 3, 4, 5],
      f"every check of the collapse is bad: {[mon[s]['bad_checks'] for s in sorted(mon)]}")
warn = [l for l in p.stderr.splitlines() if "collapsed" in l]
check(len(warn) == 1 and "at step 3" in warn[0] and "std" in warn[0],
      f"warn: one warning, at the 3rd check, naming what collapsed: {warn}")
p = pretrain("collapse_stop", same_dir, "run.max_steps=8", "monitor.every_steps=1", "monitor.patience=2",
             "monitor.on_collapse=stop", *noaug, expect=1)
msg = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
check("collapsed at step 2" in msg and "on_collapse=stop" in msg and "ckpt-00000002.safetensors" in msg,
      f"stop: exit 1 at the 2nd check with the reason and the checkpoint: {msg}")
check(os.path.isfile(os.path.join(WORK, "collapse_stop", "ckpt-00000002.safetensors")),
      "stop: the checkpoint of the step it stopped at is written")

# 3. Two ranks embed disjoint slices of the kNN subsets; the mAP is the 1-rank run's.
if MPIRUN:
    sync = ["run.max_steps=1", "monitor.every_steps=1", "monitor.knn_memory=40", "model.backbone_bn=sync"]
    pretrain("r1", shards, *sync)
    pretrain("r2", shards, *sync, ranks=2)
    a, b = monitors("r1")[1], monitors("r2")[1]
    # Not bit for bit: the two runs' steps differ in rounding (synchronised BN over 2 ranks, the
    # backend's per-shape kernels), which can flip a near-tied neighbour; misplaced rows would move
    # the mAP to the label prior.
    check(abs(a["knn_map_macro"] - b["knn_map_macro"]) < 0.01 and abs(a["knn_map_micro"] - b["knn_map_micro"]) < 0.01,
          f"2 ranks: kNN mAP {b['knn_map_macro']:.6f}/{b['knn_map_micro']:.6f}, 1 rank "
          f"{a['knn_map_macro']:.6f}/{a['knn_map_micro']:.6f}")
else:
    print("# no MPIRUN: the 2-rank check is not run")
sys.exit(1 if failures else 0)
