#!/usr/bin/env python3
"""`twinfuse convert --layout ssl4eo` on a small archive in the published SSL4EO-S12 layout
(<root>/{s1,s2c,s2a}/<id>/<acquisition>/<band>.tif), written here with rasterio: 3 locations,
4 seasons (one location with 3 S2 L2A acquisitions), real UTM georeferencing, 20 m and 60 m bands
at their native sizes, one location's S1 in another UTM zone. Checked against GDAL's own reads:
every pixel of every acquisition equals rasterio's read(out_shape=..., resampling=bilinear) of the
band cropped to the centre (the BigEarthNet path's resampling), the warped S1 equals
`gdalwarp -et 0 -r bilinear` onto the S2 grid, dates, acquisition counts, georeference and the
normalisation (numpy) read with h5py; a product subset at full size; a rerun keeps complete
shards, and after a real SIGKILL mid-shard ends with the shards of an uninterrupted conversion; bad input (missing band, band of another size or CRS, location missing a product, S1 not
covering the S2 grid) is skipped and named, or fatal with --on-error stop.

usage: test_convert_ssl4eo.py TWINFUSE        Exit 0 pass, 1 fail."""
import glob
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
from rasterio.enums import Resampling
from rasterio.transform import from_origin

N10 = 48          # the 10 m grid of the test archive (the real one: 264)
S2A = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
S2C = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
DIV = {"B1": 6, "B2": 1, "B3": 1, "B4": 1, "B5": 2, "B6": 2, "B7": 2, "B8": 1, "B8A": 2, "B9": 6, "B10": 6,
       "B11": 2, "B12": 2, "VV": 1, "VH": 1}
SEASONS = ["20200315", "20200614", "20200913", "20201212"]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import failures, require  # noqa: E402


def write_tif(path, arr, crs, transform, dtype):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype=dtype,
                       crs=crs, transform=transform) as f:
        f.write(arr.astype(dtype)[None])


def make_archive(root, rng):
    """Locations 0000000..0000002 near 9 E 47.9 N (UTM 32N); 0000001's S1 in UTM 33N."""
    for loc in range(3):
        x0, y0 = 500000.0 + 5000 * loc, 5300000.0 - 3000 * loc
        for season, day in enumerate(SEASONS):
            for prod, bands in (("s2a", S2A), ("s2c", S2C)):
                if prod == "s2a" and loc == 2 and season == 3:
                    continue   # a location with 3 L2A acquisitions
                acq = f"{day}T101559_{day}T102508_T32TMT"
                for b in bands:
                    n = N10 // DIV[b]
                    data = rng.integers(0, 12000, size=(n, n))
                    write_tif(f"{root}/{prod}/{loc:07d}/{acq}/{b}.tif", data, "EPSG:32632",
                              from_origin(x0, y0, 10.0 * DIV[b], 10.0 * DIV[b]), "uint16")
            acq = f"S1A_IW_GRDH_1SDV_{day}T052311_{day}T052336_032924_03D052_7B3A"
            for b in ("VV", "VH"):
                if loc == 1:   # another zone, covering the S2 grid with margin
                    from rasterio.warp import transform as wtr
                    xs, ys = wtr("EPSG:32632", "EPSG:32633", [x0, x0 + 10 * N10], [y0, y0 - 10 * N10])
                    t = from_origin(min(xs) - 200, max(ys) + 200, 10.0, 10.0)
                    n = int((max(xs) - min(xs) + 400) / 10) + 1
                    m = int((max(ys) - min(ys) + 400) / 10) + 1
                    write_tif(f"{root}/s1/{loc:07d}/{acq}/{b}.tif", rng.normal(-12, 4, size=(m, n)), "EPSG:32633", t,
                              "float32")
                else:
                    write_tif(f"{root}/s1/{loc:07d}/{acq}/{b}.tif", rng.normal(-12, 4, size=(N10, N10)), "EPSG:32632",
                              from_origin(x0, y0, 10.0, 10.0), "float32")


