#!/usr/bin/env python3
"""bench/convert: `twinfuse convert` against the Python peer a torchgeo user writes, on the real
BigEarthNet v2 samples (24 S1 + S2 pairs; --repeat k makes k copies under new names, symlinked).

- twinfuse: --layout v2, --threads 1, pinned to one core (taskset), then `mpirun -np 2` on two
  cores (1 -> 2 ranks scaling, same shards);
- the peer, pinned to the same core: per patch, rasterio reads of the 12 S2 bands with
  read(out_shape=(120, 120), resampling=bilinear) (torchgeo's BigEarthNet reads them so) and of VV,
  VH; numpy stacks them; h5py appends them to shards of the same layout (datasets chunked one
  sample per chunk), then per-band mean and std with numpy and attributes on every shard.
Rounds alternate, medians of patches/s (per core for the 1-core runs): twinfuse's own time (its
summary: listing, reading, writing, normalisation; not the process or MPI start), the peer's from
after its imports.

usage: bench_convert.py TWINFUSE MPIEXEC DATA_DIR TOOLS_DIR [--repeat K] [--rounds R]
prints: bench convert_ben_v2 twinfuse=<x> pytorch=<y> ratio=<x/y> unit=patches/s/core ...
        bench convert_ranks twinfuse=<2 ranks> one_rank=<1 rank> ratio=<x/y> unit=patches/s ..."""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

PEER = r'''
import glob, json, os, sys, time
import h5py, numpy as np, rasterio
from rasterio.enums import Resampling
root, meta, out, shard = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
rows = [json.loads(l) for l in open(meta)]
rows = [r for r in rows if not r["contains_seasonal_snow"]]
rows.sort(key=lambda r: r["patch_id"])
os.makedirs(out, exist_ok=True)
t0 = time.perf_counter()
def cut(name, k):
    return name.rsplit("_", k)[0]
s2_all, s1_all = [], []
for j in range(0, len(rows), shard):
    with h5py.File(os.path.join(out, f"train-{j // shard:05d}.h5"), "w") as f:
        n = len(rows[j:j + shard])
        d2 = f.create_dataset("s2", (n, 12, 120, 120), "uint16", chunks=(1, 12, 120, 120))
        d1 = f.create_dataset("s1", (n, 2, 120, 120), "float32", chunks=(1, 2, 120, 120))
        lab = f.create_dataset("labels", (n, 19), "uint8", chunks=(1, 19))
        for i, r in enumerate(rows[j:j + shard]):
            p2, p1 = r["patch_id"], r["s1_name"]
            d = f"{root}/BigEarthNet-S2/{cut(p2, 2)}/{p2}"
            s2 = np.stack([rasterio.open(f"{d}/{p2}_{b}.tif").read(1, out_shape=(120, 120), resampling=Resampling.bilinear)
                           for b in BANDS])
            d = f"{root}/BigEarthNet-S1/{cut(p1, 3)}/{p1}"
            s1 = np.stack([rasterio.open(f"{d}/{p1}_{b}.tif").read(1) for b in ("VV", "VH")])
            d2[i], d1[i] = s2, s1
            s2_all.append(s2.reshape(12, -1).astype(np.float64))
            s1_all.append(s1.reshape(2, -1).astype(np.float64))
x2, x1 = np.concatenate(s2_all, axis=1), np.concatenate(s1_all, axis=1)
for p in glob.glob(os.path.join(out, "train-*.h5")):
    with h5py.File(p, "a") as f:
        f.attrs["s2_mean"], f.attrs["s2_std"] = x2.mean(axis=1), x2.std(axis=1, ddof=1)
        f.attrs["s1_mean"], f.attrs["s1_std"] = x1.mean(axis=1), x1.std(axis=1, ddof=1)
print(f"patches={len(rows)} seconds={time.perf_counter() - t0:.4f}")
'''


