#!/usr/bin/env python3
"""`twinfuse convert --layout scenes` on scenes mosaicked with GDAL (gdalbuildvrt, gdal_translate)
from the real BigEarthNet v2 samples: six adjacent T33UUP patches (rows 33-35, columns 69-71, three
missing: nodata holes) per band, their S1 (dB) on the same grid; a second scene pairs the same S2
with S1 in linear power reprojected to UTM 32N (gdalwarp), plus a cloud mask at 20 m, and a label
raster with a classes file. Every pixel of every patch equals GDAL's own read of that window: the
10 m bands and co-registered S1 read directly (rasterio), the 20/60 m bands, the reprojected S1
(then 10 log10) and the mask as `gdalwarp -et 0` puts them on the S2 grid. Patches with nodata or
clouds above the thresholds are dropped and counted; the labels are the classes present above
--label-min-fraction (numpy); the georeference and date are kept. Bad input: a corrupt manifest
row (unknown column, bad date, wrong field count), a missing band file, S1 without overlap with S2,
a label raster in another CRS, an unclosed CSV quote — each named by file and row, skipped or fatal
with --on-error stop; quoted CSV fields (a comma and a quote in a path) read as RFC 4180 says.

usage: test_convert_scenes.py TWINFUSE DATA_DIR       Exit 0 pass, 1 fail."""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import rasterio
from rasterio.transform import from_origin

BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
TILE = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
S1P = "S1B_IW_GRDH_1SDV_20170612T165809"
CELLS = [(33, 69), (33, 70), (34, 69), (34, 70), (34, 71), (35, 69)]
X0, Y0, N = 339600.0, 5317200.0, 360      # the mosaic: rows 33..35, columns 69..71, 10 m
S = 60
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import failures, require  # noqa: E402


def sh(*args):
    subprocess.run(list(args), check=True, stdout=subprocess.DEVNULL)


def mosaic(files, out, res):
    """gdalbuildvrt over the patches, then the full 3x3-patch extent at res as a GeoTIFF."""
    vrt = out + ".vrt"
    sh("gdalbuildvrt", "-q", "-te", str(X0), str(Y0 - 10 * N), str(X0 + 10 * N), str(Y0), vrt, *files)
    sh("gdal_translate", "-q", "-tr", str(res), str(res), vrt, out)
    os.remove(vrt)


