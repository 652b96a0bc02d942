"""The PyTorch peer of bench/gpu/bt_step.c, on the same GPU: the same Barlow Twins step
(torchvision ResNet18 with a C-channel stem and no fc, the bias-free 512-2048-2048-2048 projector
with BN+ReLU, the affine-free BN, the loss of facebookresearch/barlowtwins, Adam) in its fast
configuration: bf16 autocast, channels-last, cudnn.benchmark, fused Adam, and optionally
torch.compile. The loss is read back every step, as twinfuse's step returns it.
usage:
  torch_bt_step.py step C H BATCH STEPS WARMUP [compile]  -> pytorch c=.. pairs_per_s=..
  torch_bt_step.py flops C H                             -> flops c=.. per_pair=..
  torch_bt_step.py peak                                  -> peak bf16_tflops=..
"""
import statistics
import sys
import time

import torch
import torchvision

LAMBD = 0.0051
D = 2048


def off_diagonal(x):
    n, m = x.shape
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


class BarlowTwins(torch.nn.Module):
    def __init__(self, c_in, d=D):
        super().__init__()
        self.backbone = torchvision.models.resnet18()
        self.backbone.conv1 = torch.nn.Conv2d(c_in, 64, 7, 2, 3, bias=False)
        self.backbone.fc = torch.nn.Identity()
        sizes = [512, d, d, d]
        layers = []
        for i in range(len(sizes) - 2):
            layers += [torch.nn.Linear(sizes[i], sizes[i + 1], bias=False),
                       torch.nn.BatchNorm1d(sizes[i + 1]), torch.nn.ReLU(inplace=True)]
        layers.append(torch.nn.Linear(sizes[-2], sizes[-1], bias=False))
        self.projector = torch.nn.Sequential(*layers)
        self.bn = torch.nn.BatchNorm1d(sizes[-1], affine=False)

    def forward(self, y1, y2):
        z1 = self.projector(self.backbone(y1))
        z2 = self.projector(self.backbone(y2))
        c = self.bn(z1).T @ self.bn(z2)
        c = c / y1.shape[0]
        on_diag = (torch.diagonal(c) - 1).pow(2).sum()
        off_diag = off_diagonal(c).pow(2).sum()
        return on_diag + LAMBD * off_diag


def setup(c, h, batch):
    torch.backends.cudnn.benchmark = True
    model = BarlowTwins(c).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)
    g = torch.Generator(device="cuda").manual_seed(11)
    views = [torch.randn(batch, c, h, h, device="cuda", generator=g)
             .contiguous(memory_format=torch.channels_last) for _ in range(2)]
    return model, opt, views


def step_fn(model, opt):
    def step(y1, y2):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(y1, y2)
        loss.backward()
        opt.step()
        return loss
    return step


def bench_step(c, h, batch, steps, warmup, compiled):
    model, opt, views = setup(c, h, batch)
    fwd = model
    if compiled:
        try:
            fwd = torch.compile(model)
            step = step_fn(fwd, opt)
            step(*views).item()   # compile now, so that a failure falls back before timing
        except Exception as e:  # torch.compile is not available everywhere; say so and go on
            print(f"# torch.compile failed ({type(e).__name__}: {e}); eager instead", file=sys.stderr)
            compiled = 0
            fwd = model
    step = step_fn(fwd, opt)
    loss = 0.0
    for _ in range(warmup):
        loss = step(*views).item()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step(*views).item()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"pytorch c={c} batch={batch} pairs_per_s={batch * steps / dt:.2f} "
          f"ms_per_step={1e3 * dt / steps:.3f} loss={loss:.6g} compiled={int(compiled)}")


def count_flops(c, h):
    """FLOPs of one pair (both views, forward + backward), counted by PyTorch on a batch of 8."""
    from torch.utils.flop_counter import FlopCounterMode
    n = 8
    model = BarlowTwins(c).cuda()
    views = [torch.randn(n, c, h, h, device="cuda") for _ in range(2)]
    with FlopCounterMode(display=False) as fc:
        model(*views).backward()
    print(f"flops c={c} per_pair={fc.get_total_flops() / n:.6e}")


def peak():
    """The bf16 matrix rate this GPU reaches: median of 8192^3 GEMMs."""
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    rates = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        rates.append(2 * n ** 3 / (start.elapsed_time(end) * 1e-3) / 1e12)
    print(f"peak bf16_tflops={statistics.median(rates):.1f} gpu={torch.cuda.get_device_name()!r}")


def main(argv):
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return 77
    if len(argv) >= 7 and argv[1] == "step":
        c, h, batch, steps, warmup = (int(x) for x in argv[2:7])
        compiled = len(argv) > 7 and argv[7] == "compile"
        bench_step(c, h, batch, steps, warmup, compiled)
    elif len(argv) == 4 and argv[1] == "flops":
        count_flops(int(argv[2]), int(argv[3]))
    elif len(argv) == 2 and argv[1] == "peak":
        peak()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
