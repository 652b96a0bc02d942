#!/usr/bin/env python3
"""Checks shards written by `twinfuse convert` against an independent reading of the archive.

Every pixel against rasterio (the 20 m and 60 m bands read with out_shape=(120, 120) and
Resampling.bilinear, as torchgeo does), every label against the archive's own metadata (v1: the
S2 label json with the official 43 -> 19 mapping; v2: metadata.parquet through pyarrow), the
split and flags of every patch, the attributes, and the normalisation against numpy.

usage: check_convert.py v1 SHARD_DIR S2_ROOT S1_ROOT SPLIT
       check_convert.py v2 SHARD_DIR ROOT
Exit 0 when all agree, 1 otherwise (the first mismatches are printed)."""
import glob
import json
import os
import sys

import h5py
import numpy as np
import pyarrow.parquet as pq
import rasterio
from rasterio.enums import Resampling

BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
CLASSES19 = ["Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops", "Pastures",
             "Complex cultivation patterns",
             "Land principally occupied by agriculture, with significant areas of natural vegetation",
             "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
             "Natural grassland and sparsely vegetated areas", "Moors, heathland and sclerophyllous vegetation",
             "Transitional woodland, shrub", "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands",
             "Inland waters", "Marine waters"]
# BigEarthNet label_indices.json: 19-class groups of the 43 CORINE names.
GROUPS = [["Continuous urban fabric", "Discontinuous urban fabric"], ["Industrial or commercial units"],
          ["Non-irrigated arable land", "Permanently irrigated land", "Rice fields"],
          ["Vineyards", "Fruit trees and berry plantations", "Olive groves",
           "Annual crops associated with permanent crops"], ["Pastures"], ["Complex cultivation patterns"],
          ["Land principally occupied by agriculture, with significant areas of natural vegetation"],
          ["Agro-forestry areas"], ["Broad-leaved forest"], ["Coniferous forest"], ["Mixed forest"],
          ["Natural grassland", "Sparsely vegetated areas"], ["Moors and heathland", "Sclerophyllous vegetation"],
          ["Transitional woodland/shrub"], ["Beaches, dunes, sands"], ["Inland marshes", "Peatbogs"],
          ["Salt marshes", "Salines"], ["Water courses", "Water bodies"],
          ["Coastal lagoons", "Estuaries", "Sea and ocean"]]

failures = []


def fail(msg):
    failures.append(msg)
    if len(failures) <= 10:
        print("FAIL", msg)


def read_band(path, dtype):
    with rasterio.open(path) as src:
        if src.width == 120:
            return src.read(1)
        return src.read(1, out_shape=(120, 120), resampling=Resampling.bilinear)


def check_pixels(s2, s1, s2dir, s2name, s1dir, s1name):
    for b, band in enumerate(BANDS):
        ref = read_band(os.path.join(s2dir, f"{s2name}_{band}.tif"), np.uint16)
        if ref.dtype != np.uint16 or not np.array_equal(ref, s2[b]):
            diff = np.abs(ref.astype(np.int64) - s2[b].astype(np.int64))
            fail(f"{s2name} {band}: {int((diff > 0).sum())} pixels differ, max {int(diff.max())}")
    for b, pol in enumerate(["VV", "VH"]):
        ref = read_band(os.path.join(s1dir, f"{s1name}_{pol}.tif"), np.float32)
        if not np.array_equal(ref, s1[b]):
            fail(f"{s1name} {pol}: max abs diff {float(np.nanmax(np.abs(ref - s1[b])))}")


def shards(d):
    return sorted(glob.glob(os.path.join(d, "*-[0-9][0-9][0-9][0-9][0-9].h5")))


def check_attrs_and_norm(d):
    acc = {"s2": [], "s1": []}
    norm = None
    for path in shards(d):
        with h5py.File(path, "r") as f:
            if int(f.attrs["format_version"]) != 2:
                fail(f"{path}: format_version")
            if (list(f.attrs["products"]) != ["s2", "s1"] or int(f.attrs["n_times"]) != 0
                    or int(f.attrs["has_labels"]) != 1 or int(f.attrs["has_georef"]) != 0):
                fail(f"{path}: version 2 layout attributes (products, n_times, has_labels, has_georef)")
            if list(f.attrs["s2_bands"]) != BANDS or list(f.attrs["classes"]) != CLASSES19:
                fail(f"{path}: band or class names")
            if f["s2"].chunks != (1,) + f["s2"].shape[1:] or f["s2"].dtype != np.uint16 or f["s1"].dtype != np.float32:
                fail(f"{path}: s2/s1 chunking or dtype")
            this = tuple(np.asarray(f.attrs[k]) for k in ("s2_mean", "s2_std", "s1_mean", "s1_std"))
            if norm is None:
                norm = this
            elif any(not np.array_equal(a, b) for a, b in zip(norm, this)):
                fail(f"{path}: normalisation differs between shards")
            if os.path.basename(path).startswith("train-"):
                acc["s2"].append(f["s2"][:].astype(np.float64))
                acc["s1"].append(f["s1"][:].astype(np.float64))
    if not acc["s2"]:
        return
    for key, mi, si in (("s2", 0, 1), ("s1", 2, 3)):
        x = np.concatenate(acc[key])
        mean = x.mean(axis=(0, 2, 3))
        std = x.std(axis=(0, 2, 3), ddof=1)
        if not (np.allclose(norm[mi], mean, rtol=1e-9, atol=1e-9) and np.allclose(norm[si], std, rtol=1e-9)):
            fail(f"{key} normalisation {norm[mi]} / {norm[si]} vs numpy {mean} / {std}")


