"""PyTorch's Barlow Twins step for bench/bt_step: torchvision resnet18 (conv1 for C channels, fc
removed) + the 512-D-D-D projector + the affine-free BN and the loss, Adam, in its best CPU
configuration (channels-last; bf16 autocast only when asked, i.e. where the CPU has native bf16).
usage: torch_bt_step.py C SIZE BATCH STEPS WARMUP fp32|bf16 THREADS [PROJ_DIM]
prints: pairs_per_s=<median over steps>"""
import statistics
import sys
import time

import torch
import torchvision


def off_diagonal(x):
    n, m = x.shape
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def main():
    c, size, batch, steps, warmup = (int(a) for a in sys.argv[1:6])
    prec, threads = sys.argv[6], int(sys.argv[7])
    d = int(sys.argv[8]) if len(sys.argv) > 8 else 2048
    torch.set_num_threads(threads)
    net = torchvision.models.resnet18()
    net.conv1 = torch.nn.Conv2d(c, 64, 7, 2, 3, bias=False)
    net.fc = torch.nn.Identity()
    proj = torch.nn.Sequential(torch.nn.Linear(512, d, bias=False), torch.nn.BatchNorm1d(d), torch.nn.ReLU(True),
                               torch.nn.Linear(d, d, bias=False), torch.nn.BatchNorm1d(d), torch.nn.ReLU(True),
                               torch.nn.Linear(d, d, bias=False))
    bn = torch.nn.BatchNorm1d(d, affine=False)
    model = torch.nn.ModuleList([net, proj, bn]).train().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    y1 = torch.randn(batch, c, size, size).to(memory_format=torch.channels_last)
    y2 = torch.randn(batch, c, size, size).to(memory_format=torch.channels_last)
    times = []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
            z1, z2 = proj(net(y1)), proj(net(y2))
        cc = bn(z1.float()).T @ bn(z2.float()) / batch
        loss = torch.diagonal(cc).add(-1).pow(2).sum() + 0.0051 * off_diagonal(cc).pow(2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    print(f"pairs_per_s={batch / statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
