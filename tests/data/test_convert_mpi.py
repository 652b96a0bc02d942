#!/usr/bin/env python3
"""`mpirun -np 2 twinfuse convert` against one process: the real BigEarthNet v2 samples (24 pairs,
shards of 3) and a small SSL4EO-S12 archive (test_convert_ssl4eo.make_archive) converted on 1 and
on 2 ranks give the same shards, dataset by dataset and attribute by attribute (the normalisation
bit for bit); the summary comes once, from rank 0, with the whole job's counts; a 2-rank rerun
after shards were deleted redoes exactly those and ends with the same shards.

usage: test_convert_mpi.py TWINFUSE MPIEXEC DATA_DIR TOOLS_DIR PYTHON    Exit 0 pass, 1 fail."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_convert_ssl4eo  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import failures, require  # noqa: E402


def shards(d):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(d, "*-[0-9][0-9][0-9][0-9][0-9].h5")))


def same_shards(a, b, what):
    names = shards(a)
    if not require(names and names == shards(b), f"{what}: shard lists {names} vs {shards(b)}"):
        return
    for n in names:
        with h5py.File(os.path.join(a, n), "r") as f, h5py.File(os.path.join(b, n), "r") as g:
            require(sorted(f.keys()) == sorted(g.keys()), f"{what} {n}: datasets")
            for k in f.keys():
                require(np.array_equal(f[k][()], g[k][()], equal_nan=f[k].dtype.kind == "f"), f"{what} {n}: dataset {k}")
            require(sorted(f.attrs.keys()) == sorted(g.attrs.keys()), f"{what} {n}: attribute names")
            for k in f.attrs.keys():
                x, y = np.asarray(f.attrs[k]), np.asarray(g.attrs[k])
                require(x.shape == y.shape and (x == y).all(), f"{what} {n}: attribute {k}: {x} vs {y}")


def main():
    tw, mpiexec, data, tools, python = sys.argv[1:6]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    mpi = [mpiexec, "-np", "2", "--oversubscribe"]
    tmp = tempfile.mkdtemp(prefix="tw_convert_mpi_")
    v2 = os.path.join(data, "bigearthnet-v2-sample")
    meta = os.path.join(tmp, "meta.jsonl")
    with open(meta, "w") as f:
        subprocess.run([python, os.path.join(tools, "reben_metadata.py"), os.path.join(v2, "metadata.parquet"),
                        os.path.join(v2, "metadata_for_patches_with_snow_cloud_or_shadow.parquet")], stdout=f, check=True)
    ssl = os.path.join(tmp, "ssl4eo")
    test_convert_ssl4eo.make_archive(ssl, np.random.default_rng(4))
    layouts = {
        "ben-v2": ["--layout", "v2", "--root", v2, "--metadata", meta, "--shard-size", "3"],
        "ssl4eo": ["--layout", "ssl4eo", "--root", ssl, "--size", "32", "--shard-size", "1"],
    }
    for name, args in layouts.items():
        one, two = os.path.join(tmp, name + "_1"), os.path.join(tmp, name + "_2")
        base = [tw, "convert", "--no-progress", "--threads", "1"] + args
        r1 = subprocess.run(base + ["--out", one], capture_output=True, text=True, env=env)
        require(r1.returncode == 0, f"{name}, 1 rank: {r1.stderr}")
        r2 = subprocess.run(mpi + base + ["--out", two], capture_output=True, text=True, env=env)
        require(r2.returncode == 0, f"{name}, 2 ranks: {r2.stdout} {r2.stderr}")
        require(r2.stdout.count("# convert:") == 1, f"{name}: the summary {r2.stdout.count('# convert:')} times")
        strip = lambda s: [l for l in s.splitlines() if l.startswith("#   ")]
        require(strip(r1.stdout) == strip(r2.stdout), f"{name}: summaries differ:\n{r1.stdout}\n{r2.stdout}")
        same_shards(one, two, f"{name}, 1 vs 2 ranks")
        # Resume: delete one shard of each rank, rerun on 2 ranks.
        names = shards(two)
        for n in names[:2]:
            os.remove(os.path.join(two, n))
        r3 = subprocess.run(mpi + base + ["--out", two], capture_output=True, text=True, env=env)
        require(r3.returncode == 0 and f"kept {len(names) - 2} complete shards" in r3.stdout,
              f"{name}, 2-rank rerun: {r3.stdout} {r3.stderr}")
        same_shards(one, two, f"{name}, after a 2-rank rerun")
        print(f"ok   {name}: {len(names)} shards, 1 rank = 2 ranks")
    # A bad archive under --on-error stop: every rank ends, non-zero, the failing one named.
    os.remove(glob.glob(os.path.join(ssl, "s2a", "0000002", "*", "B5.tif"))[0])
    r = subprocess.run(mpi + [tw, "convert", "--no-progress", "--on-error", "stop", "--out", os.path.join(tmp, "bad")]
                       + layouts["ssl4eo"], capture_output=True, text=True, env=env, timeout=120)
    require(r.returncode != 0 and "B5.tif" in r.stderr and "ranks failed" in r.stderr,
          f"a bad location under --on-error stop: rc {r.returncode} {r.stderr}")
    shutil.rmtree(tmp)
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
