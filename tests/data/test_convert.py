#!/usr/bin/env python3
"""`twinfuse convert` on the real BigEarthNet samples: v1 (4 pairs) and v2 (24 pairs) converted
and checked pixel by pixel and label by label (check_convert.py); --keep-snow; a resumed run
after an interruption, and after a real SIGKILL mid-shard; and bad archives (missing band file, wrong size, wrong type, unknown
label, S1 without its S2 partner, NaN pixels), each skipped and counted, or fatal with
--on-error stop, with a message naming the file or patch.

usage: test_convert.py TWINFUSE PYTHON DATA_DIR TOOLS_DIR
Exit 0 pass, 1 fail (also when the sample data is absent)."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import rasterio

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from twtest import failures, require  # noqa: E402


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def main():
    twinfuse, python, data, tools = sys.argv[1:5]
    v1 = os.path.join(data, "bigearthnet-v1-sample")
    v2 = os.path.join(data, "bigearthnet-v2-sample")
    if not os.path.isdir(v1) or not os.path.isdir(v2):
        print(f"FAIL: BigEarthNet samples not found under {data} (tests/data/samples in the repository)")
        return 1
    tmp = tempfile.mkdtemp(prefix="tw_convert_")
    checker = os.path.join(HERE, "check_convert.py")

    # ---- v1, a user's subset: every patch to one split --------------------------------------
    out1 = os.path.join(tmp, "v1")
    v1args = [twinfuse, "convert", "--layout", "v1", "--s2", os.path.join(v1, "BigEarthNet-S2"),
              "--s1", os.path.join(v1, "BigEarthNet-S1"), "--no-progress"]
    r = run(v1args + ["--split", "train", "--out", out1])
    require(r.returncode == 0 and "train" in r.stdout, f"v1 convert: {r.returncode} {r.stdout} {r.stderr}")
    r = run([python, checker, "v1", out1, os.path.join(v1, "BigEarthNet-S2"), os.path.join(v1, "BigEarthNet-S1"), "train"])
    require(r.returncode == 0, f"v1 check: {r.stdout}")
    print(r.stdout.strip())

    # ---- v1 with official-style split, cloud and snow lists ---------------------------------
    names = sorted(os.listdir(os.path.join(v1, "BigEarthNet-S2")))
    lists = os.path.join(tmp, "lists")
    os.makedirs(lists)
    # names[1] is cloudy and in no list (as in the official lists), names[2] has snow, names[3]
    # is in no list.
    for split, members in (("train", names[:1]), ("val", names[2:3]), ("test", [])):
        with open(os.path.join(lists, f"{split}.csv"), "w") as fh:
            fh.writelines(f"{n},s1\n" for n in members)
    with open(os.path.join(lists, "clouds.csv"), "w") as fh:
        fh.write(names[1] + "\n")
    with open(os.path.join(lists, "snow.csv"), "w") as fh:
        fh.write(names[2] + "\n")
    out1b = os.path.join(tmp, "v1b")
    r = run(v1args + ["--splits", lists, "--clouds", os.path.join(lists, "clouds.csv"), "--snow",
                      os.path.join(lists, "snow.csv"), "--out", out1b])
    require(r.returncode == 0, f"v1 lists: {r.stderr}")
    require("in no split list" in r.stdout and "seasonal snow" in r.stdout, f"v1 lists summary: {r.stdout}")
    with h5py.File(os.path.join(out1b, "train-00000.h5")) as f:
        require([n.decode() for n in f["name"][:]] == [names[0]], "v1 train split")
    with h5py.File(os.path.join(out1b, "clouds-00000.h5")) as f:
        require([n.decode() for n in f["name"][:]] == [names[1]] and f["flags"][0] == 1, "v1 clouds split")
    require(not os.path.exists(os.path.join(out1b, "val-00000.h5")), "snow patch excluded")

    # ---- v2 (reBEN) through tools/reben_metadata.py -----------------------------------------
    meta = os.path.join(tmp, "meta.jsonl")
    with open(meta, "w") as fh:
        subprocess.run([python, os.path.join(tools, "reben_metadata.py"), os.path.join(v2, "metadata.parquet"),
                        os.path.join(v2, "metadata_for_patches_with_snow_cloud_or_shadow.parquet")], stdout=fh, check=True)
    out2 = os.path.join(tmp, "v2")
    v2args = [twinfuse, "convert", "--layout", "v2", "--root", v2, "--metadata", meta, "--shard-size", "4",
              "--threads", "2", "--no-progress"]
    r = run(v2args + ["--out", out2])
    require(r.returncode == 0 and "skipped        3  seasonal snow" in r.stdout, f"v2 convert: {r.stdout} {r.stderr}")
    r = run([python, checker, "v2", out2, v2])
    require(r.returncode == 0, f"v2 check: {r.stdout}")
    print(r.stdout.strip())

    # Resume: remove one shard, leave a stale temporary file; the rerun keeps the others.
    before = {p: open(p, "rb").read() for p in glob.glob(os.path.join(out2, "*.h5"))}
    victim = os.path.join(out2, "val-00001.h5")
    os.remove(victim)
    open(victim + ".tmp", "wb").write(b"partial")
    r = run(v2args + ["--out", out2])
    require(r.returncode == 0 and "kept 6 complete shards" in r.stdout, f"resume: {r.stdout} {r.stderr}")
    require(not glob.glob(os.path.join(out2, "*.tmp")), "temporary file left after resume")
    with h5py.File(victim) as f, h5py.File(os.path.join(out2, "val-00000.h5")) as g:
        require(f["s2"].shape[0] == 2 and np.array_equal(f.attrs["s2_mean"], g.attrs["s2_mean"]), "resumed shard")
    r = run([python, checker, "v2", out2, v2])
    require(r.returncode == 0, f"v2 check after resume: {r.stdout}")

    # A real SIGKILL while a shard is being written (one thread, 2 patches a shard: about a dozen
    # shards one after another): what is left is complete shards and at most one temporary file,
    # no shard reads as finished (the normalisation comes last), and the rerun completes it.
    out2k = os.path.join(tmp, "v2kill")
    proc = subprocess.Popen(v2args[:-5] + ["--shard-size", "2", "--threads", "1", "--no-progress", "--out", out2k],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = False
    while proc.poll() is None and not killed:
        listing = os.listdir(out2k) if os.path.isdir(out2k) else []
        if any(n.endswith(".h5.tmp") for n in listing) and any(n.endswith(".h5") for n in listing):
            proc.send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.0005)
    proc.wait()
    require(killed, "convert finished before the SIGKILL could land mid-shard")
    for path in glob.glob(os.path.join(out2k, "*.h5")):
        with h5py.File(path) as f:
            require("s2_mean" not in f.attrs and f["s2"].shape[0] == f.attrs["n_samples"],
                  f"{path}: after the kill, a complete shard of an unfinished conversion")
    r = run(v2args[:-5] + ["--shard-size", "2", "--threads", "1", "--no-progress", "--out", out2k])
    require(r.returncode == 0 and "kept" in r.stdout, f"rerun after the kill: {r.stdout} {r.stderr}")
    require(not glob.glob(os.path.join(out2k, "*.tmp")), "temporary file left after the rerun")
    r = run([python, checker, "v2", out2k, v2])
    require(r.returncode == 0, f"v2 check after the kill and rerun: {r.stdout}")

    # --keep-snow: the 3 snow patches stay in their splits, flagged.
    out2s = os.path.join(tmp, "v2snow")
    r = run(v2args + ["--keep-snow", "--out", out2s])
    n_snow = 0
    for p in glob.glob(os.path.join(out2s, "*.h5")):
        with h5py.File(p) as f:
            n_snow += int(((f["flags"][:] & 2) != 0).sum())
    require(r.returncode == 0 and n_snow == 3, f"--keep-snow: {n_snow} snow patches")

    # ---- bad archives (v1 copies with one defect each) --------------------------------------
    pair = names[0]
    s1_of = {}
    for d in os.listdir(os.path.join(v1, "BigEarthNet-S1")):
        with open(os.path.join(v1, "BigEarthNet-S1", d, f"{d}_labels_metadata.json")) as fh:
            s1_of[json.load(fh)["corresponding_s2_patch"]] = d
    s1 = s1_of[pair]

    def write_tif(path, array, like):
        with rasterio.open(like) as src:
            profile = src.profile
        profile.update(width=array.shape[1], height=array.shape[0], dtype=array.dtype.name)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(array, 1)

    def missing_band(root):
        os.remove(os.path.join(root, "BigEarthNet-S2", pair, f"{pair}_B05.tif"))

    def wrong_size(root):
        p = os.path.join(root, "BigEarthNet-S2", pair, f"{pair}_B02.tif")
        write_tif(p, np.ones((60, 60), np.uint16), p)

    def wrong_type(root):
        p = os.path.join(root, "BigEarthNet-S2", pair, f"{pair}_B03.tif")
        write_tif(p, np.ones((120, 120), np.float32), p)

    def unknown_label(root):
        p = os.path.join(root, "BigEarthNet-S2", pair, f"{pair}_labels_metadata.json")
        j = json.load(open(p))
        j["labels"].append("Lunar regolith")
        json.dump(j, open(p, "w"))

    def no_partner(root):
        shutil.rmtree(os.path.join(root, "BigEarthNet-S2", pair))

    def nan_pixel(root):
        p = os.path.join(root, "BigEarthNet-S1", s1, f"{s1}_VV.tif")
        with rasterio.open(p) as src:
            a = src.read(1)
        a[7, 9] = np.nan
        write_tif(p, a, p)

    cases = [
        ("missing band file", missing_band, "missing or malformed band file", [f"{pair}_B05.tif"]),
        ("tif of the wrong size", wrong_size, "missing or malformed band file", [f"{pair}_B02.tif", "60x60", "120x120"]),
        ("tif of the wrong type", wrong_type, "missing or malformed band file", [f"{pair}_B03.tif", "Float32", "UInt16"]),
        ("unknown label", unknown_label, "unknown or missing labels", [f"{pair}_labels_metadata.json", "Lunar regolith"]),
        ("S1 without S2", no_partner, "S1 patch without its S2 partner", [s1, pair]),
        ("NaN pixel", nan_pixel, "non-finite pixels", [f"{s1}_VV.tif", "(7, 9)"]),
    ]
    for name, breaker, reason, words in cases:
        root = os.path.join(tmp, "bad")
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(v1, root)
        breaker(root)
        base = [twinfuse, "convert", "--layout", "v1", "--s2", os.path.join(root, "BigEarthNet-S2"), "--s1",
                os.path.join(root, "BigEarthNet-S1"), "--split", "train", "--no-progress"]
        out = os.path.join(tmp, "bad_out")
        shutil.rmtree(out, ignore_errors=True)
        r = run(base + ["--out", out])
        ok = require(r.returncode == 0 and f"skipped        1  {reason}" in r.stdout and "3 patches" in r.stdout,
                   f"{name} (skip): exit {r.returncode}, {r.stdout!r}")
        ok &= require(all(w in r.stderr for w in words), f"{name} (skip): message {r.stderr!r} lacks {words}")
        shutil.rmtree(out, ignore_errors=True)
        r = run(base + ["--out", out, "--on-error", "stop"])
        ok &= require(r.returncode == 1 and all(w in r.stderr for w in words),
                    f"{name} (stop): exit {r.returncode}, message {r.stderr!r}")
        ok &= require(not glob.glob(os.path.join(out, "*.h5*")), f"{name} (stop): a shard or temporary file was left")
        if ok:
            print(f"ok   {name}: {r.stderr.strip()}")
    # A usage error: v1 without split lists or a split name.
    r = run([twinfuse, "convert", "--layout", "v1", "--s2", v1, "--s1", v1, "--out", os.path.join(tmp, "x")])
    require(r.returncode == 2 and "--split" in r.stderr, f"usage error: {r.returncode} {r.stderr}")
    shutil.rmtree(tmp)
    if failures:
        print(f"test_convert: {len(failures)} failures")
        return 1
    print("test_convert: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
