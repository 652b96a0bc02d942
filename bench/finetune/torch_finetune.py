"""PyTorch's fine-tuning step and evaluation forward for bench/finetune, in its best CPU
configuration: channels-last model and inputs, torch.set_num_threads(THREADS), Adam fused (else
foreach), bf16 autocast only when asked (where the CPU has native bf16).
  s2:     torchvision resnet18 (conv1 for 12 bands, fc removed), head Linear(512, 19)
  fusion: a resnet18 on S1 (2 channels) and one on S2 (12), fc removed; gated head
          g = sigmoid(Linear(1024, 512)([f1, f2])), logits = Linear(512, 19)(g f1 + (1 - g) f2)
  train:  zero_grad, forward, BCEWithLogits, backward, Adam step (backbones at 0.1 of the rate)
  frozen: backbones in eval mode under no_grad, only the head trains (transfer learning)
  eval:   model.eval() under torch.inference_mode()
usage: torch_finetune.py s2|fusion train|frozen|eval SIZE BATCH STEPS WARMUP fp32|bf16 THREADS
prints: pytorch images_per_s=<median over steps> min_s= max_s="""
import statistics
import sys
import time

import torch
import torchvision


def backbone(c):
    net = torchvision.models.resnet18()
    net.conv1 = torch.nn.Conv2d(c, 64, 7, 2, 3, bias=False)
    net.fc = torch.nn.Identity()
    return net


class Gated(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.gate, self.fc = torch.nn.Linear(1024, 512), torch.nn.Linear(512, k)

    def forward(self, f1, f2):
        g = torch.sigmoid(self.gate(torch.cat([f1, f2], 1)))
        return self.fc(g * f1 + (1 - g) * f2)


def adam(groups):
    for kw in ({"fused": True}, {"foreach": True}, {}):
        try:
            return torch.optim.Adam(groups, lr=1e-4, **kw)
        except (RuntimeError, TypeError, ValueError):
            continue
    raise RuntimeError("no Adam")


def main():
    model, mode = sys.argv[1], sys.argv[2]
    size, batch, steps, warmup = (int(a) for a in sys.argv[3:7])
    prec, threads = sys.argv[7], int(sys.argv[8])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    k = 19
    cl = torch.channels_last
    chans = (12,) if model == "s2" else (2, 12)
    nets = [backbone(c).to(memory_format=cl) for c in chans]
    head = torch.nn.Linear(512, k) if model == "s2" else Gated(k)
    xs = [torch.randn(batch, c, size, size).contiguous(memory_format=cl) for c in chans]
    y = (torch.rand(batch, k) < 0.2).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16")

    def forward():
        with autocast():
            fs = [n(x) for n, x in zip(nets, xs)]
            return head(*fs)

    head_params = list(head.parameters())
    body_params = [p for n in nets for p in n.parameters()]
    if mode == "train":
        for n in nets + [head]:
            n.train()
        opt = adam([{"params": body_params, "lr": 1e-5}, {"params": head_params}])

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(forward().float(), y).backward()
            opt.step()
    elif mode == "frozen":
        for p in body_params:
            p.requires_grad_(False)
        for n in nets:
            n.eval()
        opt = adam(head_params)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                with torch.no_grad():
                    fs = [n(x) for n, x in zip(nets, xs)]
                logits = head(*fs)
            loss_fn(logits.float(), y).backward()
            opt.step()
    else:
        for n in nets + [head]:
            n.eval()

        def step():
            with torch.inference_mode():
                forward()

    times = []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        step()
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    print(f"pytorch model={model} mode={mode} images_per_s={batch / statistics.median(times):.3f} "
          f"min_s={min(times):.4f} max_s={max(times):.4f}")


if __name__ == "__main__":
    main()
