"""The PyTorch peer of `twinfuse predict` for bench/predict: the same S2 classifier (torchvision
resnet18 with a 12-band conv1 and a 19-class fc, weights and BN statistics from the twinfuse
checkpoint), the same windows (every STRIDE pixels plus one flush with the far edge), the same
normalisation (the shards' s2_mean/s2_std), windows holding nodata skipped, the same Hann blending
(sin^2(pi (t + 1/2) / W), normalised per pixel) and a tiled DEFLATE GeoTIFF written row block by
row block; rasterio windows read the scene strip by strip. Channels-last, inference mode, THREADS
threads: its best CPU configuration.
usage: torch_predict.py CKPT SHARD.h5 SCENE.tif OUT.tif STRIDE BATCH THREADS
prints: pytorch seconds=<scene in, map out; model load excluded> windows=<scored> pixels=<W*H>"""
import sys
import time

import h5py
import numpy as np
import rasterio
import torch
import torchvision
from safetensors.torch import load_file


def positions(n, win, stride):
    p = list(range(0, n - win + 1, stride))
    if p[-1] + win < n:
        p.append(n - win)
    return p


def main():
    ckpt, shard, scene, out = sys.argv[1:5]
    stride, batch, threads = (int(a) for a in sys.argv[5:8])
    torch.set_num_threads(threads)
    sd = load_file(ckpt)
    net = torchvision.models.resnet18()
    net.conv1 = torch.nn.Conv2d(12, 64, 7, 2, 3, bias=False)
    k = sd["head.weight"].shape[0]
    net.fc = torch.nn.Linear(512, k)
    state = {n[len("backbone."):]: t for n, t in sd.items() if n.startswith("backbone.")}
    state.update({"fc.weight": sd["head.weight"], "fc.bias": sd["head.bias"]})
    net.load_state_dict(state)
    net = net.eval().to(memory_format=torch.channels_last)
    with h5py.File(shard) as f:
        mean = np.asarray(f.attrs["s2_mean"], np.float32)[:, None, None]
        std = np.asarray(f.attrs["s2_std"], np.float32)[:, None, None]
    win = int(sys.argv[8]) if len(sys.argv) > 8 else 120
    t0 = time.perf_counter()
    src = rasterio.open(scene)
    H, W = src.height, src.width
    ys, xs = positions(H, win, stride), positions(W, win, stride)
    t = np.arange(win)
    hann = (np.sin(np.pi * (t + 0.5) / win) ** 2).astype(np.float64)
    vals = np.zeros((len(ys), len(xs), k), np.float32)
    valid = np.zeros((len(ys), len(xs)), bool)
    nodata = src.nodata
    profile = dict(driver="GTiff", width=W, height=H, count=k, dtype="float32", crs=src.crs, transform=src.transform,
                   nodata=float("nan"), tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                   interleave="band", BIGTIFF="IF_SAFER")
    dst = rasterio.open(out, "w", **profile)
    scored = 0
    with torch.inference_mode():
        for i, y0 in enumerate(ys):
            strip = src.read(window=rasterio.windows.Window(0, y0, W, win)).astype(np.float32)
            bad = (strip == nodata).any(axis=0) if nodata is not None else np.zeros((win, W), bool)
            colbad = bad.any(axis=0)
            ok = [j for j, x0 in enumerate(xs) if not colbad[x0:x0 + win].any()]
            x = (strip - mean) / std
            for b0 in range(0, len(ok), batch):
                js = ok[b0:b0 + batch]
                xb = torch.from_numpy(np.stack([x[:, :, xs[j]:xs[j] + win] for j in js]))
                p = torch.sigmoid(net(xb.contiguous(memory_format=torch.channels_last))).numpy()
                vals[i, js] = p
                valid[i, js] = True
                scored += len(js)
            r0, r1 = y0, ys[i + 1] if i + 1 < len(ys) else H
            num = np.zeros((k, r1 - r0, W))
            den = np.zeros((r1 - r0, W))
            for ii, yy in enumerate(ys[:i + 1]):
                lo, hi = max(r0, yy), min(r1, yy + win)
                if lo >= hi:
                    continue
                wy = hann[lo - yy:hi - yy]
                for j in np.nonzero(valid[ii])[0]:
                    x0 = xs[j]
                    wgt = wy[:, None] * hann[None, :]
                    den[lo - r0:hi - r0, x0:x0 + win] += wgt
                    num[:, lo - r0:hi - r0, x0:x0 + win] += wgt[None] * vals[ii, j][:, None, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                o = (num / den).astype(np.float32)
            o[:, (den == 0) | bad[:r1 - r0]] = np.nan
            dst.write(o, window=rasterio.windows.Window(0, r0, W, r1 - r0))
    dst.close()
    src.close()
    print(f"pytorch seconds={time.perf_counter() - t0:.3f} windows={scored} pixels={H * W}")


if __name__ == "__main__":
    main()
