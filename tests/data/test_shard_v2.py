#!/usr/bin/env python3
"""Shard format version 2 (docs/shards.md): the time axis, the georeference, the L1C product and
unlabelled shards, written by the C writer (shard_v2_probe) and read back by h5py and by the C
reader; a version 1 shard (as the old writer made them, built here with h5py) still loads; and
each defect in the new parts is refused with a message naming the file and the dataset or
attribute.

usage: test_shard_v2.py SHARD_V2_PROBE SHARD_PROBE     Exit 0 pass, 1 fail."""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import failures, require  # noqa: E402
H, W, NPER = 6, 5, 3
S2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
S2C = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def value(p, i, t, b):
    y, x = np.mgrid[0:H, 0:W]
    v = (i * 1000 + t * 200 + b * 10 + y * W + x).astype(np.float64)
    return (-30.0 + v / 97.0).astype(np.float32) if p == 1 else v.astype(np.uint16)


def check_h5py(d):
    """The files as h5py sees them, against the probe's formula; the normalisation against numpy."""
    px = {"s2": [], "s1": [], "s2c": []}
    norm = None
    for k in range(2):
        path = os.path.join(d, f"train-{k:05d}.h5")
        with h5py.File(path, "r") as f:
            a = f.attrs
            require(int(a["format_version"]) == 2 and int(a["n_times"]) == 4 and int(a["has_labels"]) == 0
                  and int(a["has_georef"]) == 1 and list(a["products"]) == ["s2", "s1", "s2c"]
                  and list(a["s2c_bands"]) == S2C, f"{path}: layout attributes")
            require("labels" not in f and "labels43" not in f, f"{path}: an unlabelled shard has no labels datasets")
            for key, c, dt in (("s2", 12, np.uint16), ("s1", 2, np.float32), ("s2c", 13, np.uint16)):
                require(f[key].shape == (NPER, 4, c, H, W) and f[key].dtype == dt and f[key].chunks == (1, 1, c, H, W),
                      f"{path}: {key} {f[key].shape} {f[key].dtype} {f[key].chunks}")
            crs_table = list(a["crs_wkt"])
            for r in range(NPER):
                i = k * NPER + r
                nt = 1 + i % 4
                require(int(f["n_times"][r]) == nt, f"{path}: n_times[{r}]")
                for p, key in enumerate(("s2", "s1", "s2c")):
                    dates = f[f"{key}_date"][r]
                    want = [20200101 + 300 * t + i % 20 + p if t < nt else 0 for t in range(4)]
                    require(list(dates) == want, f"{path}: {key}_date[{r}] {list(dates)} want {want}")
                    for t in range(4):
                        x = f[key][r, t]
                        if t < nt:
                            ok = all(np.array_equal(x[b], value(p, i, t, b)) for b in range(x.shape[0]))
                            require(ok, f"{path}: {key}[{r},{t}] pixels")
                            px[key].append(x.astype(np.float64))
                        else:
                            require(not x.any(), f"{path}: {key}[{r},{t}] (no acquisition) is not zero")
                c = int(f["crs"][r])
                want_c = -1 if i % 3 == 2 else i % 3
                require(c == want_c, f"{path}: crs[{r}] {c} want {want_c}")
                if c >= 0:
                    require(crs_table[c].startswith(f"EPSG:3263{2 + want_c}") and int(a["crs_epsg"][c]) == 32632 + want_c,
                          f"{path}: CRS table entry {c}")
                require(list(f["transform"][r]) == [500000.0 + 10 * i, 10, 0, 5300000.0 - i, 0, -10], f"{path}: transform[{r}]")
            this = {k2: np.asarray(a[k2]) for k2 in ("s2_mean", "s2_std", "s1_mean", "s1_std", "s2c_mean", "s2c_std")}
            if norm is None:
                norm = this
            require(all(np.array_equal(norm[k2], this[k2]) for k2 in norm), f"{path}: normalisation differs between shards")
    for key in ("s2", "s1", "s2c"):
        x = np.stack(px[key])
        mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3), ddof=1)
        require(np.allclose(norm[f"{key}_mean"], mean, rtol=1e-9) and np.allclose(norm[f"{key}_std"], std, rtol=1e-9),
              f"{key} normalisation {norm[key + '_mean']} / {norm[key + '_std']} vs numpy {mean} / {std}")


