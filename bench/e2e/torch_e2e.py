"""bench/e2e's peer: a PyTorch training script written the way its users write it, doing the work
`twinfuse pretrain` / `twinfuse finetune` do on the same shards: an h5py Dataset (files opened
once per worker, one sample per __getitem__, normalised per band with the shards' mean and std),
a DataLoader with worker processes (shuffled, drop_last), the same augmentations in torch
(random resized crop, flips, quarter turns, per-band brightness/contrast, Gaussian blur, noise,
band dropout; configs/pretrain/s2.yaml's probabilities for the two views, configs/finetune/s2.yaml's
flips and turns for fine-tuning), torchvision's resnet18 with conv1 for 12 bands, channels-last,
Adam at 1e-3; pretrain: the 512-D-D-D projector, affine-free BN and the Barlow Twins loss;
finetune: a linear head and BCE with logits. The time of a step runs from asking the loader for a
batch to the end of the optimizer step, as twinfuse's metrics.jsonl counts it.
usage: torch_e2e.py pretrain|finetune SHARD_DIR SIZE BATCH STEPS WARMUP THREADS WORKERS [PROJ_DIM]
prints: pairs_per_s=<median over steps> (pretrain) or images_per_s=<median> (finetune)"""
import glob
import math
import os
import statistics
import sys
import time

import h5py
import numpy as np
import torch
import torchvision
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

# configs/pretrain/s2.yaml's augment section: (crop, flip, rot90, jitter, blur, noise, band_dropout)
VIEWS = [(1.0, 0.5, 0.5, 0.8, 1.0, 0.0, 0.0), (1.0, 0.5, 0.5, 0.8, 0.1, 0.2, 0.2)]
FINETUNE = (0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0)   # configs/finetune/s2.yaml
CROP_MIN, BRIGHT, CONTRAST, SIGMA = 0.2, 0.4, 0.4, (0.1, 2.0)
NOISE_STD, DROP_FRAC = 0.05, 0.25


def augment(x, size, p, g):
    """One view of x [C, H, W] (normalised) with probabilities p, drawing from generator g (None:
    torch's default one)."""
    crop, flip, rot, jitter, blur, noise, drop = p
    c, h, w = x.shape
    if torch.rand(1, generator=g).item() < crop:
        i, j, hh, ww = torchvision.transforms.RandomResizedCrop.get_params(x, (CROP_MIN, 1.0), (3 / 4, 4 / 3))
        x = F.interpolate(x[None, :, i:i + hh, j:j + ww], size=(size, size), mode="bilinear",
                          align_corners=False)[0]
    else:
        top, left = (h - size) // 2, (w - size) // 2
        x = x[:, top:top + size, left:left + size]
    if torch.rand(1, generator=g).item() < flip:
        x = x.flip(2)
    if torch.rand(1, generator=g).item() < flip:
        x = x.flip(1)
    if torch.rand(1, generator=g).item() < rot:
        x = torch.rot90(x, int(torch.randint(1, 4, (1,), generator=g)), (1, 2))
    if torch.rand(1, generator=g).item() < jitter:
        mean = x.mean((1, 2), keepdim=True)
        cf = 1 + (torch.rand(c, 1, 1, generator=g) * 2 - 1) * CONTRAST
        b = (torch.rand(c, 1, 1, generator=g) * 2 - 1) * BRIGHT
        x = cf * (x - mean) + mean + b
    if torch.rand(1, generator=g).item() < blur:
        sigma = SIGMA[0] + (SIGMA[1] - SIGMA[0]) * torch.rand(1, generator=g).item()
        k = 2 * math.ceil(3 * sigma) + 1
        x = torchvision.transforms.functional.gaussian_blur(x, [k, k], [sigma, sigma])
    if torch.rand(1, generator=g).item() < noise:
        x = x + NOISE_STD * torch.randn(x.shape, generator=g)
    if torch.rand(1, generator=g).item() < drop:
        n = max(1, min(c - 1, round(DROP_FRAC * c)))
        x = x.clone()
        x[torch.randperm(c, generator=g)[:n]] = 0
    return x.contiguous()


class Shards(Dataset):
    """S2 (12 bands) and labels of every train-*.h5 shard; h5py files opened in each worker."""

    def __init__(self, d, size, mode):
        self.paths = sorted(glob.glob(os.path.join(d, "train-*.h5")))
        self.size, self.mode = size, mode
        self.index = []
        for k, p in enumerate(self.paths):
            with h5py.File(p, "r") as f:
                self.index += [(k, i) for i in range(f["s2"].shape[0])]
                self.mean = torch.tensor(np.asarray(f.attrs["s2_mean"]), dtype=torch.float32).view(-1, 1, 1)
                self.std = torch.tensor(np.asarray(f.attrs["s2_std"]), dtype=torch.float32).view(-1, 1, 1)
        self.files = None

    def __len__(self):
        return len(self.index)

    def __getitem__(self, n):
        if self.files is None:
            self.files = [h5py.File(p, "r") for p in self.paths]
        k, i = self.index[n]
        f = self.files[k]
        x = (torch.from_numpy(f["s2"][i].astype(np.float32)) - self.mean) / self.std
        g = None   # torch's own generator: the DataLoader seeds each worker's
        if self.mode == "pretrain":
            return augment(x, self.size, VIEWS[0], g), augment(x, self.size, VIEWS[1], g)
        return augment(x, self.size, FINETUNE, g), torch.from_numpy(f["labels"][i].astype(np.float32))


def off_diagonal(x):
    n, m = x.shape
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def main():
    mode, d = sys.argv[1], sys.argv[2]
    size, batch, steps, warmup, threads, workers = (int(a) for a in sys.argv[3:9])
    dim = int(sys.argv[9]) if len(sys.argv) > 9 else 2048
    torch.set_num_threads(threads)
    net = torchvision.models.resnet18()
    net.conv1 = torch.nn.Conv2d(12, 64, 7, 2, 3, bias=False)
    net.fc = torch.nn.Identity()
    if mode == "pretrain":
        proj = torch.nn.Sequential(torch.nn.Linear(512, dim, bias=False), torch.nn.BatchNorm1d(dim),
                                   torch.nn.ReLU(True), torch.nn.Linear(dim, dim, bias=False),
                                   torch.nn.BatchNorm1d(dim), torch.nn.ReLU(True),
                                   torch.nn.Linear(dim, dim, bias=False))
        bn = torch.nn.BatchNorm1d(dim, affine=False)
        model = torch.nn.ModuleList([net, proj, bn])
    else:
        head = torch.nn.Linear(512, 19)
        model = torch.nn.ModuleList([net, head])
    model = model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(Shards(d, size, mode), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    times, it, s = [], iter(loader), 0
    while s < warmup + steps:
        t0 = time.perf_counter()
        try:
            a, b = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        a = a.to(memory_format=torch.channels_last)
        if mode == "pretrain":
            b = b.to(memory_format=torch.channels_last)
            z1, z2 = proj(net(a)), proj(net(b))
            cc = bn(z1).T @ bn(z2) / batch
            loss = torch.diagonal(cc).add(-1).pow(2).sum() + 0.0051 * off_diagonal(cc).pow(2).sum()
        else:
            loss = F.binary_cross_entropy_with_logits(head(net(a)), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if s >= warmup:
            times.append(time.perf_counter() - t0)
        s += 1
    unit = "pairs" if mode == "pretrain" else "images"
    print(f"{unit}_per_s={batch / statistics.median(times):.3f} loss={loss.item():.4g}")


if __name__ == "__main__":
    main()
