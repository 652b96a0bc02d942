"""`twinfuse predict` and `twinfuse embed --s2/--s1` end to end, on the CPU:
1. exactness: the genuine BigEarthNet v2 patches of tile T33UUP (rows 69-71, columns 33-35: six
   patches and three empty cells) converted, mosaicked into S2 and S1 scenes with gdalbuildvrt; an
   early-fusion model's map at stride = window gives every patch's pixels the probabilities of
   `evaluate --predictions` (1e-5), NaN over the empty cells, the VRT's CRS and transform; the
   top-label and multi-hot maps agree; 2 ranks write the same map; `embed --s2/--s1` gives every
   patch the features of `embed --split`;
2. the same for a feature-fusion model on synthetic patches (RGB bands picked from 12);
3. blending: with stride < window the map equals a numpy Hann blend of the windows' outputs (each
   window's output read from stride = window maps of shifted crops), NaN where the input is
   nodata or no valid window covers; a scene whose content repeats with the stride gives one
   constant; band files, named bands in another order and a manifest give the same map;
4. bad input: a message naming the file and a non-zero exit (bands missing, S1 not overlapping S2,
   no checkpoint, a pre-training checkpoint, an unwritable output with nothing left behind), and
   write errors (/dev/full) failing evaluate, embed and predict.
usage: run_predict.py TWINFUSE SAMPLES_DIR TOOLS_DIR WORK_DIR [MPIRUN]"""
import csv
import glob
import json
import os
import shutil
import stat
import subprocess
import sys

import h5py
import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import check, failures, runner  # noqa: E402

TWINFUSE, SAMPLES, TOOLS, WORK = sys.argv[1:5]
MPIRUN = sys.argv[5] if len(sys.argv) > 5 else None
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
BE = ["backend.threads=1", "backend.precision=fp32"]
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)


def w(*parts):
    return os.path.join(WORK, *parts)


run = runner(env=ENV, mpirun=MPIRUN)
twinfuse = runner(TWINFUSE, env=ENV, mpirun=MPIRUN)


def read(path):
    with rasterio.open(path) as d:
        return d.read(), d.crs, d.transform, [d.descriptions[i] for i in range(d.count)]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def predictions(pattern):
    """patch name -> logits, from evaluate's CSV files."""
    out = {}
    for path in glob.glob(pattern):
        with open(path, newline="") as f:
            rows = csv.reader(f)
            k = sum(h.startswith("score:") for h in next(rows))
            for cells in rows:
                out[cells[0]] = np.array([float(v) for v in cells[1:1 + k]])
    return out


def shard_patches(shards):
    """name -> (s2 [12, H, W] uint16, s1 [2, H, W] float32) over every split's shards."""
    out = {}
    for path in sorted(glob.glob(os.path.join(shards, "*.h5"))):
        with h5py.File(path) as f:
            for i, n in enumerate(f["name"][:]):
                out[n.decode()] = (f["s2"][i], f["s1"][i])
    return out


def write_tif(path, a, transform, crs="EPSG:32633", nodata=None, names=None):
    with rasterio.open(path, "w", driver="GTiff", width=a.shape[2], height=a.shape[1], count=a.shape[0],
                       dtype=a.dtype, crs=crs, transform=transform, nodata=nodata) as d:
        d.write(a)
        for i, n in enumerate(names or []):
            d.set_band_description(i + 1, n)


def mosaic(cells, size, origin, prefix, pixel=10.0, crs="EPSG:32633"):
    """cells: {(row, col): (s2, s1)} -> S2 and S1 VRTs built by gdalbuildvrt from per-patch files."""
    s2_files, s1_files = [], []
    for (r, c), (s2, s1) in cells.items():
        t = from_origin(origin[0] + c * size * pixel, origin[1] - r * size * pixel, pixel, pixel)
        s2_files.append(w(f"{prefix}_s2_{r}_{c}.tif"))
        s1_files.append(w(f"{prefix}_s1_{r}_{c}.tif"))
        write_tif(s2_files[-1], s2, t, crs, nodata=0)
        write_tif(s1_files[-1], s1, t, crs)
    run("gdalbuildvrt", "-q", w(f"{prefix}_s2.vrt"), *s2_files)
    run("gdalbuildvrt", "-q", w(f"{prefix}_s1.vrt"), *s1_files)
    return w(f"{prefix}_s2.vrt"), w(f"{prefix}_s1.vrt")


