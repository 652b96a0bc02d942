#!/usr/bin/env python3
"""Reference values for tests/backend/test_torch_ref.c, computed with PyTorch in float64.

Writes one file of records [u32 name length][name][u64 n][n float32] (all tensors NCHW / torch
order): convolutions (forward, backward-data, backward-weights), BatchNorm2d over two training
steps (running statistics with momentum and the unbiased variance, then backward), max pool
3x3/2 pad 1 forward and backward, and five steps of Adam, AdamW, SGD (plain and Nesterov) and
the LARS of facebookresearch/barlowtwins on a 2-D weight plus a 1-D bias.

usage: ref_ops.py OUT_FILE
"""
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from official_lars import LARS  # noqa: E402


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ref_ops.py OUT_FILE")
    torch.manual_seed(1234)
    torch.set_default_dtype(torch.float64)
    recs = []

    def put(name, t):
        recs.append((name, t.detach().to(torch.float32).contiguous().reshape(-1)))

    def rand(*shape, scale=1.0):
        # Values that are exact in float32, so C (float32) and torch (float64) see the same input.
        return ((torch.rand(*shape) * 2 - 1) * scale).to(torch.float32).to(torch.float64)

    # ---- convolutions: (name, n, c_in, hw, c_out, k, stride, pad)
    convs = [("conv3s2", 2, 16, 9, 24, 3, 2, 1), ("conv7s2", 2, 3, 15, 16, 7, 2, 3),
             ("conv1s1", 2, 32, 6, 16, 1, 1, 0), ("conv3s1", 2, 20, 7, 20, 3, 1, 1)]
    for name, n, ci, hw, co, k, s, p in convs:
        x = rand(n, ci, hw, hw).requires_grad_()
        w = rand(co, ci, k, k, scale=0.3).requires_grad_()
        y = torch.nn.functional.conv2d(x, w, stride=s, padding=p)
        dy = rand(*y.shape)
        y.backward(dy)
        for key, t in (("x", x), ("w", w), ("y", y), ("dy", dy), ("dx", x.grad), ("dw", w.grad)):
            put(f"{name}.{key}", t)

    # ---- BatchNorm2d: two training steps, then backward of the second
    bn = torch.nn.BatchNorm2d(8, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        bn.weight.copy_(rand(8) + 1.5)
        bn.bias.copy_(rand(8))
    put("bn.gamma", bn.weight)
    put("bn.beta", bn.bias)
    bn.train()
    x1 = rand(4, 8, 5, 5, scale=2.0) + 0.5
    bn(x1)
    x2 = (rand(4, 8, 5, 5, scale=3.0) - 0.25).requires_grad_()
    y2 = bn(x2)
    dy = rand(*y2.shape)
    y2.backward(dy)
    for key, t in (("x1", x1), ("x2", x2), ("y2", y2), ("dy", dy), ("dx", x2.grad),
                   ("dgamma", bn.weight.grad), ("dbeta", bn.bias.grad),
                   ("run_mean", bn.running_mean), ("run_var", bn.running_var)):
        put(f"bn.{key}", t)
    bn.eval()
    put("bn.y_eval", bn(x2))

    # ---- max pool 3x3/2 pad 1
    x = rand(2, 8, 11, 10).requires_grad_()
    y = torch.nn.functional.max_pool2d(x, 3, 2, 1)
    dy = rand(*y.shape)
    y.backward(dy)
    for key, t in (("x", x), ("y", y), ("dy", dy), ("dx", x.grad)):
        put(f"maxpool.{key}", t)

    # ---- optimizers: weight [16, 8] (decayed, adapted) + bias [16] (1-D: neither)
    w0, b0 = rand(16, 8), rand(16)
    grads = [(rand(16, 8), rand(16)) for _ in range(5)]
    put("opt.w0", w0)
    put("opt.b0", b0)
    for t, (gw, gb) in enumerate(grads):
        put(f"opt.gw{t}", gw)
        put(f"opt.gb{t}", gb)

    def run(name, make):
        w = w0.clone().requires_grad_()
        b = b0.clone().requires_grad_()
        opt = make(w, b)
        for gw, gb in grads:
            w.grad, b.grad = gw.clone(), gb.clone()
            opt.step()
        put(f"{name}.w", w)
        put(f"{name}.b", b)

    # 1-D parameters take no weight decay (backend.h): their own param group with wd = 0.
    run("adam", lambda w, b: torch.optim.Adam(
        [{"params": [w]}, {"params": [b], "weight_decay": 0.0}],
        lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05))
    run("adamw", lambda w, b: torch.optim.AdamW(
        [{"params": [w]}, {"params": [b], "weight_decay": 0.0}],
        lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1))
    run("sgd", lambda w, b: torch.optim.SGD(
        [{"params": [w]}, {"params": [b], "weight_decay": 0.0}],
        lr=0.05, momentum=0.9, weight_decay=1e-3))
    run("sgd_nesterov", lambda w, b: torch.optim.SGD(
        [{"params": [w]}, {"params": [b], "weight_decay": 0.0}],
        lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True))
    run("lars", lambda w, b: LARS([w, b], lr=0.2, weight_decay=0.05, momentum=0.9, eta=0.001,
                                  weight_decay_filter=True, lars_adaptation_filter=True))

    with open(sys.argv[1], "wb") as f:
        for name, t in recs:
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<Q", t.numel()))
            f.write(t.numpy().astype("<f4").tobytes())
    print(f"wrote {len(recs)} reference tensors to {sys.argv[1]}")


if __name__ == "__main__":
    main()
