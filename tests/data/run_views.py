#!/usr/bin/env python3
"""data.views end to end: a small SSL4EO-S12 archive (test_convert_ssl4eo.make_archive) converted
with S1 + L2A, then `twinfuse pretrain` for a step with data.views=seasonal (S2) and
data.views=cross (S1 with S2): finite losses and a checkpoint each; seasonal views over shards
without a time axis (BigEarthNet-like, from `twinfuse synth`) are refused naming the shard; a
seasonal run with loss.pairing cross is a configuration error naming data.views.

usage: run_views.py TWINFUSE CONFIG_DIR        Exit 0 pass, 1 fail."""
import glob
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_convert_ssl4eo  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import failures, require  # noqa: E402


def main():
    tw, configs = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="tw_views_")
    arch, shards, flat = (os.path.join(tmp, d) for d in ("arch", "shards", "flat"))
    test_convert_ssl4eo.make_archive(arch, np.random.default_rng(2))
    r = subprocess.run([tw, "convert", "--layout", "ssl4eo", "--root", arch, "--products", "s1,s2a", "--size", "48",
                        "--no-progress", "--out", shards], capture_output=True, text=True)
    require(r.returncode == 0, f"convert: {r.stderr}")
    subprocess.run([tw, "synth", "--out", flat, "--size", "48", "--train", "4", "--val", "0", "--test", "0", "--clouds",
                    "0"], check=True, stdout=subprocess.DEVNULL)
    common = [f"run.out_dir={tmp}/runs", "data.size=32", "data.batch=2", "backend.threads=1", "backend.precision=fp32",
              "run.log_every=1", "run.resume=never", "model.projector_dim=64", "run.max_steps=1"]
    cfg = os.path.join(configs, "pretrain", "demo_s2.yaml")
    for views, source in (("seasonal", "s2"), ("cross", "s1+s2")):
        r = subprocess.run([tw, "pretrain", cfg, f"data.shards={shards}", f"run.name={views}", f"data.views={views}",
                            f"data.source={source}"] + common, capture_output=True, text=True)
        losses = [float(x) for x in re.findall(r"loss ([0-9.e+-]+) \|", r.stdout)]
        require(r.returncode == 0 and len(losses) == 1 and all(math.isfinite(x) for x in losses),
              f"{views}: rc {r.returncode} losses {losses} {r.stderr[-500:]}")
        require(glob.glob(os.path.join(tmp, "runs", views, "ckpt-*.safetensors")), f"{views}: no checkpoint")
        print(f"ok   {views}: losses {losses}")
    r = subprocess.run([tw, "pretrain", cfg, f"data.shards={flat}", "run.name=flat", "data.views=seasonal"] + common,
                       capture_output=True, text=True)
    require(r.returncode != 0 and "train-00000.h5" in r.stderr and "time axis" in r.stderr,
          f"seasonal over shards without a time axis: rc {r.returncode} {r.stderr[-400:]}")
    r = subprocess.run([tw, "pretrain", cfg, f"data.shards={shards}", "run.name=bad", "data.views=seasonal",
                        "data.source=s1+s2", "loss.pairing=cross"] + common, capture_output=True, text=True)
    require(r.returncode != 0 and "data.views" in r.stderr, f"seasonal with loss.pairing cross: {r.stderr[-300:]}")
    shutil.rmtree(tmp)
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