def compare_cells(map_path, vrt, cells, size, want, what):
    """Every cell's pixels against its expected probabilities; NaN elsewhere; the VRT's grid."""
    m, crs, tr, _ = read(map_path)
    _, vcrs, vtr, _ = read(vrt)
    check(crs == vcrs and tr.almost_equals(vtr, 1e-9), f"{what}: CRS and transform equal the input's ({tr[2]}, {tr[5]})")
    worst, covered = 0.0, np.zeros(m.shape[1:], bool)
    for (r, c), name in cells.items():
        block = m[:, r * size:(r + 1) * size, c * size:(c + 1) * size]
        worst = max(worst, float(np.abs(block - want[name][:, None, None]).max()))
        covered[r * size:(r + 1) * size, c * size:(c + 1) * size] = True
    check(worst < 1e-5, f"{what}: {len(cells)} patches' probabilities equal evaluate's (max |d| {worst:.2e})")
    check(bool(np.isnan(m[:, ~covered]).all()), f"{what}: NaN over the {int((~covered).sum())} pixels of empty cells")
    return m


# ---- 1. the genuine samples: early fusion at the patches' own size ----------------------------
v2 = os.path.join(SAMPLES, "bigearthnet-v2-sample")
if not os.path.isdir(v2):
    sys.exit(f"FAIL: {v2} is missing (the genuine samples are part of the repository)")
meta = w("meta.jsonl")
with open(meta, "w") as fh:
    subprocess.run([sys.executable, os.path.join(TOOLS, "reben_metadata.py"), os.path.join(v2, "metadata.parquet"),
                    os.path.join(v2, "metadata_for_patches_with_snow_cloud_or_shadow.parquet")], stdout=fh, check=True)
real = w("real-shards")
twinfuse("convert", "--layout", "v2", "--root", v2, "--metadata", meta, "--shard-size", "8", "--no-progress",
         "--out", real)
twinfuse("finetune", os.path.join(ROOT, "configs", "finetune", "early.yaml"), f"data.shards={real}",
         f"run.out_dir={WORK}", "run.name=early", "data.size=120", "data.batch=4", "optim.epochs=1", *BE)
early = w("early", "best.safetensors")
splits = sorted({os.path.basename(f).split("-")[0] for f in glob.glob(os.path.join(real, "*.h5"))})
twinfuse("evaluate", early, *[a for s in splits for a in ("--split", s)], "--predictions", w("real.csv"), *BE)
logits = predictions(w("real-*.csv"))
patches = shard_patches(real)
tile = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
cells = {}
for r, row in enumerate((69, 70, 71)):
    for c, col in enumerate((33, 34, 35)):
        name = f"{tile}_{col}_{row}"
        if name in patches:
            cells[(r, c)] = name
check(len(cells) == 6 and all(n in logits for n in cells.values()), f"6 patches of the 3x3 block found ({len(cells)})")
s2_vrt, s1_vrt = mosaic({rc: patches[n] for rc, n in cells.items()}, 120, (339600.0, 5317200.0), "real")
want = {n: sigmoid(logits[n]) for n in cells.values()}
twinfuse("predict", early, "--s2", s2_vrt, "--s1", s1_vrt, "--stride", "120", "--out", w("real-map.tif"),
         "--top-label", w("real-top.tif"), "--multi-hot", w("real-hot.tif"), "--threshold", "0.5", *BE)
m = compare_cells(w("real-map.tif"), s2_vrt, cells, 120, want, "early fusion, real patches")
_, _, _, names = read(w("real-map.tif"))
check(names[0] == "Urban fabric" and len(names) == 19, f"class names as band descriptions ({names[0]}, {len(names)})")
top, hot = read(w("real-top.tif"))[0][0], read(w("real-hot.tif"))[0]
nan = np.isnan(m[0])
check(np.array_equal(top[~nan], np.argmax(m, axis=0)[~nan]) and (top[nan] == 255).all(),
      "top-label: the most probable class, 255 over nodata")
