#!/usr/bin/env python3
"""bench/loader, the read cost of compression: the real BigEarthNet v2 samples (24 S1 + S2 pairs at
120 px, tests/data/samples) converted with each --compress this HDF5 can write, then the loader
(bench_loader: S1 + 12 S2 bands, shuffled, normalised, batch 8) reading them on one core, alternating
rounds, medians. LZ4 and zstd are PyPI hdf5plugin's HDF5 plugins (launch/requirements.txt), found
through HDF5_PLUGIN_PATH. The shards sit in the page cache, so this is the decoding cost alone; on storage
slower than the decoder, smaller files may read faster.

usage: bench_compress.py TWINFUSE BENCH_LOADER DATA_DIR TOOLS_DIR [--rounds R] [--batches B]
prints: bench loader_<codec> twinfuse=<samples/s> none=<samples/s> ratio=<x/none> unit=samples/s bytes=<ratio>"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import hdf5plugin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("twinfuse")
    ap.add_argument("bench_loader")
    ap.add_argument("data")
    ap.add_argument("tools")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=300)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tw_bench_compress_")
    v2 = os.path.join(a.data, "bigearthnet-v2-sample")
    meta = os.path.join(tmp, "meta.jsonl")
    with open(meta, "w") as f:
        subprocess.run([sys.executable, os.path.join(a.tools, "reben_metadata.py"), os.path.join(v2, "metadata.parquet"),
                        os.path.join(v2, "metadata_for_patches_with_snow_cloud_or_shadow.parquet")], stdout=f, check=True)
    env = dict(os.environ, HDF5_PLUGIN_PATH=hdf5plugin.PLUGIN_PATH)
    dirs, sizes = {}, {}
    for codec in ("none", "deflate", "lz4", "zstd"):
        d = os.path.join(tmp, codec)
        r = subprocess.run([a.twinfuse, "convert", "--layout", "v2", "--root", v2, "--metadata", meta, "--split", "train",
                            "--no-progress", "--compress", codec, "--out", d], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(f"# {codec}: not measured: {r.stderr.strip()}")
            continue
        dirs[codec] = d
        sizes[codec] = sum(os.path.getsize(p) for p in glob.glob(os.path.join(d, "*.h5")))
    rates = {c: [] for c in dirs}
    for _ in range(a.rounds):
        for codec, d in dirs.items():
            r = subprocess.run(["taskset", "-c", "0", a.bench_loader, d, "train", "8", str(a.batches)],
                               capture_output=True, text=True, check=True, env=env)
            rates[codec].append(float(r.stdout.split("samples_per_s=")[1].split()[0]))
    base = statistics.median(rates["none"])
    for codec in dirs:
        m = statistics.median(rates[codec])
        print(f"bench loader_{codec} twinfuse={m:.0f} none={base:.0f} ratio={m / base:.2f} unit=samples/s "
              f"bytes={sizes[codec] / sizes['none']:.2f} spread={min(rates[codec]):.0f}-{max(rates[codec]):.0f}")
    shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