def want_band(path, size, loc_grid=None, tmp=None):
    """GDAL's read of one band on the location's 10 m grid, cropped to the centre size x size."""
    if loc_grid is None:
        with rasterio.open(path) as f:
            full = f.read(1, out_shape=(N10, N10), resampling=Resampling.bilinear)
    else:
        crs, (x0, y0) = loc_grid
        out = os.path.join(tmp, "warped.tif")
        subprocess.run(["gdalwarp", "-q", "-overwrite", "-et", "0", "-wo", "XSCALE=1", "-wo", "YSCALE=1", "-r", "bilinear",
                        "-t_srs", crs, "-te", str(x0),
                        str(y0 - 10 * N10), str(x0 + 10 * N10), str(y0), "-ts", str(N10), str(N10), path, out], check=True)
        with rasterio.open(out) as f:
            full = f.read(1)
    o = (N10 - size) // 2
    return full[o:o + size, o:o + size]


def shards(d):
    return sorted(glob.glob(os.path.join(d, "*-[0-9][0-9][0-9][0-9][0-9].h5")))


def check_conversion(root, out, size, prods, tmp):
    keys = {"s2a": "s2", "s2c": "s2c", "s1": "s1"}
    px = {k: [] for k in prods}
    seen = []
    norm = None
    for path in shards(out):
        with h5py.File(path, "r") as f:
            a = f.attrs
            require(int(a["format_version"]) == 2 and int(a["n_times"]) == 4 and int(a["has_labels"]) == 0
                  and int(a["has_georef"]) == 1 and a["source"] == "ssl4eo-s12", f"{path}: attributes")
            require(sorted(a["products"]) == sorted(keys[p] for p in prods), f"{path}: products {list(a['products'])}")
            norm = norm or {k: (np.asarray(a[keys[k] + "_mean"]), np.asarray(a[keys[k] + "_std"])) for k in prods}
            for r in range(f["name"].shape[0]):
                loc = int(f["name"][r].decode())
                seen.append(loc)
                x0, y0 = 500000.0 + 5000 * loc, 5300000.0 - 3000 * loc
                nt = 3 if (loc == 2 and "s2a" in prods) else 4
                require(int(f["n_times"][r]) == nt, f"location {loc}: n_times {int(f['n_times'][r])} want {nt}")
                o = (N10 - size) // 2
                require(np.allclose(f["transform"][r], [x0 + 10 * o, 10, 0, y0 - 10 * o, 0, -10]),
                      f"location {loc}: transform {list(f['transform'][r])}")
                c = int(f["crs"][r])
                require(c >= 0 and int(a["crs_epsg"][c]) == 32632, f"location {loc}: CRS index {c}")
                for prod in prods:
                    k = keys[prod]
                    dates = list(f[k + "_date"][r])
                    require(dates == [int(d) for d in SEASONS[:nt]] + [0] * (4 - nt), f"location {loc} {k}_date {dates}")
                    bands = {"s2a": S2A, "s2c": S2C, "s1": ["VV", "VH"]}[prod]
                    for t in range(nt):
                        day = SEASONS[t]
                        acq = (f"S1A_IW_GRDH_1SDV_{day}T052311_{day}T052336_032924_03D052_7B3A" if prod == "s1"
                               else f"{day}T101559_{day}T102508_T32TMT")
                        got = f[k][r, t]
                        for bi, b in enumerate(bands):
                            src = f"{root}/{prod}/{loc:07d}/{acq}/{b}.tif"
                            warp = ("EPSG:32632", (x0, y0)) if (prod == "s1" and loc == 1) else None
                            want = want_band(src, size, warp, tmp)
                            if not np.array_equal(got[bi], want.astype(got.dtype)):
                                d = np.abs(got[bi].astype(np.float64) - want.astype(np.float64))
                                require(False, f"location {loc} {k} t{t} {b}: {int((d > 0).sum())} pixels differ, max {d.max()}")
                        px[prod].append(got.astype(np.float64))
                    require(not f[k][r, nt:].any(), f"location {loc} {k}: slots past n_times not zero")
    for prod in prods:
        x = np.stack(px[prod])
        m, s = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3), ddof=1)
        require(np.allclose(norm[prod][0], m, rtol=1e-9) and np.allclose(norm[prod][1], s, rtol=1e-9),
              f"{prod} normalisation vs numpy")
    return sorted(seen)