def build(tmp, data):
    v2 = os.path.join(data, "bigearthnet-v2-sample")
    sc = os.path.join(tmp, "scene")
    os.makedirs(sc)
    for b in BANDS:
        files = [f"{v2}/BigEarthNet-S2/{TILE}/{TILE}_{r}_{c}/{TILE}_{r}_{c}_{b}.tif" for r, c in CELLS]
        with rasterio.open(files[0]) as f:
            res = f.res[0]
        mosaic(files, f"{sc}/{b}.tif", res)
    for p in ("VV", "VH"):
        files = [f"{v2}/BigEarthNet-S1/{S1P}/{S1P}_33UUP_{r}_{c}/{S1P}_33UUP_{r}_{c}_{p}.tif" for r, c in CELLS]
        mosaic(files, f"{sc}/{p}.tif", 10)
        # The same S1 in linear power, in UTM 32N (nodata outside the patches: NaN).
        with rasterio.open(f"{sc}/{p}.tif") as f:
            db, prof = f.read(1), f.profile
        lin = np.where(db == 0, np.nan, 10 ** (db.astype(np.float64) / 10)).astype(np.float32)
        prof.update(nodata=np.nan)
        with rasterio.open(f"{sc}/{p}_lin33.tif", "w", **prof) as g:
            g.write(lin[None])
        sh("gdalwarp", "-q", "-t_srs", "EPSG:32632", "-r", "bilinear", "-tr", "10", "10", f"{sc}/{p}_lin33.tif",
           f"{sc}/{p}_lin32.tif")
    # A cloud mask at 20 m: cloud over 10 m rows 120..150, columns 60..100 (one window of row b).
    mask = np.zeros((N // 2, N // 2), np.uint8)
    mask[60:75, 30:50] = 1
    with rasterio.open(f"{sc}/mask.tif", "w", driver="GTiff", width=N // 2, height=N // 2, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(X0, Y0, 20, 20)) as f:
        f.write(mask[None])
    # Labels at 10 m: value 1 on the left third, 2 in the middle, 3 on the right, 7 (unlisted) in a corner.
    lab = np.ones((N, N), np.uint16)
    lab[:, 120:240] = 2
    lab[:, 240:] = 3
    lab[:30, :30] = 7
    for crs, name in (("EPSG:32633", "labels.tif"), ("EPSG:32632", "labels32.tif")):
        with rasterio.open(f"{sc}/{name}", "w", driver="GTiff", width=N, height=N, count=1, dtype="uint16", crs=crs,
                           transform=from_origin(X0, Y0, 10, 10)) as f:
            f.write(lab[None])
    with open(f"{sc}/classes.csv", "w") as f:
        f.write("# value,class\n1,Arable land\n2,Coniferous forest\n3,Continuous urban fabric\n")
    return sc


def warped(sc, src, out, resample="bilinear"):
    """GDAL's warper onto the mosaic's 10 m grid (UTM 33N), as the converter must do it: exact
    transformer, the resampling scale fixed at the ratio of the pixel sizes."""
    with rasterio.open(src) as f:
        scale = f.res[0] / 10.0
    sh("gdalwarp", "-q", "-overwrite", "-et", "0", "-wo", f"XSCALE={scale:.17g}", "-wo", f"YSCALE={scale:.17g}",
       "-r", resample, "-t_srs", "EPSG:32633", "-te", str(X0),
       str(Y0 - 10 * N), str(X0 + 10 * N), str(Y0), "-ts", str(N), str(N), "-dstnodata", "nan" if resample == "bilinear"
       and "lin" in src else "0", src, out)
    with rasterio.open(out) as f:
        return f.read(1)


def full_reference(sc, tmp):
    """Every raster of the scene on the 10 m grid, as GDAL reads or warps it."""
    ref = {}
    for b in BANDS:
        with rasterio.open(f"{sc}/{b}.tif") as f:
            if f.res[0] == 10:
                ref[b] = f.read(1)
        if b not in ref:
            ref[b] = warped(sc, f"{sc}/{b}.tif", os.path.join(tmp, f"w_{b}.tif"))
    for p in ("VV", "VH"):
        with rasterio.open(f"{sc}/{p}.tif") as f:
            ref[p] = f.read(1)
        lin = warped(sc, f"{sc}/{p}_lin32.tif", os.path.join(tmp, f"w_{p}.tif"))
        with np.errstate(invalid="ignore", divide="ignore"):
            ref[p + "_lin"] = (10.0 * np.log10(lin.astype(np.float32))).astype(np.float32)
    ref["mask"] = warped(sc, f"{sc}/mask.tif", os.path.join(tmp, "w_mask.tif"), "near")
    with rasterio.open(f"{sc}/labels.tif") as f:
        ref["labels"] = f.read(1)
    return ref


def run(args):
    return subprocess.run(args, capture_output=True, text=True)


def read_shards(out):
    rows = {}
    for path in sorted(glob.glob(os.path.join(out, "*-[0-9][0-9][0-9][0-9][0-9].h5"))):
        with h5py.File(path, "r") as f:
            for i in range(f["name"].shape[0]):
                name = f["name"][i].decode()
                rows[name] = {k: f[k][i] for k in f.keys() if k not in ("name", "s1_name")}
                rows[name]["attrs"] = dict(f.attrs)
    return rows


def main():
    tw, data = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="tw_scenes_")
    sc = build(tmp, data)
    ref = full_reference(sc, tmp)
    # Row a: per-band files with {band}, S1 in dB on the grid, a date; row b: the same S2 as per-band
    # columns, S1 linear in UTM 32N, the cloud mask. JSON lines, split per row.
    man = os.path.join(sc, "scenes.jsonl")
    with open(man, "w") as f:
        f.write(json.dumps({"name": "a", "s2": "{band}.tif", "s1": "{band}.tif", "date": "2017-06-13"}) + "\n")
        row_b = {"name": "b", "split": "val", "VV": "VV_lin32.tif", "VH": "VH_lin32.tif", "s1_scale": "linear",
                 "mask": "mask.tif", "date": "20170613"}
        row_b.update({b: f"{sc}/{b}.tif" for b in BANDS})
        f.write(json.dumps(row_b) + "\n")
    out = os.path.join(tmp, "out")
    base = [tw, "convert", "--layout", "scenes", "--no-progress", "--size", str(S), "--shard-size", "10"]
    r = run(base + ["--manifest", man, "--labels-raster", f"{sc}/labels.tif", "--label-classes", f"{sc}/classes.csv",
                    "--label-min-fraction", "0.2", "--max-cloud", "0.05", "--out", out])
    if not require(r.returncode == 0, f"convert: {r.returncode} {r.stdout} {r.stderr}"):
        return 1
    print(r.stdout.strip())
    rows = read_shards(out)
    n_keep = {"a": 0, "b": 0}
    for scene in ("a", "b"):
        for y in range(0, N - S + 1, S):
            for x in range(0, N - S + 1, S):
                name = f"{scene}_{y:05d}_{x:05d}"
                win = (slice(y, y + S), slice(x, x + S))
                s2 = np.stack([ref[b][win] for b in BANDS])
                s1 = np.stack([ref[p + ("_lin" if scene == "b" else "")][win] for p in ("VV", "VH")])
                nodata = (s2 == 0).all(axis=0) | ~np.isfinite(s1).all(axis=0)
                cloud = (ref["mask"][win] != 0).mean() if scene == "b" else 0.0
                lab = ref["labels"][win]
                want_keep = not nodata.any() and cloud <= 0.05
                if name not in rows:
                    require(not want_keep, f"{name}: dropped, but GDAL's window has no nodata and {cloud:.3f} cloud")
                    continue
                n_keep[scene] += 1
                got = rows[name]
                require(want_keep, f"{name}: kept with {int(nodata.sum())} nodata pixels, {cloud:.3f} cloud")
                require(np.array_equal(got["s2"][0], s2), f"{name}: s2 differs from GDAL's window, max "
                      f"{np.abs(got['s2'][0].astype(int) - s2.astype(int)).max()}")
                tol = 0 if scene == "a" else 2e-5
                d = np.abs(got["s1"][0] - s1).max()
                require(d <= tol * max(1.0, np.abs(s1).max()), f"{name}: s1 differs by {d}")
                require(list(got["s2_date"]) == [20170613] and int(got["n_times"]) == 1, f"{name}: date")
                require(np.allclose(got["transform"], [X0 + 10 * x, 10, 0, Y0 - 10 * y, 0, -10]), f"{name}: transform")
                a = got["attrs"]
                require(int(a["crs_epsg"][int(got["crs"])]) == 32633, f"{name}: CRS")
                frac = {k: (lab == v).mean() for k, v in (("Arable land", 1), ("Coniferous forest", 2), ("Urban fabric", 3))}
                want = {c for c, fr in frac.items() if fr > 0.2}
                have = {a["classes"][k] for k in range(19) if got["labels"][k]}
                require(have == want, f"{name}: labels {have}, want {want}")
                require(bool(got["labels43"][list(a["classes43"]).index("Continuous urban fabric")]) == ("Urban fabric" in want),
                      f"{name}: labels43")
                require((int(got["flags"]) & 1) == (1 if cloud > 0 else 0), f"{name}: cloud flag")
    require(n_keep["a"] > 0 and n_keep["b"] > 0 and n_keep["b"] < n_keep["a"], f"kept {n_keep}")
    require("nodata above --max-nodata" in r.stdout and "clouds above --max-cloud" in r.stdout, "skip counts in the summary")
    print(f"kept {n_keep} of 36 windows per scene")

    # ---- bad input --------------------------------------------------------------------------
    def manifest(name, lines):
        p = os.path.join(sc, name)
        with open(p, "w") as f:
            f.write("\n".join(lines) + "\n")
        return p

    # A quoted CSV field (RFC 4180): a folder whose name holds a comma and a quote; the patches
    # equal row a's, which read the same files (through links).
    odd = os.path.join(sc, 'with, comma "q"')
    os.makedirs(odd)
    for b in BANDS:
        os.symlink(f"{sc}/{b}.tif", os.path.join(odd, f"{b}.tif"))
    quoted = manifest("quoted.csv", ['name,"s2",s1', 'q, "with, comma ""q""/{band}.tif" ,{band}.tif'])
    r = run(base + ["--manifest", quoted, "--out", os.path.join(tmp, "quoted")])
    if require(r.returncode == 0, f"quoted CSV: rc {r.returncode} {r.stderr}"):
        q = read_shards(os.path.join(tmp, "quoted"))
        pairs = [(n, "a" + n[1:]) for n in q]
        # (no date column: no time axis, where row a's conversion has one)
        require(pairs and all(np.array_equal(q[n]["s2"], rows[m]["s2"][0]) and np.array_equal(q[n]["s1"], rows[m]["s1"][0])
                              for n, m in pairs), f"quoted CSV: {len(pairs)} patches equal row a's")
        print(f"ok   quoted CSV fields: {len(pairs)} patches")

    good = "a,{band}.tif,{band}.tif"
    cases = [
        ("unknown column", manifest("bad1.csv", ["name,s2,s1,colour", "a,{band}.tif,{band}.tif,", "b,{band}.tif,{band}.tif,red"]),
         "bad1.csv:3", []),
        ("bad date", manifest("bad2.csv", ["name,s2,s1,date", "a,{band}.tif,{band}.tif,2017-12-01", "b,{band}.tif,{band}.tif,2017-13-01"]),
         "bad2.csv:3", []),
        ("field count", manifest("bad3.csv", ["name,s2,s1", good, "b,{band}.tif"]), "bad3.csv:3", []),
        ("unclosed quote", manifest("bad7.csv", ["name,s2,s1", good, 'b,"{band}.tif,{band}.tif']), "bad7.csv:3", []),
        ("missing band", manifest("bad4.csv", ["name,s2,s1", good, "b,nothere_{band}.tif,{band}.tif"]), "nothere_B02.tif", []),
        ("no S1/S2 overlap", manifest("bad5.csv", ["name,s2,s1", good, "c,{band}.tif,far_{band}.tif"]), "do not overlap", []),
        ("labels in another CRS", manifest("bad6.csv", ["name,s2,s1", good]), "labels32.tif",
         ["--labels-raster", f"{sc}/labels32.tif", "--label-classes", f"{sc}/classes.csv"]),
    ]
    for p in ("VV", "VH"):   # S1 far to the east of the S2 scene
        with rasterio.open(f"{sc}/{p}.tif") as f:
            prof, x = f.profile, f.read()
        prof.update(transform=from_origin(X0 + 50000, Y0, 10, 10))
        with rasterio.open(f"{sc}/far_{p}.tif", "w", **prof) as g:
            g.write(x)
    for name, path, named, extra in cases:
        args = base + ["--manifest", path] + extra
        r = run(args + ["--out", os.path.join(tmp, "bad_skip")])
        skip_ok = r.returncode == 0 and named in r.stderr and "skipped" in r.stdout
        if name == "labels in another CRS":   # the only row is bad: nothing converted
            skip_ok = r.returncode == 1 and named in r.stderr
        require(skip_ok, f"{name}, skip: rc {r.returncode} {r.stdout} {r.stderr!r} lacks {named}")
        r = run(args + ["--on-error", "stop", "--out", os.path.join(tmp, "bad_stop")])
        require(r.returncode == 1 and named in r.stderr and os.path.basename(path) in r.stderr,
              f"{name}, stop: rc {r.returncode} {r.stderr!r}")
        print(f"ok   {name}: {r.stderr.strip().splitlines()[-1]}")
        shutil.rmtree(os.path.join(tmp, "bad_skip"), ignore_errors=True)
        shutil.rmtree(os.path.join(tmp, "bad_stop"), ignore_errors=True)
    shutil.rmtree(tmp)
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
