#!/usr/bin/env python3
"""`twinfuse convert --compress`: the real BigEarthNet v2 samples converted with deflate, LZ4 and zstd
(the last two: PyPI hdf5plugin's HDF5 plugins, which launch/setup installs, through
HDF5_PLUGIN_PATH) hold exactly the uncompressed conversion's datasets and normalisation, h5py
reads them (and sees the filter), the loader reads an epoch of them; without the plugin a filter
is refused up front by the converter and named by the loader.

usage: test_compress.py TWINFUSE SHARD_PROBE DATA_DIR TOOLS_DIR PYTHON    Exit 0 pass, 1 fail."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import hdf5plugin
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import failures, require  # noqa: E402


def main():
    tw, probe, data, tools, python = sys.argv[1:6]
    tmp = tempfile.mkdtemp(prefix="tw_compress_")
    v2 = os.path.join(data, "bigearthnet-v2-sample")
    meta = os.path.join(tmp, "meta.jsonl")
    with open(meta, "w") as f:
        subprocess.run([python, os.path.join(tools, "reben_metadata.py"), os.path.join(v2, "metadata.parquet"),
                        os.path.join(v2, "metadata_for_patches_with_snow_cloud_or_shadow.parquet")], stdout=f, check=True)
    base = [tw, "convert", "--layout", "v2", "--root", v2, "--metadata", meta, "--no-progress", "--shard-size", "8"]
    plain = os.path.join(tmp, "none")
    r = subprocess.run(base + ["--out", plain], capture_output=True, text=True)
    require(r.returncode == 0, f"uncompressed: {r.stderr}")
    with_plugins = dict(os.environ, HDF5_PLUGIN_PATH=hdf5plugin.PLUGIN_PATH)
    no_plugins = dict(os.environ, HDF5_PLUGIN_PATH=os.path.join(tmp, "no-plugins"))
    for codec in ("deflate", "lz4", "zstd"):
        out = os.path.join(tmp, codec)
        if codec != "deflate":
            r = subprocess.run(base + ["--compress", codec, "--out", out], capture_output=True, text=True, env=no_plugins)
            require(r.returncode != 0 and "not installed" in r.stderr and codec in r.stderr
                    and not glob.glob(os.path.join(out, "*.h5")), f"{codec} without its plugin: rc {r.returncode} {r.stderr}")
        r = subprocess.run(base + ["--compress", codec, "--out", out], capture_output=True, text=True, env=with_plugins)
        if not require(r.returncode == 0, f"{codec}: {r.stderr}"):
            continue
        names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(plain, "*.h5")))
        require(names == sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "*.h5"))), f"{codec}: shards")
        size_plain = size_packed = 0
        for n in names:
            with h5py.File(os.path.join(plain, n), "r") as f, h5py.File(os.path.join(out, n), "r") as g:
                size_plain += os.path.getsize(os.path.join(plain, n))
                size_packed += os.path.getsize(os.path.join(out, n))
                require(g.attrs["compression"] == codec, f"{codec} {n}: attribute compression")
                for k in f.keys():
                    require(np.array_equal(f[k][()], g[k][()]), f"{codec} {n}: dataset {k}")
                for k in ("s2_mean", "s2_std", "s1_mean", "s1_std"):
                    require(np.array_equal(f.attrs[k], g.attrs[k]), f"{codec} {n}: {k}")
                filters = g["s2"].id.get_create_plist()
                ids = [filters.get_filter(i)[0] for i in range(filters.get_nfilters())]
                want = {"deflate": h5py.h5z.FILTER_DEFLATE, "lz4": hdf5plugin.LZ4_ID, "zstd": hdf5plugin.ZSTD_ID}[codec]
                require(ids == [h5py.h5z.FILTER_SHUFFLE, want] and g["s2"].chunks == f["s2"].chunks,
                        f"{codec} {n}: s2 filters {ids}")
        for split in ("train", "val", "test"):
            r = subprocess.run([probe, out, split], capture_output=True, text=True, env=with_plugins)
            require(r.returncode == 0, f"{codec}: the loader on {split}: {r.stderr}")
        if codec != "deflate":
            r = subprocess.run([probe, out, "train"], capture_output=True, text=True, env=no_plugins)
            require(r.returncode != 0 and f"filter {want}" in r.stderr and "HDF5_PLUGIN_PATH" in r.stderr,
                    f"{codec}: the loader without its plugin: rc {r.returncode} {r.stderr}")
        print(f"ok   {codec}: {size_packed / size_plain:.2f} of the uncompressed bytes")
    r = subprocess.run(base + ["--compress", "brotli", "--out", os.path.join(tmp, "x")], capture_output=True, text=True)
    require(r.returncode == 2 and "--compress" in r.stderr, f"--compress brotli: {r.returncode} {r.stderr}")
    shutil.rmtree(tmp)
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