check(np.array_equal(hot[:, ~nan], (m[:, ~nan] >= 0.5).astype(np.uint8)) and (hot[:, nan] == 255).all(),
      "multi-hot: probability >= 0.5 per class, 255 over nodata")
with rasterio.open(w("real-top.tif")) as d:
    check(d.colormap(1)[0][:3] == (31, 119, 180), "top-label carries a colour table")
with rasterio.open(w("real-map.tif")) as d:
    check(d.profile.get("tiled", False) and d.compression is not None, f"tiled and compressed ({d.compression})")
twinfuse("report", w("real-top.tif"))
with open(w("real-top.png.json")) as f:
    side = json.load(f)
counts = {c["index"]: c["pixels"] for c in side["classes"]}
want_counts = {int(c): int(n) for c, n in zip(*np.unique(top[top != 255], return_counts=True))}
check(os.path.getsize(w("real-top.png")) > 1000 and counts == want_counts and side["scene"] == s2_vrt,
      f"twinfuse report MAP.tif draws the top-label map beside the scene ({len(counts)} classes)")
left = [f for f in os.listdir(WORK) if ".tmp" in f or f.endswith(".aux.xml")]
check(not left, f"no temporary or sidecar files left beside the maps ({left[:3]})")
if MPIRUN:
    twinfuse("predict", early, "--s2", s2_vrt, "--s1", s1_vrt, "--stride", "120", "--out", w("real-map2.tif"), *BE,
             ranks=2)
    m2 = read(w("real-map2.tif"))[0]
    check(np.allclose(m, m2, atol=1e-6, equal_nan=True), "2 ranks write the 1-rank map")

# S1 in another CRS is warped onto the S2 grid; --grid puts the map on another grid
run("gdalwarp", "-q", "-t_srs", "EPSG:32632", "-tr", "10", "10", "-r", "bilinear", "-dstnodata", "nan", s1_vrt,
    w("s1_32632.tif"))
twinfuse("predict", early, "--s2", s2_vrt, "--s1", w("s1_32632.tif"), "--stride", "120", "--out", w("warp-map.tif"), *BE)
wm, wcrs, wtr, _ = read(w("warp-map.tif"))
_, vcrs, vtr, _ = read(s2_vrt)
check(wcrs == vcrs and wtr.almost_equals(vtr, 1e-9) and wm.shape == m.shape and np.isfinite(wm).any(),
      f"S1 in EPSG:32632 warped onto the S2 grid ({int(np.isfinite(wm[0]).sum())} pixels scored)")
run("gdal_translate", "-q", "-b", "1", "-tr", "20", "20", s2_vrt, w("grid20.tif"))
twinfuse("predict", early, "--s2", s2_vrt, "--s1", s1_vrt, "--grid", w("grid20.tif"), "--stride", "60", "--out",
         w("grid-map.tif"), *BE)
gm, _, gtr, _ = read(w("grid-map.tif"))
check(gm.shape == (19, 180, 180) and gtr[0] == 20 and np.isfinite(gm).any(),
      f"--grid: the map on the 20 m grid ({gm.shape[1]}x{gm.shape[2]}, pixel {gtr[0]} m)")

# embed of the scene, window by window, against embed of the splits
feats = {}
for s in splits:
    twinfuse("embed", early, "--split", s, "--out", w(f"feat-{s}.h5"), *BE)
    with h5py.File(w(f"feat-{s}.h5")) as f:
        feats.update({n.decode(): f["features"][i] for i, n in enumerate(f["name"][:])})
twinfuse("embed", early, "--s2", s2_vrt, "--s1", s1_vrt, "--out", w("real-feat.tif"), *BE)
fm, _, ftr, fnames = read(w("real-feat.tif"))
worst = max(float(np.abs(fm[:, r, c] - feats[n]).max()) for (r, c), n in cells.items())
empty = [(r, c) for r in range(3) for c in range(3) if (r, c) not in cells]
check(fm.shape == (512, 3, 3) and worst < 1e-4, f"embed --s2/--s1: {fm.shape}, the windows' features equal embed "
      f"--split's (max |d| {worst:.2e})")
check(all(np.isnan(fm[:, r, c]).all() for r, c in empty) and abs(ftr[2] - 339600.0) < 1e-6 and ftr[0] == 1200,
      f"embed: NaN over empty cells, one 1200 m pixel per window at the scene's origin ({ftr[2]}, {ftr[0]})")

