#!/usr/bin/env python3
"""The fp32 gradient check of test_resnet18, against float64 run with twinfuse's own decisions.

A ReLU or max-pool input within float32 rounding of its tie may go either way in any float32
implementation (its summation order decides), and one flipped element moves whole gradient tensors
by ~1 %: no fixed draw of inputs avoids such near-ties at batch 4 and 120x120 (layer4's inputs
differ from float64 by up to 2e-5 of their rms between float32 kernels, and about one element in
10^5 lies that close to 0). So the truth here is the float64 network with each ReLU's mask and
the max pool's choice taken from twinfuse's forward (got_c<C>[_sync].safetensors, written by
test_resnet18), and two things are checked:
  1. every decision of twinfuse that differs from the float64 network's own lies within
     TIE_MARGIN of its tie (a ReLU input |z| < TIE_MARGIN * rms(z); a max-pool pick within that of
     the window's maximum) -- a wrong mask or pooling index decides far from any tie;
  2. every gradient is within GRAD_TOL of the float64 gradient under those decisions,
     max |got - want| <= GRAD_TOL * max |want| (as check_close).
usage: check_masked.py REF_DIR OUT_DIR C[_sync] [C[_sync] ...]   exit 0 pass, 1 fail"""
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_resnet18  # noqa: E402  (build(): the same model and weights as the reference)

GRAD_TOL = 1e-3
TIE_MARGIN = 2e-4   # 8x the largest float32-vs-float64 difference measured at any ReLU input


def pool_windows(y):
    """[N, C, H, W] -> [N, C, Ho, Wo, 9]: the 3x3 stride-2 pad-1 windows of the max pool."""
    u = F.pad(y, (1, 1, 1, 1), value=float("-inf")).unfold(2, 3, 2).unfold(3, 3, 2)
    return u.reshape(*u.shape[:4], 9)


def forward(m, x, decide):
    """features of m on x, with each ReLU's mask and the pool's pick from decide(name, z) /
    decide("pool", windows); returns the features and the ReLU inputs by site name."""
    z_at = {}

    def relu(name, z):
        z_at[name] = z.detach()
        return z * decide(name, z)

    y = relu("bn1", m.bn1(m.conv1(x)))
    win = pool_windows(y)
    z_at["pool"] = win.detach()
    h = win.gather(-1, decide("pool", win).unsqueeze(-1)).squeeze(-1)
    for li, layer in enumerate((m.layer1, m.layer2, m.layer3, m.layer4), start=1):
        for bi, b in enumerate(layer):
            name = f"layer{li}.{bi}"
            a = relu(f"{name}.bn1", b.bn1(b.conv1(h)))
            skip = b.downsample(h) if b.downsample is not None else h
            h = relu(name, b.bn2(b.conv2(a)) + skip)
    return h.mean(dim=(2, 3)), z_at


def check(ref_dir, out_dir, case):
    c_in = int(case.split("_")[0])
    seed_file = load_file(os.path.join(ref_dir, f"expect_c{c_in}.safetensors"))
    got = load_file(os.path.join(out_dir, f"got_c{case}.safetensors"))
    weights = load_file(os.path.join(ref_dir, f"weights_c{c_in}.safetensors"))
    x, r = seed_file["x"].double(), seed_file["R"].double()

    def model():
        m = ref_resnet18.build(c_in, 0)
        m.load_state_dict(weights)
        return m.double().train()

    # The float64 network's own decisions.
    with torch.no_grad():
        _, z_own = forward(model(), x, lambda n, z: (z > 0).double() if n != "pool" else z.argmax(-1))
    # twinfuse's decisions: its masks, and the pool's pick on its own stem output.
    stem = got["stem_out"].double()
    tw_pick = pool_windows(stem).argmax(-1)
    ok = True
    for name, z in z_own.items():
        if name == "pool":
            own = z.argmax(-1)
            diff = own != tw_pick
            gap = z.max(-1).values - z.gather(-1, tw_pick.unsqueeze(-1)).squeeze(-1)
            scale = z[torch.isfinite(z)].pow(2).mean().sqrt()
            bad = diff & (gap > TIE_MARGIN * scale)
            n_diff, worst = int(diff.sum()), float((gap[diff] / scale).max()) if diff.any() else 0.0
        else:
            mask = got[f"mask.{name}"].double()
            diff = mask != (z > 0).double()
            scale = z.pow(2).mean().sqrt()
            bad = diff & (z.abs() > TIE_MARGIN * scale)
            n_diff, worst = int(diff.sum()), float((z.abs()[diff] / scale).max()) if diff.any() else 0.0
        if bad.any():
            ok = False
            print(f"  FAIL c{case} {name}: {int(bad.sum())} of {n_diff} decisions differing from "
                  f"float64 are not near a tie (worst {worst:.2e} of the rms, margin {TIE_MARGIN:g})")
        elif n_diff:
            print(f"  ok   c{case} {name}: {n_diff} decision(s) differ from float64, all within "
                  f"float32 rounding of the tie (worst {worst:.2e} of the rms)")

    # The float64 gradients under twinfuse's decisions.
    masks = {k[5:]: v.double() for k, v in got.items() if k.startswith("mask.")}
    m = model()
    feats, _ = forward(m, x, lambda n, z: tw_pick if n == "pool" else masks[n])
    (feats * r).sum().backward()
    worst_rel, worst_name = 0.0, "-"
    for k, p in m.named_parameters():
        if k.startswith("fc."):
            continue
        want, have = p.grad.flatten(), got[f"grad.{k}"].double()
        if want.numel() != have.numel():
            print(f"  FAIL c{case} grad.{k}: {have.numel()} elements, want {want.numel()}")
            ok = False
            continue
        err = (have - want).abs()
        rel = float(err.max() / want.abs().max().clamp_min(1e-30))
        if not torch.isfinite(have).all() or rel > GRAD_TOL:
            ok = False
            i = int(err.argmax())
            print(f"  FAIL c{case} grad.{k:40s} max_rel={rel:.3e} tol={GRAD_TOL:g} worst element "
                  f"{i}: got {float(have[i]):.8e} want {float(want[i]):.8e}")
        if rel > worst_rel:
            worst_rel, worst_name = rel, k
    print(f"{'  ok  ' if ok else '  FAIL'} c{case}: gradients of every parameter against float64 "
          f"with twinfuse's decisions (worst {worst_rel:.3e} of the tensor's max, in {worst_name})")
    return ok


def main():
    if len(sys.argv) < 4:
        print(__doc__.split("usage: ")[1], file=sys.stderr)
        return 1
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    ok = all([check(sys.argv[1], sys.argv[2], case) for case in sys.argv[3:]])
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