def run(args):
    return subprocess.run(args, capture_output=True, text=True)


def main():
    tw = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="tw_ssl4eo_")
    root = os.path.join(tmp, "ssl4eo")
    make_archive(root, np.random.default_rng(11))
    base = [tw, "convert", "--layout", "ssl4eo", "--root", root, "--no-progress", "--shard-size", "2"]

    # ---- all three products, a centre crop --------------------------------------------------
    out = os.path.join(tmp, "all")
    r = run(base + ["--size", "40", "--out", out])
    if require(r.returncode == 0 and "3 locations in 2 shards" in r.stdout, f"convert: {r.returncode} {r.stdout} {r.stderr}"):
        seen = check_conversion(root, out, 40, ["s2a", "s2c", "s1"], tmp)
        require(seen == [0, 1, 2], f"locations {seen}")
    # ---- a rerun keeps the complete shards; a deleted one is redone identically ----------------
    with h5py.File(os.path.join(out, "train-00001.h5"), "r") as f:
        before = f["s2c"][:]
    os.remove(os.path.join(out, "train-00001.h5"))
    r = run(base + ["--size", "40", "--out", out])
    require(r.returncode == 0 and "kept 1 complete shards" in r.stdout, f"rerun: {r.stdout} {r.stderr}")
    with h5py.File(os.path.join(out, "train-00001.h5"), "r") as f:
        require(np.array_equal(before, f["s2c"][:]), "rerun: the redone shard differs")

    # ---- a real SIGKILL while a shard is being written, then the rerun ---------------------------
    ref, killed_dir = os.path.join(tmp, "ref1"), os.path.join(tmp, "killed")
    one = base[:-2] + ["--shard-size", "1", "--threads", "1", "--size", "40"]   # base less its --shard-size
    require(run(one + ["--out", ref]).returncode == 0, "the uninterrupted shard-size 1 conversion")
    proc = subprocess.Popen(one + ["--out", killed_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = False
    while proc.poll() is None and not killed:
        listing = os.listdir(killed_dir) if os.path.isdir(killed_dir) else []
        if any(n.endswith(".h5.tmp") for n in listing) and any(n.endswith(".h5") for n in listing):
            proc.send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.0005)
    proc.wait()
    if killed:   # the conversion is short: when it won the race, there is nothing to resume
        for path in glob.glob(os.path.join(killed_dir, "*.h5")):
            with h5py.File(path) as f:
                require("s2_mean" not in f.attrs, f"{path}: a shard of a killed conversion reads as finished")
        r = run(one + ["--out", killed_dir])
        require(r.returncode == 0 and "kept" in r.stdout and not glob.glob(os.path.join(killed_dir, "*.tmp")),
              f"rerun after the kill: {r.stdout} {r.stderr}")
        for path in shards(ref):
            with h5py.File(path) as f, h5py.File(os.path.join(killed_dir, os.path.basename(path))) as g:
                require(all(np.array_equal(f[k][()], g[k][()]) for k in f.keys()) and
                      all(np.array_equal(f.attrs[k], g.attrs[k]) for k in ("s2_mean", "s2_std", "s1_mean", "s1_std")),
                      f"{path}: the killed and rerun conversion differs from an uninterrupted one")
        print("ok   killed mid-shard and rerun: the same shards as an uninterrupted conversion")
    else:
        print("# the conversion finished before the SIGKILL could land mid-shard (data.convert covers it)")

    # ---- one product, the full grid -------------------------------------------------------------
    out2 = os.path.join(tmp, "s2c")
    r = run(base + ["--products", "s2c", "--size", str(N10), "--out", out2, "--split", "pre"])
    if require(r.returncode == 0, f"s2c only: {r.stderr}"):
        os.rename(out2, out2 + "_")   # shards are pre-*.h5; check_conversion globs any split
        require(check_conversion(root, out2 + "_", N10, ["s2c"], tmp) == [0, 1, 2], "s2c only: locations")
    r = run(base + ["--size", "49", "--out", os.path.join(tmp, "big")])
    require(r.returncode == 1 and "smaller than --size 49" in r.stderr, f"--size past the grid: {r.stderr}")
    r = run(base + ["--size", "265", "--out", os.path.join(tmp, "big")])
    require(r.returncode == 2 and "--size" in r.stderr, f"--size 265: {r.returncode} {r.stderr}")
    r = run(base + ["--products", "s2,s1", "--out", os.path.join(tmp, "big")])
    require(r.returncode == 2 and "--products" in r.stderr, f"--products s2: {r.returncode} {r.stderr}")

    # ---- bad input: each skipped and named, or fatal with --on-error stop -----------------------
    def spring(prod, loc):
        day = SEASONS[0]
        return (f"{root}/{prod}/{loc:07d}/S1A_IW_GRDH_1SDV_{day}T052311_{day}T052336_032924_03D052_7B3A" if prod == "s1"
                else f"{root}/{prod}/{loc:07d}/{day}T101559_{day}T102508_T32TMT")

    def missing_band():
        os.remove(f"{spring('s2a', 1)}/B5.tif")
        return f"{spring('s2a', 1)}/B5.tif"

    def other_size():
        p = f"{spring('s2c', 0)}/B3.tif"
        write_tif(p, np.ones((N10 - 1, N10 - 1)), "EPSG:32632", from_origin(500000.0, 5300000.0, 10, 10), "uint16")
        return p

    def other_crs():
        p = f"{spring('s2a', 2)}/B11.tif"
        write_tif(p, np.ones((N10 // 2, N10 // 2)), "EPSG:32633", from_origin(510000.0, 5294000.0, 20, 20), "uint16")
        return p

    def no_s1_location():
        shutil.rmtree(f"{root}/s1/0000002")
        return f"{root}/s1/0000002"

    def s1_elsewhere():
        p = f"{spring('s1', 0)}/VV"
        for b in ("VV", "VH"):
            write_tif(f"{spring('s1', 0)}/{b}.tif", np.ones((N10, N10)), "EPSG:32632",
                      from_origin(600000.0, 5300000.0, 10, 10), "float32")
        return p

    for name, breaker in (("missing band", missing_band), ("band of another size", other_size),
                          ("band of another CRS", other_crs), ("location without S1", no_s1_location),
                          ("S1 not covering the S2 grid", s1_elsewhere)):
        bad = os.path.join(tmp, "bad")
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(root, bad)
        saved, root = root, bad   # the breakers work on the copy
        named = breaker()
        root = saved
        args = [tw, "convert", "--layout", "ssl4eo", "--root", bad, "--no-progress", "--size", "40"]
        r = run(args + ["--out", os.path.join(tmp, "bad_out")])
        require(r.returncode == 0 and named in r.stderr and "skipped" in r.stdout and "2 locations" in r.stdout,
              f"{name}, skip: rc {r.returncode} {r.stdout} {r.stderr!r} lacks {named}")
        r = run(args + ["--on-error", "stop", "--out", os.path.join(tmp, "bad_stop")])
        require(r.returncode == 1 and named in r.stderr and not glob.glob(os.path.join(tmp, "bad_stop", "*.tmp")),
              f"{name}, stop: rc {r.returncode} {r.stderr!r}")
        print(f"ok   {name}: {r.stderr.strip()}")
        shutil.rmtree(os.path.join(tmp, "bad_out"), ignore_errors=True)
        shutil.rmtree(os.path.join(tmp, "bad_stop"), ignore_errors=True)
    shutil.rmtree(tmp)
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
