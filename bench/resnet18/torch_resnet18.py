#!/usr/bin/env python3
"""The PyTorch peer of bench_resnet18: torchvision resnet18 with a C-channel stem and no fc, train
mode, channels-last, forward + backward of sum(features * R) to every weight gradient (gradients
set to None each step, so nothing accumulates), no optimizer; bf16 through CPU autocast.
usage: torch_resnet18.py C SIZE BATCH STEPS WARMUP fp32|bf16 THREADS
prints: pytorch c=<C> images_per_s=<median over steps> min_s=.. max_s=.."""
import statistics
import sys
import time

import torch
import torchvision


def main():
    c, size, batch, steps, warmup = (int(v) for v in sys.argv[1:6])
    prec, threads = sys.argv[6], int(sys.argv[7])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = torchvision.models.resnet18()
    m.conv1 = torch.nn.Conv2d(c, 64, 7, 2, 3, bias=False)
    m.fc = torch.nn.Identity()
    m = m.train().to(memory_format=torch.channels_last)
    x = torch.randn(batch, c, size, size).contiguous(memory_format=torch.channels_last)
    r = torch.randn(batch, 512)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        m.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
            f = m(x)
        (f.float() * r).sum().backward()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"pytorch c={c} images_per_s={batch / med:.3f} min_s={min(times):.4f} max_s={max(times):.4f}")


if __name__ == "__main__":
    main()