def write_v1(path, classes, n=3, h=8, w=8):
    """A version 1 shard as the version 1 writer laid it out (docs/shards.md, format version 1)."""
    rng = np.random.default_rng(5)
    s2 = rng.integers(0, 5000, size=(n, 12, h, w)).astype(np.uint16)
    s1 = rng.normal(-12, 4, size=(n, 2, h, w)).astype(np.float32)
    names = np.array([f"P{i}".encode() for i in range(n)], dtype="S96")
    strs = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        for key, x in (("s2", s2), ("s1", s1), ("labels", np.zeros((n, 19), np.uint8)),
                       ("labels43", np.zeros((n, 43), np.uint8)), ("name", names), ("s1_name", names),
                       ("flags", np.zeros(n, np.uint8))):
            f.create_dataset(key, data=x, chunks=(1,) + x.shape[1:], maxshape=(None,) + x.shape[1:])
        a = f.attrs
        a.create("format_version", 1, dtype=np.int64)
        a["split"] = "train"
        a["source"] = "ben-v1"
        a.create("s2_bands", S2, dtype=strs)
        a.create("s1_bands", ["VV", "VH"], dtype=strs)
        a.create("classes", classes, dtype=strs)
        a.create("classes43", ["c"] * 43, dtype=strs)
        for k, v in (("has_labels43", 0), ("n_samples", n), ("n_skipped", 0)):
            a.create(k, v, dtype=np.int64)
        x = np.concatenate([s2.astype(np.float64), s1.astype(np.float64)], axis=1)
        a["moment_count"] = np.array([n * h * w], np.float64)
        a["moment_mean"] = x.mean(axis=(0, 2, 3))
        a["moment_m2"] = ((x - x.mean(axis=(0, 2, 3))[None, :, None, None]) ** 2).sum(axis=(0, 2, 3))
        a["s2_mean"], a["s2_std"] = x[:, :12].mean(axis=(0, 2, 3)), x[:, :12].std(axis=(0, 2, 3), ddof=1)
        a["s1_mean"], a["s1_std"] = x[:, 12:].mean(axis=(0, 2, 3)), x[:, 12:].std(axis=(0, 2, 3), ddof=1)


def main():
    probe_v2, probe = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="tw_shard_v2_")
    good = os.path.join(tmp, "good")
    os.makedirs(good)
    r = subprocess.run([probe_v2, "write", good], capture_output=True, text=True)
    if not require(r.returncode == 0, f"write: {r.stderr}"):
        return 1
    check_h5py(good)
    r = subprocess.run([probe_v2, "read", good], capture_output=True, text=True)
    require(r.returncode == 0, f"C reader on version 2: {r.stderr}")

    # ---- version 1 keeps loading (the loader, normalised, one epoch) --------------------------
    v1 = os.path.join(tmp, "v1")
    os.makedirs(v1)
    with h5py.File(os.path.join(good, "train-00000.h5"), "r") as f:
        classes = list(f.attrs["classes"])
    write_v1(os.path.join(v1, "train-00000.h5"), classes)
    r = subprocess.run([probe, v1, "train"], capture_output=True, text=True)
    require(r.returncode == 0, f"a version 1 shard does not load: {r.stderr}")

    # ---- defects in the new parts ---------------------------------------------------------------
    def attr(name, value):
        def f_(f):
            f.attrs[name] = value
        return f_

    def dset(name, fn):
        def f_(f):
            x = fn(f[name][:])
            del f[name]
            chunks = (1, 1) + x.shape[2:] if x.ndim == 5 else (1,) + x.shape[1:]
            f.create_dataset(name, data=x, chunks=chunks)
        return f_

    def delete(name):
        def f_(f):
            if name in f:
                del f[name]
            else:
                del f.attrs[name]
        return f_

    def setv(name, index, v):
        return dset(name, lambda x: (x.__setitem__(index, v), x)[1])

    cases = [
        ("n_times 0", setv("n_times", 1, 0), ["'n_times'[1]", "want 1..4"]),
        ("n_times 5", setv("n_times", 2, 5), ["'n_times'[2]", "is 5"]),
        ("a date of month 13", setv("s1_date", (0, 0), 20201301), ["'s1_date'[0][0]", "YYYYMMDD"]),
        ("a CRS index past the table", setv("crs", 0, 7), ["'crs'[0]", "is 7"]),
        ("s2 without its time axis", dset("s2", lambda x: x[:, 0]), ["'s2'", "rank", "time axis"]),
        ("s2c with 3 acquisitions", dset("s2c", lambda x: x[:, :3]), ["s2c [3,3,13,6,5]"]),
        ("s2c_date missing", delete("s2c_date"), ["'s2c_date'", "missing"]),
        ("s1 missing", delete("s1"), ["'s1'", "missing"]),
        ("an unknown product", attr("products", ["s2", "s1", "s3"]), ["'products'[2]", "s3"]),
        ("n_times attribute 9", attr("n_times", 9), ["'n_times' is 9"]),
        ("no CRS table", delete("crs_wkt"), ["'crs_wkt'", "missing"]),
        ("s2c band names", attr("s2c_bands", S2), ["s2c_bands"]),
        ("transform [N,5]", dset("transform", lambda x: x[:, :5]), ["transform [3,5]"]),
        ("version 3", attr("format_version", 3), ["version 3"]),
    ]
    for name, breaker, want in cases:
        d = os.path.join(tmp, "case")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(good, d)
        with h5py.File(os.path.join(d, "train-00001.h5"), "a") as f:
            breaker(f)
        r = subprocess.run([probe_v2, "read", d], capture_output=True, text=True)
        missing = [w for w in want + ["train-00001.h5"] if w not in r.stderr]
        if require(r.returncode == 1 and not missing, f"{name}: exit {r.returncode}, {r.stderr.strip()!r} lacks {missing}"):
            print(f"ok   {name}: {r.stderr.strip()}")
    shutil.rmtree(tmp)
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
