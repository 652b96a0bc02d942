"""check_features_h5.py FILE.h5: reads test_features_h5's file with h5py and checks every
dataset, dtype, shape, value and attribute (see test_features_h5.c for the values)."""
import sys

import h5py
import numpy as np

N, D, K = 50, 24, 19


def main():
    bad = []
    with h5py.File(sys.argv[1], "r") as f:
        feats, labels, names = f["features"], f["labels"], f["name"]
        if feats.dtype != np.float32 or feats.shape != (N, D):
            bad.append(f"features {feats.dtype} {feats.shape}")
        if labels.dtype != np.uint8 or labels.shape != (N, K):
            bad.append(f"labels {labels.dtype} {labels.shape}")
        if names.shape != (N,) or names.dtype.kind != "S" or names.dtype.itemsize != 96:
            bad.append(f"name {names.dtype} {names.shape}, want fixed-length 96-byte strings as the shards")
        i, j = np.meshgrid(np.arange(N), np.arange(D), indexing="ij")
        if not np.array_equal(feats[:], (i.astype(np.float32) + j.astype(np.float32) / np.float32(1000))):
            bad.append("feature values")
        i, j = np.meshgrid(np.arange(N), np.arange(K), indexing="ij")
        if not np.array_equal(labels[:], ((i + j) % 3 == 0).astype(np.uint8)):
            bad.append("label values")
        want = [f"S2A_patch_{r}".encode() for r in range(N)]
        if list(names[:]) != want:
            bad.append(f"names {list(names[:3])}...")
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        for k, v in {"format": "twinfuse-features/1", "source": "s1+s2", "checkpoint": "runs/x/best.safetensors",
                     "split": "val"}.items():
            if str(attrs.get(k)) != v:
                bad.append(f"attribute {k} = {attrs.get(k)!r}, want {v!r}")
        classes = [c.decode() if isinstance(c, bytes) else c for c in f.attrs.get("classes", [])]
        if len(classes) != K or classes[0] != "Urban fabric":
            bad.append(f"classes attribute {classes[:2]}")
    for b in bad:
        print("MISMATCH", b)
    print("FAIL" if bad else "ok", sys.argv[1])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
