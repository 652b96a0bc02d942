"""Exact resume after a SIGKILL, for any command on the training loop (pretrain, finetune, and a sweep's
cell 0: `sweep CONFIG --cell 0`, checked in its cell folder), on 2 ranks:
1. an uninterrupted run of N steps (checkpoints every 2);
2. the same run with rank 1 SIGKILLed once rank 0 has recorded step K (K drawn at random from
   3..N-1; the seed is printed, TW_KILL_SEED=<seed> repeats it), restarted with resume=auto;
3. the same run with rank 0 (the checkpoint writer) SIGKILLed as soon as a checkpoint's temporary
   file appears, i.e. during a checkpoint write, restarted with resume=auto (which removes the
   torn temporary file).
Both restarted runs must end with a last checkpoint whose every tensor (weights, BN buffers and
counters, optimizer moments) is bit-identical to the uninterrupted run's and a metrics.jsonl with
each step once (the lines after the checkpoint resumed from, and a torn last line, are dropped),
and a kill during a write must leave the checkpoints before it valid (the restart resumes from
one of them).
usage: run_kill_resume.py TWINFUSE MPIRUN WORK_DIR COMMAND CONFIG [key=value ...]"""
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import check, failures, same_state  # noqa: E402

TWINFUSE, MPIRUN, WORK, COMMAND, CONFIG = sys.argv[1:6]
OVER = sys.argv[6:]
N = 8
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}



def cmd(name, *extra):
    what = [COMMAND, CONFIG] + (["--cell", "0"] if COMMAND == "sweep" else [])
    return [MPIRUN, "--oversubscribe", "-np", "2", "-x", "OMP_NUM_THREADS=1", TWINFUSE, *what,
            f"run.out_dir={WORK}", f"run.name={name}", f"run.max_steps={N}", "run.ckpt_every_steps=2",
            "run.log_every=1", *OVER, *extra]


def run_dir(name):
    """Where the run's checkpoints go: WORK/name, or a sweep's cell folder inside it."""
    top = os.path.join(WORK, name)
    if COMMAND != "sweep":
        return top
    cells = sorted(d for d in glob.glob(os.path.join(top, "*")) if os.path.isdir(d))
    return cells[0] if cells else os.path.join(top, "(no cell yet)")


def run(name, *extra):
    p = subprocess.run(cmd(name, *extra), capture_output=True, text=True, env=ENV, timeout=600)
    if p.returncode != 0:
        print(p.stdout[-3000:], p.stderr[-3000:])
    return p


def rank_pid(mpirun_pid, rank):
    """The pid of a rank mpirun started on this node (its child, with OMPI_COMM_WORLD_RANK set)."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != mpirun_pid:
                continue
            pid = int(stat.split("/")[2])
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            if f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
                return pid
        except (OSError, ValueError, IndexError):
            continue
    return None


def same_final(name):
    last = f"ckpt-{N:08d}.safetensors"
    a, b = os.path.join(run_dir(name), last), os.path.join(run_dir("whole"), last)
    if not os.path.exists(a):
        return False, f"{a} missing"
    return same_state(a, b)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
seed = int(os.environ.get("TW_KILL_SEED", time.time_ns() % 100000))
k = random.Random(seed).randint(3, N - 1)   # the step-2 checkpoint is written before step 3 is recorded
print(f"# {COMMAND}: kill seed {seed}: rank 1 dies after step {k} of {N}", flush=True)

p = run("whole", "run.resume=never")
check(p.returncode == 0, f"the uninterrupted run finishes (exit {p.returncode})")

# 2. SIGKILL of rank 1 after step k.
# Rank 0 appends and flushes a metrics line after every step (mpirun may hold back stdout).
proc = subprocess.Popen(cmd("kill", "run.resume=never"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        env=ENV)
killed = False
while proc.poll() is None and not killed:
    try:
        with open(os.path.join(run_dir("kill"), "metrics.jsonl")) as f:
            steps = [json.loads(line)["step"] for line in f if line.endswith("\n")]
    except (OSError, ValueError):
        steps = []
    if steps and steps[-1] >= k:
        pid = rank_pid(proc.pid, 1)
        if pid:
            os.kill(pid, signal.SIGKILL)
            killed = True
    time.sleep(0.005)
rc = proc.wait(timeout=300)
check(killed and rc != 0, f"rank 1 SIGKILLed after step {k} ends the job (killed {killed}, exit {rc})")
# A kill can also tear rank 0's last metrics line: append one such line.
with open(os.path.join(run_dir("kill"), "metrics.jsonl"), "a") as f:
    f.write('{"step": 99, "epoch": 0, "lo')
p = run("kill", "run.resume=auto")
check(p.returncode == 0 and "resumed from" in p.stdout,
      "the restart with resume=auto resumes from a checkpoint and finishes")
ok, why = same_final("kill")
check(ok, f"after the kill and resume, the last checkpoint equals the uninterrupted run's ({why})")


def metrics_steps(name):
    with open(os.path.join(run_dir(name), "metrics.jsonl")) as f:
        try:
            return [m["step"] for m in map(json.loads, f) if "monitor" not in m]   # monitor lines: docs/monitor.md
        except ValueError as e:
            return f"a line is not JSON: {e}"


steps = metrics_steps("kill")
check(steps == list(range(1, N + 1)), f"metrics.jsonl after the resume: steps 1..{N} once each, no torn line ({steps})")

# 3. SIGKILL of rank 0 during a checkpoint write (after the first checkpoint exists).
proc = subprocess.Popen(cmd("wkill", "run.resume=never"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        env=ENV)
killed_during = None
while proc.poll() is None and killed_during is None:
    wdir = run_dir("wkill")
    names = os.listdir(wdir) if os.path.isdir(wdir) else []
    tmp = [n for n in names if n.startswith("ckpt-") and ".tmp." in n]
    done = [n for n in names if re.fullmatch(r"ckpt-\d{8}\.safetensors", n)]
    if tmp and done:
        pid = rank_pid(proc.pid, 0)
        if pid:
            os.kill(pid, signal.SIGKILL)
            killed_during = tmp[0]
    time.sleep(0.0005)
rc = proc.wait(timeout=300)
check(killed_during is not None and rc != 0, f"rank 0 SIGKILLed while writing {killed_during} ends the job (exit {rc})")
wdir = run_dir("wkill")
left = sorted(os.listdir(wdir))
print(f"#   left in the run directory: {left}", flush=True)
p = run("wkill", "run.resume=auto")
torn = [n for n in os.listdir(wdir) if ".tmp." in n]
check(not torn, f"the restart removed the torn temporary files ({torn})")
m = re.search(r"resumed from (\S+) at step (\d+)", p.stdout)
check(p.returncode == 0 and m is not None, "the restart resumes from a checkpoint written before the kill")
if m and killed_during:
    step_killed = int(killed_during[5:13])
    check(int(m.group(2)) <= step_killed, f"it is the one before the torn write (step {m.group(2)}, "
          f"the write of step {step_killed} was killed)")
ok, why = same_final("wkill")
check(ok, f"after a kill during a checkpoint write and resume, the last checkpoint equals the uninterrupted "
      f"run's ({why})")
steps = metrics_steps("wkill")
check(steps == list(range(1, N + 1)), f"metrics.jsonl after that resume: steps 1..{N} once each ({steps})")

print("FAIL" if failures else "PASS")
if not failures:   # the runs' checkpoints are gigabytes; kept only to look into a failure
    shutil.rmtree(WORK, ignore_errors=True)
sys.exit(1 if failures else 0)
