"""Reference for test_bt_loss: the Barlow Twins loss of facebookresearch/barlowtwins (main.py,
BarlowTwins.forward) on random embeddings, in float64, with its gradients wrt z1 and z2.
With "decur COMMON INTRA": four views (S1, S2, S1', S2'), the cross-modal term of DeCUR (Wang et
al. 2023) on z1, z2 (the diagonal's target 1 on the first COMMON dimensions, 0 after) plus INTRA
times the paper's loss on z1, z3 and on z2, z4; one affine-free BN for every view.
usage: ref_bt_loss.py OUT.safetensors N D LAMBDA SEED [decur COMMON INTRA]"""
import sys

import torch
from safetensors.torch import save_file


def off_diagonal(x):
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def bt(c, lambd, common):
    target = (torch.arange(c.shape[0]) < common).to(c.dtype)
    on_diag = (torch.diagonal(c) - target).pow(2).sum()
    return on_diag + lambd * off_diagonal(c).pow(2).sum()


def main():
    out, n, d, lambd, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    decur = len(sys.argv) > 6 and sys.argv[6] == "decur"
    g = torch.Generator().manual_seed(seed)
    # Embeddings with a non-zero mean and unequal scales, as a projector gives them.
    z1 = (torch.randn(n, d, generator=g) * torch.rand(d, generator=g) * 3 + torch.randn(d, generator=g)).float()
    zs = [z1, (0.5 * z1 + torch.randn(n, d, generator=g)).float()]
    if decur:
        common, intra = int(sys.argv[7]), float(sys.argv[8])
        zs += [(0.8 * zs[0] + 0.5 * torch.randn(n, d, generator=g)).float(),
               (0.8 * zs[1] + 0.5 * torch.randn(n, d, generator=g)).float()]
    leaves = [z.double().requires_grad_() for z in zs]
    bn = torch.nn.BatchNorm1d(d, affine=False).double().train()
    a = [bn(x) for x in leaves]
    # / n: the global batch; all_reduce is the identity on one process.
    if decur:
        loss = (bt(a[0].T @ a[1] / n, lambd, common)
                + intra * (bt(a[0].T @ a[2] / n, lambd, d) + bt(a[1].T @ a[3] / n, lambd, d)))
    else:
        loss = bt(a[0].T @ a[1] / n, lambd, d)
    loss.backward()
    tensors = {"loss": loss.detach().float().reshape(1)}
    for v, (z, x) in enumerate(zip(zs, leaves)):
        tensors[f"z{v + 1}"] = z.contiguous()
        tensors[f"dz{v + 1}"] = x.grad.float().contiguous()
    if decur:
        tensors["common"] = torch.tensor([float(common)])
        tensors["intra"] = torch.tensor([intra])
    save_file(tensors, out)


if __name__ == "__main__":
    main()