# write errors and the checkpoint's kind
p = twinfuse("evaluate", early, "--split", splits[0], "--predictions", "/dev/full", *BE, expect=1)
check("/dev/full" in p.stderr and stat.S_ISCHR(os.stat("/dev/full").st_mode),
      f"evaluate --predictions /dev/full fails naming it: {p.stderr.strip()[-120:]}")
p = twinfuse("embed", early, "--split", splits[0], "--out", "/dev/full", *BE, expect=1)
check("/dev/full" in p.stderr, f"embed --out /dev/full fails naming it: {p.stderr.strip()[-120:]}")
p = twinfuse("predict", early, "--s2", s2_vrt, "--s1", s1_vrt, "--out", "/dev/full", *BE, expect=1)
check("/dev/full" in p.stderr, f"predict --out /dev/full fails naming it: {p.stderr.strip()[-120:]}")

# S1 that does not overlap S2; S2 without the model's bands
far = w("far_s1.tif")
s1_any = next(iter(cells.values()))
write_tif(far, patches[s1_any][1], from_origin(339600.0 + 5e5, 5317200.0, 10, 10))
p = twinfuse("predict", early, "--s2", s2_vrt, "--s1", far, "--out", w("x.tif"), *BE, expect=1)
check(far in p.stderr and "overlap" in p.stderr, f"S1 not overlapping S2 named: {p.stderr.strip()[-160:]}")
rgb = w("rgb.tif")
write_tif(rgb, patches[s1_any][0][[3, 2, 1]], from_origin(339600.0, 5317200.0, 10, 10), nodata=0,
          names=["B04", "B03", "B02"])
p = twinfuse("predict", early, "--s2", rgb, "--s1", s1_vrt, "--out", w("x.tif"), *BE, expect=1)
check(rgb in p.stderr and "B01" in p.stderr, f"a scene without the model's bands named: {p.stderr.strip()[-160:]}")
check(not os.path.exists(w("x.tif")), "no output after a failed run")

# ---- 2. synthetic patches: feature fusion, RGB picked from 12 bands ----------------------------
syn = w("synth")
twinfuse("synth", "--out", syn, "--size", "64", "--train", "32", "--val", "8", "--test", "8", "--clouds", "4",
         "--shard-size", "16", "--seed", "4")
twinfuse("finetune", os.path.join(ROOT, "configs", "finetune", "demo.yaml"), f"data.shards={syn}",
         f"run.out_dir={WORK}", "run.name=ff", "data.size=64", "data.batch=8", "optim.epochs=1", *BE)
