"""Reference for test_bt_loss: the Barlow Twins loss of facebookresearch/barlowtwins (main.py,
BarlowTwins.forward) on random embeddings, in float64, with its gradients wrt z1 and z2.
usage: ref_bt_loss.py OUT.safetensors N D LAMBDA SEED"""
import sys

import torch
from safetensors.torch import save_file


def off_diagonal(x):
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def main():
    out, n, d, lambd, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    g = torch.Generator().manual_seed(seed)
    # Embeddings with a non-zero mean and unequal scales, as a projector gives them.
    z1 = (torch.randn(n, d, generator=g) * torch.rand(d, generator=g) * 3 + torch.randn(d, generator=g)).float()
    z2 = (0.5 * z1 + torch.randn(n, d, generator=g)).float()
    a, b = z1.double().requires_grad_(), z2.double().requires_grad_()
    bn = torch.nn.BatchNorm1d(d, affine=False).double().train()
    c = bn(a).T @ bn(b)
    c = c / n   # the global batch; all_reduce is the identity on one process
    on_diag = torch.diagonal(c).add(-1).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    loss = on_diag + lambd * off_diag
    loss.backward()
    save_file({"z1": z1.contiguous(), "z2": z2.contiguous(),
               "loss": loss.detach().float().reshape(1),
               "dz1": a.grad.float().contiguous(), "dz2": b.grad.float().contiguous()}, out)


if __name__ == "__main__":
    main()
