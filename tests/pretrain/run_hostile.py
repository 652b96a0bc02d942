"""Hostile output conditions for `twinfuse pretrain`, one table row each: the run must exit non-zero
with a message naming the file and the fault, and leave nothing partial that looks complete (no
checkpoint file that is not whole, no temporary file).
- the output directory lies under a regular file (it cannot be made);
- config.yaml cannot be written (a directory stands in its place);
- metrics.jsonl is on a full disk (a symlink to /dev/full: every write fails with ENOSPC);
- the disk fills while a checkpoint is written (RLIMIT_FSIZE below a checkpoint's size, SIGXFSZ
  ignored: the write fails with EFBIG part-way through, as on a full disk);
- data.size larger than the shards' patches: refused at set-up, naming both, before any step.
usage: run_hostile.py TWINFUSE CONFIG SHARD_DIR WORK_DIR"""
import os
import resource
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import check, failures  # noqa: E402

TWINFUSE, CONFIG, SHARDS, WORK = sys.argv[1:5]
COMMON = [f"data.shards={SHARDS}", "data.size=32", "data.batch=8", "model.projector_dim=64",
          "optim.warmup_epochs=0", "optim.epochs=4", "run.log_every=1", "backend.threads=1",
          "run.max_steps=4", "run.ckpt_every_steps=2", "run.resume=never"]



def small_files():
    """In the child: files may not grow past 2 MB (a ResNet18 checkpoint is ~45 MB), and the
    signal that would kill the process instead becomes EFBIG from write()."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))


def out_under_file():
    blocker = os.path.join(WORK, "blocker")
    open(blocker, "w").close()
    return [f"run.out_dir={blocker}/runs", "run.name=r"], None, [blocker, "Not a directory"], None


def config_blocked():
    run_dir = os.path.join(WORK, "runs", "cfg")
    os.makedirs(os.path.join(run_dir, "config.yaml"))
    return ([f"run.out_dir={WORK}/runs", "run.name=cfg"], None, [os.path.join(run_dir, "config.yaml")],
            run_dir)


def metrics_full():
    run_dir = os.path.join(WORK, "runs", "metrics")
    os.makedirs(run_dir)
    os.symlink("/dev/full", os.path.join(run_dir, "metrics.jsonl"))
    return ([f"run.out_dir={WORK}/runs", "run.name=metrics"], None,
            [os.path.join(run_dir, "metrics.jsonl"), "No space left on device"], run_dir)


def checkpoint_full():
    run_dir = os.path.join(WORK, "runs", "ckpt")
    return ([f"run.out_dir={WORK}/runs", "run.name=ckpt"], small_files,
            [os.path.join(run_dir, "ckpt-00000002.safetensors"), "File too large"], run_dir)

def size_too_large():
    run_dir = os.path.join(WORK, "runs", "size")
    return ([f"run.out_dir={WORK}/runs", "run.name=size", "data.size=1024"], None,
            ["data.size=1024", "larger than the", "patches of", SHARDS], run_dir)


CASES = [
    ("output directory under a regular file", out_under_file),
    ("config.yaml cannot be written", config_blocked),
    ("metrics.jsonl on a full disk", metrics_full),
    ("disk full while writing a checkpoint", checkpoint_full),
    ("data.size larger than the shards' patches", size_too_large),
]

shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
if not os.path.exists("/dev/full"):
    print("SKIP: no /dev/full")
    sys.exit(77)
for name, setup in CASES:
    over, preexec, want, run_dir = setup()
    cmd = [TWINFUSE, "pretrain", CONFIG, *COMMON, *over]
    p = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=preexec, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    missing = [w for w in want if w not in p.stderr]
    check(p.returncode == 1 and not missing,
          f"{name}: exit {p.returncode} (want 1), message {p.stderr.strip()[-300:]!r}"
          + (f" lacks {missing}" if missing else ""))
    left = sorted(os.listdir(run_dir)) if run_dir and os.path.isdir(run_dir) else []
    partial = [f for f in left if f.startswith("ckpt-") or ".tmp" in f]
    check(not partial, f"{name}: no checkpoint or temporary file left ({left})")

print("FAIL" if failures else "PASS")
sys.exit(1 if failures else 0)
