#!/usr/bin/env python3
"""bench/loader, start-up at scale (index only): SHARDS shards of SAMPLES/SHARDS samples of 1x1
pixels (version 1 shards written in bulk with h5py, as tests/data/test_shard_v2.py lays them out),
then twinfuse's loader start-up (list, peek every shard's attributes, the per-shard index, the
first batch of 64) against the peer a PyTorch user writes (bench_loader.py's ShardDataset: h5py
opens every file, a (file, row) index per sample, the first batch through a DataLoader). One core,
alternating rounds, medians; peak resident memory of each process.

usage: bench_index.py BENCH_INDEX [--samples N] [--shards S] [--rounds R] [--dir D]
prints: bench loader_startup twinfuse=<s> pytorch=<s> ratio=<x/y> unit=s samples=N shards=S
        bench loader_random_access twinfuse=<samples/s> pytorch=<samples/s> ratio=<x/y> unit=samples/s/core
        # rss_kib twinfuse=<kib> pytorch=<kib>
The default (10,000 samples in 100 shards) runs in seconds; the figure of the issue is
--samples 1000000 --shards 1000."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "data"))

PEER = r'''
import glob, os, resource, sys, time
t0 = time.perf_counter()
import h5py, torch
from torch.utils.data import DataLoader, Dataset
class ShardDataset(Dataset):
    def __init__(self, d):
        self.files = [h5py.File(p, "r") for p in sorted(glob.glob(os.path.join(d, "train-*.h5")))]
        self.index = [(k, i) for k, f in enumerate(self.files) for i in range(f["s2"].shape[0])]
    def __len__(self):
        return len(self.index)
    def __getitem__(self, j):
        k, i = self.index[j]
        f = self.files[k]
        return torch.from_numpy(f["s2"][i].astype("float32")), torch.from_numpy(f["s1"][i])
t1 = time.perf_counter()
ds = ShardDataset(sys.argv[1])
it = iter(DataLoader(ds, batch_size=64, shuffle=True, num_workers=0))
next(it)
t2 = time.perf_counter()
n_batches = int(sys.argv[2])
for _ in range(n_batches):
    next(it)
t3 = time.perf_counter()
rate = n_batches * 64 / (t3 - t2) if n_batches else 0.0
print(f"seconds={t2 - t1:.4f} samples_per_s={rate:.1f} rss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} "
      f"samples={len(ds)}")
'''


def parse(out):
    return {k: float(v) for k, v in (kv.split("=") for kv in out.split())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench_index")
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=50, help="shuffled batches of 64 read after start-up")
    ap.add_argument("--dir")
    a = ap.parse_args()
    import test_shard_v2
    d = a.dir or tempfile.mkdtemp(prefix="tw_bench_index_")
    os.makedirs(d, exist_ok=True)
    per = a.samples // a.shards
    if not os.path.exists(os.path.join(d, f"train-{a.shards - 1:05d}.h5")):   # --dir keeps them between runs
        for k in range(a.shards):
            test_shard_v2.write_v1(os.path.join(d, f"train-{k:05d}.h5"), CLASSES19, n=per, h=1, w=1)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    tw, py = [], []
    for _ in range(a.rounds):
        r = subprocess.run(["taskset", "-c", "0", a.bench_index, d, str(a.batches)], capture_output=True, text=True, env=env)
        if r.returncode:
            print(r.stderr)
            return 1
        tw.append(parse(r.stdout))
        r = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", PEER, d, str(a.batches)], capture_output=True, text=True, env=env)
        if r.returncode:
            print(r.stderr)
            return 1
        py.append(parse(r.stdout))
    t = statistics.median(x["seconds"] for x in tw)
    p = statistics.median(x["seconds"] for x in py)
    print(f"bench loader_startup twinfuse={t:.4f} pytorch={p:.4f} ratio={t / p:.3f} unit=s samples={per * a.shards} "
          f"shards={a.shards} spread_twinfuse={min(x['seconds'] for x in tw):.4f}-{max(x['seconds'] for x in tw):.4f}")
    t = statistics.median(x["samples_per_s"] for x in tw)
    p = statistics.median(x["samples_per_s"] for x in py)
    print(f"bench loader_random_access twinfuse={t:.0f} pytorch={p:.0f} ratio={t / p:.2f} unit=samples/s/core "
          f"samples={per * a.shards} shards={a.shards} (1x1 px: the cost of finding and reading a sample)")
    print(f"# rss_kib twinfuse={int(statistics.median(x['rss_kib'] for x in tw))} "
          f"pytorch={int(statistics.median(x['rss_kib'] for x in py))} (peak resident, whole process)")
    if not a.dir:
        shutil.rmtree(d)
    return 0


CLASSES19 = ["Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops", "Pastures",
             "Complex cultivation patterns",
             "Land principally occupied by agriculture, with significant areas of natural vegetation",
             "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
             "Natural grassland and sparsely vegetated areas", "Moors, heathland and sclerophyllous vegetation",
             "Transitional woodland, shrub", "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands",
             "Inland waters", "Marine waters"]   # src/data/labels.c, the shards' `classes`

if __name__ == "__main__":
    sys.exit(main())
