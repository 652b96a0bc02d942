"""resume=auto on 2 ranks whose views of the run directory differ (mpirun MPMD, each rank in its own
working directory, run.out_dir relative), as on nodes with stale or unshared file systems:
1. rank 1 sees a newer checkpoint (step 6) than rank 0 (step 4): both resume from rank 0's choice
   (step 4) and finish, where ranks choosing for themselves would run different steps and hang;
2. rank 1's copy of the chosen checkpoint is corrupt: the job ends (no hang) with a message naming
   rank 1 and the file.
usage: run_resume_ranks.py TWINFUSE CONFIG SHARD_DIR WORK_DIR MPIRUN"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import check, failures  # noqa: E402

TWINFUSE, CONFIG, SHARDS, WORK, MPIRUN = sys.argv[1:6]
COMMON = [f"data.shards={os.path.abspath(SHARDS)}", "run.out_dir=runs", "run.name=r", "data.size=32",
          "data.batch=8", "model.projector_dim=64", "optim.warmup_epochs=0", "optim.epochs=4",
          "run.log_every=1", "backend.threads=1", "run.ckpt_every_steps=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
A, B = os.path.join(WORK, "a"), os.path.join(WORK, "b")



def ranks2(*over):
    """Rank 0 in A, rank 1 in B; returns (exit code or 'hang', output)."""
    cmd = [TWINFUSE, "pretrain", CONFIG, *COMMON, *over]
    full = [MPIRUN, "--oversubscribe", "-x", "OMP_NUM_THREADS=1", "-np", "1", "-wdir", A, *cmd, ":",
            "-np", "1", "-wdir", B, *cmd]
    try:
        p = subprocess.run(full, capture_output=True, text=True, env=ENV, timeout=120)
    except subprocess.TimeoutExpired as e:
        return "hang", (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
    return p.returncode, p.stdout + p.stderr


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(A)
os.makedirs(B)
# B runs to step 6 (keeps the checkpoints of steps 4 and 6); A gets only B's step-4 checkpoint.
p = subprocess.run([TWINFUSE, "pretrain", CONFIG, *COMMON, "run.max_steps=6", "run.resume=never"], cwd=B,
                   capture_output=True, text=True, env=ENV)
if p.returncode != 0:
    print(p.stdout[-3000:], p.stderr[-3000:])
    sys.exit("FAIL: the single-rank run in B failed")
os.makedirs(os.path.join(A, "runs", "r"))
step4 = os.path.join("runs", "r", "ckpt-00000004.safetensors")
shutil.copy(os.path.join(B, step4), os.path.join(A, step4))
check(os.path.exists(os.path.join(B, "runs", "r", "ckpt-00000006.safetensors")), "B holds a step-6 checkpoint")

rc, out = ranks2("run.max_steps=8", "run.resume=auto")
if rc != 0:
    print(out[-4000:])
check(rc == 0, f"ranks with different newest checkpoints finish (exit {rc})")
check("resumed from runs/r/ckpt-00000004.safetensors at step 4" in out, "both resumed from rank 0's step-4 choice")

# Rank 1's copy of the step-4 checkpoint is corrupt, and it has no other.
shutil.rmtree(os.path.join(A, "runs"))
os.makedirs(os.path.join(A, "runs", "r"))
shutil.copy(os.path.join(B, step4), os.path.join(A, step4))
for name in os.listdir(os.path.join(B, "runs", "r")):
    if name.startswith("ckpt-") and name != os.path.basename(step4):
        os.unlink(os.path.join(B, "runs", "r", name))
with open(os.path.join(B, step4), "r+b") as f:
    f.seek(-64, os.SEEK_END)
    f.write(b"\x7f" * 64)
rc, out = ranks2("run.max_steps=8", "run.resume=auto")
print(out[-2000:])
check(rc not in (0, "hang"), f"a rank that cannot load the chosen checkpoint ends the job (exit {rc})")
check("rank 1: " + step4 in out, "the message names rank 1 and the file")

print("FAIL" if failures else "PASS")
sys.exit(1 if failures else 0)
