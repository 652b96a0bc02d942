"""Reference for test_bt_step: one Barlow Twins training step in PyTorch, as the official
implementation does it (facebookresearch/barlowtwins main.py: torchvision ResNet with fc removed,
the bias-free projector with BN+ReLU, the affine-free BN, the loss; LARS class copied from it),
in float32 on the CPU. Writes the initial state, the two views, the loss, the gradients and the
state after the update.
With "cross C_S2": the cross-modal model (src/model/bt_model.h, cross), two BarlowTwins-like branches s1
(C channels) and s2 (C_S2 channels), each with its own backbone and projector, and the loss's BN;
y1 is the S1 view and y2 the S2 view of the same places.
With "cross C_S2 decur COMMON INTRA" (loss.intra, loss.common_dims): y3 and y4 are a second S1 and
S2 view; the loss is DeCUR's (Wang et al. 2023): S1 against S2 with the diagonal's target 1 on the
first COMMON dimensions and 0 after, plus INTRA times the paper's loss on S1 against S1' and on S2
against S2'; one affine-free BN for the four embeddings, called in view order.
usage: ref_bt_step.py OUT.safetensors N C H D adam|lars SEED [cross C_S2 [decur COMMON INTRA]]"""
import os
import sys

import torch
import torchvision
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from official_lars import LARS  # noqa: E402

LAMBD = 0.0051
# eps 1 rather than 1e-8: Adam's first step is lr * g / (|g| + eps), a full step of either sign
# for a gradient at fp32 rounding level (and the zero-initialised BN biases are nothing but that
# step); with eps near the gradients' scale the update is Lipschitz in g, so its error is the
# gradient's, while the moments, bias corrections and decay are exercised as before.
ADAM = dict(lr=1e-3, betas=(0.9, 0.999), eps=1.0, weight_decay=1e-4)
LARS_HP = dict(lr=0.2, lr_bias=0.0048, weight_decay=1.5e-6, momentum=0.9, eta=0.001)


def off_diagonal(x):
    n, m = x.shape
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_loss(c, n, common=None):
    c = c / n
    target = torch.ones(c.shape[0]) if common is None else (torch.arange(c.shape[0]) < common).float()
    on_diag = (torch.diagonal(c) - target).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    return on_diag + LAMBD * off_diag


class Branch(torch.nn.Module):
    """What BarlowTwins holds for one modality: its backbone and its projector."""

    def __init__(self, c_in, d):
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

    def forward(self, y):
        return self.projector(self.backbone(y))


class BarlowTwins(Branch):
    def __init__(self, c_in, d):
        super().__init__(c_in, d)
        self.bn = torch.nn.BatchNorm1d(d, affine=False)

    def forward(self, y1, y2):
        z1 = super().forward(y1)
        z2 = super().forward(y2)
        return barlow_loss(self.bn(z1).T @ self.bn(z2), y1.shape[0])


class CrossBarlowTwins(torch.nn.Module):
    def __init__(self, c_s1, c_s2, d):
        super().__init__()
        self.s1 = Branch(c_s1, d)
        self.s2 = Branch(c_s2, d)
        self.bn = torch.nn.BatchNorm1d(d, affine=False)

    def forward(self, y1, y2):
        z1, z2 = self.s1(y1), self.s2(y2)
        return barlow_loss(self.bn(z1).T @ self.bn(z2), y1.shape[0])


class DecurBarlowTwins(CrossBarlowTwins):
    def __init__(self, c_s1, c_s2, d, common, intra):
        super().__init__(c_s1, c_s2, d)
        self.common, self.intra = common, intra

    def forward(self, y1, y2, y3, y4):
        z1, z2, z3, z4 = self.s1(y1), self.s2(y2), self.s1(y3), self.s2(y4)
        a1, a2, a3, a4 = self.bn(z1), self.bn(z2), self.bn(z3), self.bn(z4)
        n = y1.shape[0]
        return (barlow_loss(a1.T @ a2, n, self.common)
                + self.intra * (barlow_loss(a1.T @ a3, n) + barlow_loss(a2.T @ a4, n)))


def main():
    out, n, c, h, d, opt_name, seed = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                                       int(sys.argv[5]), sys.argv[6], int(sys.argv[7]))
    cross = len(sys.argv) > 8 and sys.argv[8] == "cross"
    decur = len(sys.argv) > 10 and sys.argv[10] == "decur"
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    views = {}
    if cross:
        c_s2 = int(sys.argv[9])
        model = (DecurBarlowTwins(c, c_s2, d, int(sys.argv[11]), float(sys.argv[12])) if decur
                 else CrossBarlowTwins(c, c_s2, d)).train()
        y1 = torch.randn(n, c, h, h)
        # The S2 view shares the places' content: each band leans on one S1 channel.
        y2 = 0.7 * y1[:, torch.arange(c_s2) % c] + 0.5 * torch.randn(n, c_s2, h, h)
        if decur:
            views = {"y3": 0.8 * y1 + 0.4 * torch.randn(n, c, h, h),
                     "y4": 0.8 * y2 + 0.4 * torch.randn(n, c_s2, h, h)}
    else:
        model = BarlowTwins(c, d).train()
        y1 = torch.randn(n, c, h, h)
        y2 = (0.7 * y1 + 0.5 * torch.randn(n, c, h, h))
    state0 = {"init." + k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    weights = [p for p in model.parameters() if p.ndim != 1]
    biases = [p for p in model.parameters() if p.ndim == 1]
    if opt_name == "adam":
        # twinfuse keeps 1-D parameters out of weight decay for every optimizer.
        opt = torch.optim.Adam([{"params": weights}, {"params": biases, "weight_decay": 0.0}], **ADAM)
    else:
        hp = LARS_HP
        opt = LARS([{"params": weights}, {"params": biases}], lr=0, weight_decay=hp["weight_decay"],
                   momentum=hp["momentum"], eta=hp["eta"], weight_decay_filter=True,
                   lars_adaptation_filter=True)
        opt.param_groups[0]["lr"] = hp["lr"]
        opt.param_groups[1]["lr"] = hp["lr_bias"]
    loss = model(y1, y2, *views.values())
    opt.zero_grad()
    loss.backward()
    grads = {"grad." + k: p.grad.detach().clone().contiguous() for k, p in model.named_parameters()}
    opt.step()
    state1 = {"after." + k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    tensors = {**state0, **grads, **state1, "y1": y1.contiguous(), "y2": y2.contiguous(),
               "loss": loss.detach().reshape(1), **{k: v.contiguous() for k, v in views.items()}}
    save_file(tensors, out)


if __name__ == "__main__":
    main()
