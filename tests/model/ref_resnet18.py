#!/usr/bin/env python3
"""Reference for tests/model: torchvision's resnet18 with conv1 for C input channels (C = 2, 3, 12),
seeded, with non-trivial BN parameters and running statistics. Writes, per C, into OUT_DIR:
  weights_c{C}.safetensors  the state_dict with torchvision's names (fc.* included, as a user's file)
  expect_c{C}.safetensors   x [4, C, 120, 120]; R [4, 512]; feats_eval; feats_train;
                            after.<bn>.running_mean/var/num_batches_tracked after one train forward;
                            grad.<param> of loss = sum(feats_train * R);
                            bf16err.<name> [1]: torch's own bf16-autocast error on that tensor
                            (norm of the difference over norm of the truth)
The expected values are computed in float64 (the truth, stored as F32). A ReLU or max-pool input
within float32 rounding of a tie makes the gradient depend on the rounding (one flipped mask
element in layer4 moves a weight gradient column by ~1/64), and no fp32 implementation can be held
to 1e-3 there; at batch 4 and 120x120 about a third of the draws have such a tie. So a draw is
used only when four float32 runs that round differently (plain, channels-last, one thread, and
weights and input jittered by 2^-24 relative) all agree with the truth to 1e-4 of each tensor's
largest entry; otherwise the next seed is drawn. Files are rewritten only when this script changes.
usage: ref_resnet18.py OUT_DIR"""
import os
import sys

import torch
import torchvision
from safetensors.torch import save_file

import ref_stamp

BATCH, SIZE = 4, 120
WELL_CONDITIONED = 1e-4
JITTER = 2.0 ** -24
# The first well-conditioned draws with torch 2.15 (the search starts there to save minutes).
FIRST_SEED = {2: 1201, 3: 1302, 12: 2206}


def build(c_in, seed):
    torch.manual_seed(seed)
    m = torchvision.models.resnet18()
    m.conv1 = torch.nn.Conv2d(c_in, 64, kernel_size=7, stride=2, padding=3, bias=False)
    torch.nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")
    # Random affine parameters and running statistics, so that eval mode and the BN gradients
    # are not the trivial identity-init case; num_batches_tracked not 0, to check it is carried.
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.weight.data = 1.0 + 0.2 * torch.randn(c)
            mod.bias.data = 0.1 * torch.randn(c)
            mod.running_mean.data = 0.1 * torch.randn(c)
            mod.running_var.data = 1.0 + 0.25 * torch.rand(c)
            mod.num_batches_tracked.fill_(7)
    return m


def features(m, x):
    # resnet18 without fc: everything up to and including the global average pool.
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def run(c_in, seed, x, r, mode, jitter=None):
    """Eval features, then one train step; mode: float64, float32, float32_cl (channels-last) or
    bf16 (autocast); jitter: a seed for multiplying weights and input by 1 + JITTER * N(0, 1)."""
    m = build(c_in, seed)
    dt = torch.float64 if mode == "float64" else torch.float32
    m = m.to(dt)
    x, r = x.to(dt), r.to(dt)
    if jitter is not None:
        g = torch.Generator().manual_seed(jitter)
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(1 + JITTER * torch.randn(p.shape, generator=g, dtype=dt))
            x = x * (1 + JITTER * torch.randn(x.shape, generator=g, dtype=dt))
    if mode == "float32_cl":
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    out = {}
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16")
    m.eval()
    with torch.no_grad(), ctx:
        out["feats_eval"] = features(m, x).to(dt)
    m.train()
    with ctx:
        f = features(m, x).to(dt)
    (f * r).sum().backward()
    out["feats_train"] = f.detach()
    for k, v in m.state_dict().items():
        if any(s in k for s in ("running_mean", "running_var", "num_batches_tracked")):
            out["after." + k] = v.clone()
    for k, p in m.named_parameters():
        if not k.startswith("fc."):
            out["grad." + k] = p.grad.clone()
    return m, out


def rel_max(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def rel_norm(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    if ref_stamp.is_fresh(out, __file__):
        print("# reference files up to date")
        return 0
    torch.set_num_threads(2)
    for c_in in (2, 3, 12):
        for attempt in range(12):
            seed = FIRST_SEED[c_in] + attempt
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(BATCH, c_in, SIZE, SIZE, generator=g)
            r = torch.randn(BATCH, 512, generator=g)
            m, truth = run(c_in, seed, x, r, "float64")
            worst = 0.0
            for mode, jitter, threads in (("float32", None, 2), ("float32_cl", None, 2),
                                          ("float32", None, 1), ("float32", 1, 2)):
                torch.set_num_threads(threads)
                _, f32 = run(c_in, seed, x, r, mode, jitter)
                torch.set_num_threads(2)
                worst = max([worst] + [rel_max(f32[k], truth[k]) for k in truth if "num_batches" not in k])
            if worst <= WELL_CONDITIONED:
                break
            print(f"# c{c_in} seed {seed}: float32 variants vs float64 {worst:.2e}, ill-conditioned; next seed")
        else:
            print(f"ref_resnet18.py: no well-conditioned draw for C={c_in}", file=sys.stderr)
            return 1
        _, bf16 = run(c_in, seed, x, r, "bf16")
        sd = {k: v.detach().clone().contiguous() for k, v in build(c_in, seed).state_dict().items()}
        save_file(sd, os.path.join(out, f"weights_c{c_in}.safetensors"))
        exp = {"x": x, "R": r}
        for k, v in truth.items():
            exp[k] = v if "num_batches" in k else v.float()
            if k.startswith(("feats", "grad.")):
                exp["bf16err." + k] = torch.tensor([rel_norm(bf16[k], v)], dtype=torch.float32)
        save_file({k: v.contiguous() for k, v in exp.items()},
                  os.path.join(out, f"expect_c{c_in}.safetensors"))
        print(f"# c{c_in} seed {seed}: float32 variants vs float64 {worst:.2e}")
    ref_stamp.write(out, __file__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
