#!/usr/bin/env python3
"""bench/loader: twinfuse's loader against h5py + a PyTorch DataLoader on the same shards.

Both read S1 + all 12 S2 bands of 120x120 pairs, shuffled, normalised per band to f32, batch 64,
pinned to ONE core (the loader's prefetch thread and its consumer share it; the DataLoader runs
with num_workers=0). Rounds alternate twinfuse / PyTorch; medians and the spread are reported.

usage: bench_loader.py TWINFUSE BENCH_LOADER [--samples N] [--rounds R] [--batches B] [--dir D]
prints: bench loader_120 twinfuse=<x> pytorch=<y> ratio=<x/y> unit=samples/s ..."""
import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

# The slowest Barlow Twins step measured on 2 cores (docs/machine-facts: 20-60 pairs/s).
BT_PAIRS_PER_S = 60.0


class ShardDataset(Dataset):
    """The straightforward PyTorch way: h5py files opened once, one sample per __getitem__."""

    def __init__(self, d, split):
        self.files = [h5py.File(p, "r") for p in sorted(glob.glob(os.path.join(d, f"{split}-*.h5")))]
        self.index = [(k, i) for k, f in enumerate(self.files) for i in range(f["s2"].shape[0])]
        a = self.files[0].attrs
        self.s2_mean = torch.tensor(a["s2_mean"], dtype=torch.float32).view(12, 1, 1)
        self.s2_std = torch.tensor(a["s2_std"], dtype=torch.float32).view(12, 1, 1)
        self.s1_mean = torch.tensor(a["s1_mean"], dtype=torch.float32).view(2, 1, 1)
        self.s1_std = torch.tensor(a["s1_std"], dtype=torch.float32).view(2, 1, 1)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, n):
        k, i = self.index[n]
        f = self.files[k]
        s2 = (torch.from_numpy(f["s2"][i].astype(np.float32)) - self.s2_mean) / self.s2_std
        s1 = (torch.from_numpy(f["s1"][i]) - self.s1_mean) / self.s1_std
        labels = torch.from_numpy(f["labels"][i].astype(np.float32))
        return s1, s2, labels, n


def run_pytorch(d, batch, n_batches):
    torch.set_num_threads(1)
    loader = DataLoader(ShardDataset(d, "train"), batch_size=batch, shuffle=True, drop_last=True, num_workers=0)
    n, t0, it = 0, time.perf_counter(), iter(loader)
    for _ in range(n_batches):
        try:
            s1, s2, labels, idx = next(it)
        except StopIteration:
            it = iter(loader)
            s1, s2, labels, idx = next(it)
        n += s1.shape[0]
    return n / (time.perf_counter() - t0)


def run_twinfuse(bench, d, batch, n_batches):
    r = subprocess.run(["taskset", "-c", str(CORE), bench, d, "train", str(batch), str(n_batches)],
                       capture_output=True, text=True, check=True)
    return float(r.stdout.split()[0].split("=")[1])


def main():
    global CORE
    ap = argparse.ArgumentParser()
    ap.add_argument("twinfuse")
    ap.add_argument("bench_loader")
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dir", default=None, help="existing shard directory (default: a fresh synthetic one)")
    a = ap.parse_args()
    CORE = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {CORE})   # the PyTorch peer: one core
    tmp = None
    d = a.dir
    if d is None:
        tmp = tempfile.mkdtemp(prefix="tw_bench_loader_", dir=os.environ.get("TMPDIR", "/tmp"))
        d = os.path.join(tmp, "shards")
        subprocess.run([a.twinfuse, "synth", "--out", d, "--size", "120", "--train", str(a.samples), "--val", "0",
                        "--test", "0", "--clouds", "0", "--shard-size", "256", "--threads", "2"],
                       check=True, stdout=subprocess.DEVNULL)
    # Warm the page cache for both (the shards are read from local disk, then from memory).
    run_twinfuse(a.bench_loader, d, a.batch, a.samples // a.batch)
    tw, pt = [], []
    for _ in range(a.rounds):
        tw.append(run_twinfuse(a.bench_loader, d, a.batch, a.batches))
        pt.append(run_pytorch(d, a.batch, a.batches))
    x, y = statistics.median(tw), statistics.median(pt)
    print(f"bench loader_120_s1s2 twinfuse={x:.1f} pytorch={y:.1f} ratio={x / y:.2f} unit=samples/s "
          f"twinfuse_range={min(tw):.0f}-{max(tw):.0f} pytorch_range={min(pt):.0f}-{max(pt):.0f} "
          f"cores=1 batch={a.batch} rounds={a.rounds} vs_bt_step={x / BT_PAIRS_PER_S:.0f}x")
    if tmp:
        subprocess.run(["rm", "-rf", tmp], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