def main():
    layout, d = sys.argv[1], sys.argv[2]
    seen = {}
    if layout == "v2":
        root = sys.argv[3]
        rows = {}
        for name in ("metadata.parquet", "metadata_for_patches_with_snow_cloud_or_shadow.parquet"):
            for r in pq.read_table(os.path.join(root, name)).to_pylist():
                rows[r["patch_id"]] = r
    else:
        s2_root, s1_root, want_split = sys.argv[3], sys.argv[4], sys.argv[5]
    n = 0
    for path in shards(d):
        split = os.path.basename(path).rsplit("-", 1)[0]
        with h5py.File(path, "r") as f:
            if f.attrs["split"] != split:
                fail(f"{path}: split attribute {f.attrs['split']}")
            for i in range(f["s2"].shape[0]):
                s2name, s1name = f["name"][i].decode(), f["s1_name"][i].decode()
                labels, flags = f["labels"][i], int(f["flags"][i])
                if s2name in seen:
                    fail(f"{s2name} in {path} and {seen[s2name]}")
                seen[s2name] = path
                if layout == "v2":
                    r = rows[s2name]
                    want = "clouds" if r["contains_cloud_or_shadow"] else {"validation": "val"}.get(r["split"], r["split"])
                    if split != want:
                        fail(f"{s2name}: in split {split}, metadata says {want}")
                    if r["contains_seasonal_snow"]:
                        fail(f"{s2name}: snow patch converted without --keep-snow")
                    if s1name != r["s1_name"]:
                        fail(f"{s2name}: S1 {s1name}, metadata {r['s1_name']}")
                    if flags != (1 if r["contains_cloud_or_shadow"] else 0):
                        fail(f"{s2name}: flags {flags}")
                    want19 = np.array([c in r["labels"] for c in CLASSES19], dtype=np.uint8)
                    if int(f.attrs["has_labels43"]) != 0 or f["labels43"][i].any():
                        fail(f"{s2name}: v2 has no 43-class labels")
                    s2dir = os.path.join(root, "BigEarthNet-S2", s2name.rsplit("_", 2)[0], s2name)
                    s1dir = os.path.join(root, "BigEarthNet-S1", s1name.rsplit("_", 3)[0], s1name)
                else:
                    if split != want_split:
                        fail(f"{s2name}: split {split}")
                    s2dir, s1dir = os.path.join(s2_root, s2name), os.path.join(s1_root, s1name)
                    with open(os.path.join(s1dir, f"{s1name}_labels_metadata.json")) as jf:
                        if json.load(jf)["corresponding_s2_patch"] != s2name:
                            fail(f"{s1name}: paired with {s2name}")
                    with open(os.path.join(s2dir, f"{s2name}_labels_metadata.json")) as jf:
                        names43 = json.load(jf)["labels"]
                    want19 = np.array([any(n in g for n in names43) for g in GROUPS], dtype=np.uint8)
                    classes43 = list(f.attrs["classes43"])
                    want43 = np.array([c in names43 for c in classes43], dtype=np.uint8)
                    if not np.array_equal(f["labels43"][i], want43):
                        fail(f"{s2name}: labels43 {f['labels43'][i]} vs {want43}")
                if not np.array_equal(labels, want19):
                    fail(f"{s2name}: labels {labels} vs {want19}")
                check_pixels(f["s2"][i], f["s1"][i], s2dir, s2name, s1dir, s1name)
                n += 1
    if layout == "v2":
        want_n = sum(1 for r in rows.values() if not r["contains_seasonal_snow"])
        if n != want_n:
            fail(f"{n} patches converted, metadata has {want_n} without snow")
    check_attrs_and_norm(d)
    if failures:
        print(f"check_convert: {len(failures)} mismatches")
        return 1
    print(f"check_convert: {n} patches agree with rasterio and the metadata")
    return 0


if __name__ == "__main__":
    sys.exit(main())