def replicate(src, dst, meta_rows, k):
    """k copies of the archive under new patch names (symlinked files) and their metadata rows."""
    rows = []
    for c in range(k):
        for r in meta_rows:
            p2, p1 = r["patch_id"], r["s1_name"]
            t2, x2, y2 = p2.rsplit("_", 2)
            t1, x1, y1 = p1.rsplit("_", 2)
            n2, n1 = f"{t2}_{x2}r{c}_{y2}", f"{t1}_{x1}r{c}_{y1}"
            for kind, old, new, cut in (("S2", p2, n2, 2), ("S1", p1, n1, 3)):
                od = f"{src}/BigEarthNet-{kind}/{old.rsplit('_', cut)[0]}/{old}"
                nd = f"{dst}/BigEarthNet-{kind}/{new.rsplit('_', cut)[0]}/{new}"
                os.makedirs(nd, exist_ok=True)
                for fpath in glob.glob(f"{od}/{old}_*.tif"):
                    os.symlink(fpath, f"{nd}/{new}{os.path.basename(fpath)[len(old):]}")
            rows.append(dict(r, patch_id=n2, s1_name=n1, split="train"))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("twinfuse")
    ap.add_argument("mpiexec")
    ap.add_argument("data")
    ap.add_argument("tools")
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tw_bench_convert_")
    v2 = os.path.abspath(os.path.join(a.data, "bigearthnet-v2-sample"))
    r = subprocess.run([sys.executable, os.path.join(a.tools, "reben_metadata.py"), os.path.join(v2, "metadata.parquet"),
                        os.path.join(v2, "metadata_for_patches_with_snow_cloud_or_shadow.parquet")],
                       capture_output=True, text=True, check=True)
    rows = replicate(v2, os.path.join(tmp, "ben"), [json.loads(l) for l in r.stdout.splitlines() if l.strip()], a.repeat)
    meta = os.path.join(tmp, "meta.jsonl")
    with open(meta, "w") as f:
        for row in rows:
            row = dict(row, contains_cloud_or_shadow=False)   # every patch to train: one split, like the peer
            f.write(json.dumps(row) + "\n")
    root = os.path.join(tmp, "ben")
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    tw_cmd = [a.twinfuse, "convert", "--layout", "v2", "--root", root, "--metadata", meta, "--no-progress",
              "--threads", "1", "--shard-size", "32"]
    res = {"tw": [], "peer": [], "tw2": []}
    n = None

    def tw_seconds(cmd, out):
        shutil.rmtree(out, ignore_errors=True)
        p = subprocess.run(cmd + ["--out", out], check=True, env=env, capture_output=True, text=True)
        return float(p.stdout.split(" in ")[1].split(" s")[0])

    for _ in range(a.rounds):
        res["tw"].append(tw_seconds(["taskset", "-c", "0"] + tw_cmd, os.path.join(tmp, "tw")))
        out = os.path.join(tmp, "peer")
        shutil.rmtree(out, ignore_errors=True)
        p = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", PEER, root, meta, out, "32"], check=True, env=env,
                           capture_output=True, text=True)
        res["peer"].append(float(p.stdout.split("seconds=")[1].split()[0]))
        n = int(p.stdout.split("patches=")[1].split()[0])
        res["tw2"].append(tw_seconds([a.mpiexec, "-np", "2", "--oversubscribe"] + tw_cmd, os.path.join(tmp, "tw2")))
    tw, peer, tw2 = (n / statistics.median(res[k]) for k in ("tw", "peer", "tw2"))
    print(f"bench convert_ben_v2 twinfuse={tw:.1f} pytorch={peer:.1f} ratio={tw / peer:.2f} unit=patches/s/core "
          f"patches={n} spread_twinfuse={n / max(res['tw']):.1f}-{n / min(res['tw']):.1f} "
          f"spread_pytorch={n / max(res['peer']):.1f}-{n / min(res['peer']):.1f}")
    print(f"bench convert_ranks twinfuse={tw2:.1f} one_rank={tw:.1f} ratio={tw2 / tw:.2f} unit=patches/s "
          f"ranks=2 cores=2")
    shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
