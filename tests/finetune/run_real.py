"""The genuine BigEarthNet v2 (reBEN) samples end to end: convert -> a few steps of S1+S2 early-fusion
fine-tuning -> evaluate on every split with predictions, whose metrics scikit-learn recomputes
(tests/train/check_predictions.py) to the report's numbers.
usage: run_real.py TWINFUSE PYTHON SAMPLES_DIR TOOLS_DIR WORK_DIR"""
import os
import shutil
import subprocess
import sys

TWINFUSE, PYTHON, SAMPLES, TOOLS, WORK = sys.argv[1:6]
HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
v2 = os.path.join(SAMPLES, "bigearthnet-v2-sample")
if not os.path.isdir(v2):
    sys.exit(f"FAIL: {v2} is missing (the genuine samples are part of the repository)")
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
failures = []


def run(*cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if p.returncode != 0:
        print(p.stdout[-3000:], p.stderr[-3000:])
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}")
    return p


meta = os.path.join(WORK, "meta.jsonl")
with open(meta, "w") as fh:
    subprocess.run([PYTHON, os.path.join(TOOLS, "reben_metadata.py"), os.path.join(v2, "metadata.parquet"),
                    os.path.join(v2, "metadata_for_patches_with_snow_cloud_or_shadow.parquet")], stdout=fh, check=True)
shards = os.path.join(WORK, "shards")
run(TWINFUSE, "convert", "--layout", "v2", "--root", v2, "--metadata", meta, "--shard-size", "8", "--no-progress",
    "--out", shards)
splits = sorted({f.split("-")[0] for f in os.listdir(shards) if f.endswith(".h5")})
print("# splits:", " ".join(splits))
cfg = os.path.join(HERE, "..", "..", "configs", "finetune", "early.yaml")
p = run(TWINFUSE, "finetune", cfg, f"data.shards={shards}", f"run.out_dir={WORK}", "run.name=real", "data.size=64",
        "data.batch=2", "optim.epochs=2", "run.log_every=1", "backend.threads=1", "backend.precision=fp32")
print("\n".join(l for l in p.stdout.splitlines() if "validation" in l or "done" in l))
best = os.path.join(WORK, "real", "best.safetensors")
report, pred = os.path.join(WORK, "eval.json"), os.path.join(WORK, "pred.csv")
asked = [s for s in ("val", "test", "clouds") if s in splits]
args = [a for s in asked for a in ("--split", s)]
p = run(TWINFUSE, "evaluate", best, *args, "--json", report, "--predictions", pred, "backend.threads=1")
print(p.stdout.strip()[-1500:])
checker = os.path.join(HERE, "..", "train", "check_predictions.py")
for s in asked:
    path = pred if len(asked) == 1 else os.path.join(WORK, f"pred-{s}.csv")
    r = subprocess.run([PYTHON, checker, path, report, s], capture_output=True, text=True)
    ok = r.returncode == 0
    print(("ok   " if ok else "FAIL ") + f"{s}: report equals scikit-learn on the predictions file {r.stdout.strip()[-300:]}")
    if not ok:
        failures.append(s)
print("FAIL" if failures else "PASS")
if not failures:   # the runs' checkpoints are gigabytes; kept only to look into a failure
    shutil.rmtree(WORK, ignore_errors=True)
sys.exit(1 if failures else 0)
