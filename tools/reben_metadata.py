#!/usr/bin/env python3
"""Export BigEarthNet v2.0 (reBEN) metadata parquet files as JSON lines for `twinfuse convert`.

There is no Parquet reader among Debian's C libraries, so the converter reads this export
(through jansson) instead of the parquet files. One object per patch:
  {"patch_id", "s1_name", "split", "labels": [...19-class names...],
   "contains_seasonal_snow": bool, "contains_cloud_or_shadow": bool}

usage: reben_metadata.py PARQUET [PARQUET ...] [--only-present ROOT] > metadata.jsonl
  --only-present ROOT   keep only the patches whose S2 folder exists under ROOT/BigEarthNet-S2
                        (a user's own subset of the archive)
"""
import json
import os
import sys

import pyarrow.parquet as pq

COLUMNS = ["patch_id", "s1_name", "split", "labels", "contains_seasonal_snow", "contains_cloud_or_shadow"]


def s2_dir(root, patch_id):
    tile = patch_id.rsplit("_", 2)[0]
    return os.path.join(root, "BigEarthNet-S2", tile, patch_id)


def main(argv):
    files, root = [], None
    i = 0
    while i < len(argv):
        if argv[i] == "--only-present" and i + 1 < len(argv):
            root = argv[i + 1]
            i += 2
        elif argv[i].startswith("-"):
            sys.exit(f"reben_metadata.py: unknown option {argv[i]!r}\n{__doc__}")
        else:
            files.append(argv[i])
            i += 1
    if not files:
        sys.exit(__doc__)
    seen = set()
    for path in files:
        table = pq.read_table(path)
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            sys.exit(f"reben_metadata.py: {path}: missing columns {missing}")
        for row in table.select(COLUMNS).to_pylist():
            if row["patch_id"] in seen:
                sys.exit(f"reben_metadata.py: {path}: patch {row['patch_id']} listed twice")
            seen.add(row["patch_id"])
            if root is not None and not os.path.isdir(s2_dir(root, row["patch_id"])):
                continue
            row["contains_seasonal_snow"] = bool(row["contains_seasonal_snow"])
            row["contains_cloud_or_shadow"] = bool(row["contains_cloud_or_shadow"])
            sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
