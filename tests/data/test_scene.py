#!/usr/bin/env python3
"""src/data/scene.h against GDAL's own tools, on small GeoTIFFs with real georeferencing (UTM 32N):
a window of a multi-band file and of stacked band files equals rasterio's read of that window;
S1 in another CRS (UTM 33N) warped onto the S2 grid equals `gdalwarp -et 0 -r bilinear` (resampling scale
fixed at the ratio of the pixel sizes) onto the same grid, nodata where it does not cover; bad stacks (another size, another CRS, a two-band file)
and a missing file are named in the message.

usage: test_scene.py SCENE_PROBE        Exit 0 pass, 1 fail."""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import rasterio
from rasterio.transform import from_origin

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import failures, require  # noqa: E402


def write(path, arr, crs, transform, dtype="float32", nodata=None):
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=dtype, crs=crs, transform=transform, nodata=nodata) as f:
        f.write(arr.astype(dtype))


def probe(args):
    return subprocess.run([PROBE] + args, capture_output=True, text=True)


def main():
    global PROBE
    PROBE = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="tw_scene_")
    rng = np.random.default_rng(3)
    t2 = from_origin(500000.0, 5300000.0, 10.0, 10.0)
    bands = rng.integers(0, 10000, size=(3, 50, 60)).astype("uint16")
    files = []
    for b in range(3):
        files.append(os.path.join(tmp, f"b{b}.tif"))
        write(files[-1], bands[b], "EPSG:32632", t2, "uint16")
    multi = os.path.join(tmp, "multi.tif")
    write(multi, bands, "EPSG:32632", t2, "uint16")
    out = os.path.join(tmp, "w.f32")

    # ---- windows: one file, and band files stacked ---------------------------------------------
    for name, src in (("multi", [multi]), ("stack", files)):
        r = probe([out, "7", "11", "20", "16"] + src)
        if require(r.returncode == 0, f"{name}: {r.stderr}"):
            got = np.fromfile(out, dtype="float32").reshape(3, 16, 20)
            with rasterio.open(multi) as f:
                want = f.read(window=rasterio.windows.Window(7, 11, 20, 16)).astype("float32")
            require(np.array_equal(got, want), f"{name}: window differs from rasterio's, max |d| {np.abs(got - want).max()}")
            require("epsg 32632" in r.stdout and "transform 500070 10 0 5299890 0 -10" in r.stdout,
                  f"{name}: window grid {r.stdout.strip()}")

    # ---- S1 in UTM 33N warped onto the S2 grid (UTM 32N) --------------------------------------
    # A 33N raster over the 32N scene's place, shifted so that part of the S2 grid is not covered.
    with rasterio.open(multi) as f:
        from rasterio.warp import transform_bounds
        left, bottom, right, top = transform_bounds(f.crs, "EPSG:32633", *f.bounds)
    t1 = from_origin(left + 130.0, top + 37.0, 10.0, 10.0)
    s1 = rng.normal(-12, 4, size=(2, 60, 80)).astype("float32")
    s1path = os.path.join(tmp, "s1.tif")
    write(s1path, s1, "EPSG:32633", t1)
    r = probe(["-warp", multi, out, "0", "0", "60", "50", s1path])
    if require(r.returncode == 0, f"warp: {r.stderr}"):
        got = np.fromfile(out, dtype="float32").reshape(2, 50, 60)
        ref = os.path.join(tmp, "s1_on_s2.tif")
        subprocess.run(["gdalwarp", "-q", "-overwrite", "-et", "0", "-wo", "XSCALE=1", "-wo", "YSCALE=1", "-r", "bilinear",
                        "-t_srs", "EPSG:32632",
                        "-te", "500000", "5299500", "500600", "5300000", "-ts", "60", "50", "-dstnodata", "-9999",
                        s1path, ref], check=True)
        with rasterio.open(ref) as f:
            want = f.read()
        cover = want != -9999
        require(cover.any() and (~cover).any(), "warp: the test wants a partly covered grid")
        require(np.array_equal(got == -9999, ~cover), f"warp: nodata at {int((got == -9999).sum())} pixels, "
              f"gdalwarp {int((~cover).sum())}")
        d = np.abs(got[cover] - want[cover]).max() if cover.any() else 0
        require(d <= 1e-4, f"warp: differs from gdalwarp -et 0 by {d}")
        print(f"warp: {int(cover.sum())} covered pixels, max |twinfuse - gdalwarp| = {d:.3g}")

    # ---- bad stacks and files, each named --------------------------------------------------------
    other = os.path.join(tmp, "small.tif")
    write(other, bands[0, :40], "EPSG:32632", t2, "uint16")
    crs33 = os.path.join(tmp, "crs33.tif")
    write(crs33, bands[0], "EPSG:32633", t2, "uint16")
    for name, src, want in (("size", [files[0], other], other), ("crs", [files[0], crs33], crs33),
                            ("two bands", [files[0], s1path], s1path), ("missing", [files[0], tmp + "/none.tif"], "none.tif")):
        r = probe([out, "0", "0", "4", "4"] + src)
        require(r.returncode == 1 and want in r.stderr, f"bad stack ({name}): rc {r.returncode} {r.stderr}")
    r = probe([out, "50", "0", "20", "4", multi])
    require(r.returncode == 1 and "outside" in r.stderr, f"window outside: {r.stderr}")
    shutil.rmtree(tmp)
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