ff = w("ff", "best.safetensors")
twinfuse("evaluate", ff, "--split", "val", "--predictions", w("ff.csv"), *BE)
ff_logits = predictions(w("ff.csv"))
ff_patches = shard_patches(syn)
val = sorted(n for n in ff_patches if n.startswith("synth_val"))
ff_cells = {(i // 4, i % 4): n for i, n in enumerate(val[:7])}   # 2 x 4 cells, the last one empty
ff_s2, ff_s1 = mosaic({rc: ff_patches[n] for rc, n in ff_cells.items()}, 64, (500000.0, 6000000.0), "ff")
twinfuse("predict", ff, "--s2", ff_s2, "--s1", ff_s1, "--stride", "64", "--out", w("ff-map.tif"), *BE)
compare_cells(w("ff-map.tif"), ff_s2, ff_cells, 64, {n: sigmoid(ff_logits[n]) for n in ff_cells.values()},
              "feature fusion, synthetic patches")

# ---- 3. blending, nodata, band files, manifest (single-source S2, 32-pixel windows) ------------
twinfuse("finetune", os.path.join(ROOT, "configs", "finetune", "s2.yaml"), f"data.shards={syn}",
         f"run.out_dir={WORK}", "run.name=s2", "data.size=32", "data.batch=8", "optim.epochs=1", *BE)
s2ck = w("s2", "best.safetensors")
rng = np.random.default_rng(7)
scene = rng.integers(200, 4000, (12, 96, 96)).astype(np.uint16)
scene[:, 40:58, 44:60] = 0                       # a nodata hole
T0 = from_origin(600000.0, 5500000.0, 10, 10)
write_tif(w("scene.tif"), scene, T0, nodata=0)
twinfuse("predict", s2ck, "--s2", w("scene.tif"), "--out", w("blend.tif"), *BE)   # stride 16 by default
got = read(w("blend.tif"))[0]
# Every 16-pixel-spaced window's output, from stride = window maps of the crops at (0|16, 0|16).
k, win, st_ = 19, 32, 16
starts = list(range(0, 96 - win + 1, st_))
vals, valid = np.zeros((len(starts), len(starts), k)), np.zeros((len(starts), len(starts)), bool)
for oy in (0, 16):
    for ox in (0, 16):
        h = 96 - oy - (96 - oy) % win
        wdt = 96 - ox - (96 - ox) % win
        crop = w(f"crop{oy}{ox}.tif")
        run("gdal_translate", "-q", "-srcwin", ox, oy, wdt, h, w("scene.tif"), crop)
        twinfuse("predict", s2ck, "--s2", crop, "--stride", "32", "--out", w(f"crop{oy}{ox}-map.tif"), *BE)
        cm = read(w(f"crop{oy}{ox}-map.tif"))[0]
        for y in range(0, h, win):
            for x in range(0, wdt, win):
                i, j = starts.index(oy + y), starts.index(ox + x)
                vals[i, j] = cm[:, y + 1, x + 1]
                valid[i, j] = not np.isnan(cm[0, y + 1, x + 1])
t = np.arange(win)
hann = np.sin(np.pi * (t + 0.5) / win) ** 2
num, den = np.zeros((k, 96, 96)), np.zeros((96, 96))
for i, y0 in enumerate(starts):
    for j, x0 in enumerate(starts):
        if valid[i, j]:
            wt = np.outer(hann, hann)
            den[y0:y0 + win, x0:x0 + win] += wt
            num[:, y0:y0 + win, x0:x0 + win] += wt * vals[i, j][:, None, None]
with np.errstate(invalid="ignore", divide="ignore"):
    ref = num / den
ref[:, (den == 0) | (scene[0] == 0)] = np.nan
check(np.array_equal(np.isnan(got), np.isnan(ref)) and int(np.isnan(got[0]).sum()) > 18 * 16,
      f"nodata in, nodata out: NaN where the input is nodata or no valid window covers ({int(np.isnan(got[0]).sum())} px)")
d = np.nanmax(np.abs(got - ref))
check(d < 1e-5, f"stride 16 < window 32: the map is the Hann-weighted mean of the windows (max |d| {d:.2e}, "
      f"{int(valid.sum())} of {valid.size} windows valid)")

# a scene that repeats every 16 pixels: every window sees the same pixels, the map is one constant
tile16 = rng.integers(200, 4000, (12, 16, 16)).astype(np.uint16)
write_tif(w("periodic.tif"), np.tile(tile16, (1, 5, 6)), T0, nodata=0)
twinfuse("predict", s2ck, "--s2", w("periodic.tif"), "--stride", "16", "--out", w("periodic-map.tif"), *BE)
pm = read(w("periodic-map.tif"))[0]
spread = float((pm.max(axis=(1, 2)) - pm.min(axis=(1, 2))).max())
check(np.isfinite(pm).all() and spread < 1e-6, f"a constant-prediction scene gives that constant (spread {spread:.1e})")

# the same scene as 12 band files, and with named bands in reverse order
files = []
for b in range(12):
    files.append(w(f"band{b:02d}.tif"))
    write_tif(files[-1], scene[b:b + 1], T0, nodata=0)
twinfuse("predict", s2ck, "--s2", ",".join(files), "--out", w("files-map.tif"), *BE)
order = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
write_tif(w("named.tif"), scene[::-1].copy(), T0, nodata=0, names=order[::-1])
twinfuse("predict", s2ck, "--s2", w("named.tif"), "--out", w("named-map.tif"), *BE)
check(np.array_equal(read(w("files-map.tif"))[0], got, equal_nan=True) and
      np.array_equal(read(w("named-map.tif"))[0], got, equal_nan=True),
      "12 band files, and bands found by their descriptions, give the multi-band file's map")
# a 20 m band among the files is warped onto the 10 m grid
with rasterio.open(files[4]) as d:
    coarse = d.read(out_shape=(1, 48, 48))
write_tif(w("band04-20m.tif"), coarse, from_origin(600000.0, 5500000.0, 20, 20), nodata=0)
files20 = files[:4] + [w("band04-20m.tif")] + files[5:]
twinfuse("predict", s2ck, "--s2", ",".join(files20), "--out", w("files20-map.tif"), *BE)
m20, _, tr20, _ = read(w("files20-map.tif"))
check(m20.shape == got.shape and tr20.almost_equals(T0, 1e-9), "a 20 m band file is warped onto the 10 m grid")

# a manifest of two scenes: the same maps as two calls
with open(w("manifest.txt"), "w") as f:
    f.write(f"# two scenes\ns2={w('scene.tif')} out={w('man-a.tif')}\n\n"
            f"s2={w('periodic.tif')} out={w('man-b.tif')} top_label={w('man-b-top.tif')}\n")
twinfuse("predict", s2ck, "--manifest", w("manifest.txt"), *BE)
check(np.array_equal(read(w("man-a.tif"))[0], got, equal_nan=True) and
      np.allclose(read(w("man-b.tif"))[0], pm, atol=1e-7) and os.path.exists(w("man-b-top.tif")),
      "a manifest's scenes equal single calls")

# ---- 4. bad input: each named --------------------------------------------------------------------
p = twinfuse("predict", w("nope.safetensors"), "--s2", w("scene.tif"), "--out", w("x.tif"), *BE, expect=1)
check("nope.safetensors" in p.stderr, f"a missing checkpoint named: {p.stderr.strip()[-120:]}")
twinfuse("pretrain", os.path.join(ROOT, "configs", "pretrain", "demo_s2.yaml"), f"data.shards={syn}",
         f"run.out_dir={WORK}", "run.name=pre", "data.size=32", "data.batch=8", "model.projector_dim=64",
         "run.max_steps=1", *BE)
pre = w("pre", "ckpt-00000001.safetensors")
p = twinfuse("predict", pre, "--s2", w("scene.tif"), "--out", w("x.tif"), *BE, expect=1)
check(pre in p.stderr and "classification" in p.stderr, f"a pre-training checkpoint refused: {p.stderr.strip()[-140:]}")
twinfuse("embed", pre, "--s2", w("scene.tif"), "--out", w("pre-feat.tif"), *BE)
check(read(w("pre-feat.tif"))[0].shape == (512, 3, 3), "embed --s2 of a pre-training checkpoint's backbone")
with open(w("bad-manifest.txt"), "w") as f:
    f.write(f"s2={w('scene.tif')} out={w('bad-a.tif')}\ns2={w('scene.tif')} output={w('bad-b.tif')}\n")
p = twinfuse("predict", s2ck, "--manifest", w("bad-manifest.txt"), *BE, expect=1)
check("bad-manifest.txt:2" in p.stderr and "output" in p.stderr and not os.path.exists(w("bad-a.tif")),
      f"a bad manifest line named before any scene runs: {p.stderr.strip()[-120:]}")
p = twinfuse("predict", s2ck, "--s2", w("missing.tif"), "--out", w("x.tif"), *BE, expect=1)
check("missing.tif" in p.stderr, f"a missing scene named: {p.stderr.strip()[-120:]}")
os.makedirs(w("outdir"))
with open(w("afile"), "w") as f:
    f.write("x")
bad_out = w("afile", "map.tif")
p = twinfuse("predict", s2ck, "--s2", w("scene.tif"), "--out", bad_out, *BE, expect=1)
check(bad_out in p.stderr, f"an unwritable output named: {p.stderr.strip()[-140:]}")
p = twinfuse("predict", s2ck, "--s2", w("scene.tif"), "--out", w("outdir", "map.tif"), "--top-label", bad_out, *BE,
             expect=1)
check(bad_out in p.stderr and os.listdir(w("outdir")) == [],
      f"an unwritable second output: nothing left behind ({os.listdir(w('outdir'))})")

print("FAIL" if failures else "PASS")
if not failures:
    shutil.rmtree(WORK, ignore_errors=True)
sys.exit(1 if failures else 0)
