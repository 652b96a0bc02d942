"""Reference for tests/optim: runs torch.optim.Adam, AdamW, SGD and the official Barlow Twins LARS
on a few 1-D, 2-D and 4-D tensors for K steps, with the learning rate set before every step by
the official adjust_learning_rate (generalised: warm-up epochs and final ratio as parameters).
Writes OUT/cases.txt (one line per case), OUT/segs.txt and OUT/<case>.f32: initial params [N],
grads [K, N], lr per step [K] (as f32 pairs: weights, biases), final params [N], final state [S, N].
Usage: ref_optim.py OUT"""
import math
import os
import sys

try:
    import numpy as np
    import torch
    from torch import optim
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
    from official_lars import LARS
except ImportError as e:  # the test reports a skip, not a pass
    print(f"skip: {e}")
    sys.exit(77)

K = 9
STEPS_PER_EPOCH = 2
SHAPES = [(24, 16), (16,), (8, 4, 3, 3), (8,), (5, 7), (6,)]   # weights and 1-D params


def adjust_learning_rate(c, step):
    """The official schedule (main.py adjust_learning_rate) with warm-up epochs, the final ratio
    and batch scaling as parameters; 'constant' stops after the warm-up."""
    max_steps = c['epochs'] * STEPS_PER_EPOCH
    warmup_steps = c['warmup_epochs'] * STEPS_PER_EPOCH
    base_lr = c['batch'] / 256 * c['lr'] if c['batch_scale'] else c['lr']
    if step < warmup_steps:
        lr = base_lr * step / warmup_steps
    elif c['sched'] == 'constant':
        lr = base_lr
    else:
        step -= warmup_steps
        max_steps -= warmup_steps
        q = 0.5 * (1 + math.cos(math.pi * step / max_steps))
        end_lr = base_lr * c['final']
        lr = base_lr * q + end_lr * (1 - q)
    return lr, lr * c['bias_scale']


BASE = dict(lr=1e-3, bias_scale=1.0, wd=0.0, momentum=0.9, nesterov=0, beta1=0.9, beta2=0.999,
            eps=1e-8, eta=1e-3, sched='cosine', warmup_epochs=2, epochs=5, final=1e-3,
            batch=256, batch_scale=0)
CASES = [
    dict(name='adam', kind='adam', lr=3e-3, wd=0.01, bias_scale=0.5),
    dict(name='adamw', kind='adamw', lr=2e-3, wd=0.1, beta1=0.8, beta2=0.99, eps=1e-6),
    dict(name='adam_constant', kind='adam', lr=1e-2, sched='constant', warmup_epochs=0),
    dict(name='sgd', kind='sgd', lr=0.1, wd=1e-3, momentum=0.9),
    dict(name='sgd_nesterov', kind='sgd', lr=0.05, wd=1e-4, momentum=0.8, nesterov=1, final=0.1),
    dict(name='lars', kind='lars', lr=0.2, bias_scale=0.024, wd=1e-2, batch=512, batch_scale=1),
    dict(name='lars_eta', kind='lars', lr=0.5, wd=1.5e-6, eta=0.02, momentum=0.5, warmup_epochs=1, epochs=4),
]
KINDS = {'adam': 0, 'adamw': 1, 'lars': 2, 'sgd': 3}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(1234)
    init = [torch.randn(s, dtype=torch.float32) for s in SHAPES]
    init[4].zero_()   # a weight at zero: LARS keeps q = 1 (param_norm = 0)
    grads = [[torch.randn(s, dtype=torch.float32) for s in SHAPES] for _ in range(K)]
    n = sum(t.numel() for t in init)
    with open(os.path.join(out, 'segs.txt'), 'w') as f:
        off = 0
        for t in init:
            f.write(f"{off} {t.numel()} {int(t.ndim == 1)}\n")
            off += t.numel()
    lines = []
    for case in CASES:
        c = dict(BASE, **case)
        params = [t.clone().requires_grad_(True) for t in init]
        weights = [p for p in params if p.ndim != 1]
        biases = [p for p in params if p.ndim == 1]
        if c['kind'] in ('adam', 'adamw'):
            cls = optim.Adam if c['kind'] == 'adam' else optim.AdamW
            # 1-D parameters get no weight decay (backend.h), as two param groups.
            opt = cls([dict(params=weights, weight_decay=c['wd']), dict(params=biases, weight_decay=0.0)],
                      lr=0.0, betas=(c['beta1'], c['beta2']), eps=c['eps'])
        elif c['kind'] == 'sgd':
            opt = optim.SGD([dict(params=weights, weight_decay=c['wd']), dict(params=biases, weight_decay=0.0)],
                            lr=0.0, momentum=c['momentum'], nesterov=bool(c['nesterov']))
        else:
            # As the official main.py builds it: weights then biases, one LARS over both groups.
            opt = LARS([dict(params=weights), dict(params=biases)], lr=0, weight_decay=c['wd'],
                       momentum=c['momentum'], eta=c['eta'], weight_decay_filter=True,
                       lars_adaptation_filter=True)
        lrs = []
        for step in range(K):
            lr_w, lr_b = adjust_learning_rate(c, step)
            opt.param_groups[0]['lr'] = lr_w
            opt.param_groups[1]['lr'] = lr_b
            lrs += [lr_w, lr_b]
            for p, g in zip(params, grads[step]):
                p.grad = g.clone()
            opt.step()
        if c['kind'] in ('adam', 'adamw'):
            keys = ['exp_avg', 'exp_avg_sq']
        else:
            keys = ['mu' if c['kind'] == 'lars' else 'momentum_buffer']
        state = [torch.cat([opt.state[p][k].reshape(-1) for p in params]) for k in keys]
        flat = lambda ts: torch.cat([t.detach().reshape(-1) for t in ts]).numpy()
        blob = [flat(init)] + [flat(g) for g in grads] + [np.array(lrs, dtype=np.float64).view(np.float32)]
        blob += [flat(params)] + [s.numpy() for s in state]
        np.concatenate(blob).astype(np.float32).tofile(os.path.join(out, c['name'] + '.f32'))
        lines.append(f"{c['name']} {KINDS[c['kind']]} {c['lr']!r} {c['bias_scale']!r} {c['wd']!r} "
                     f"{c['momentum']!r} {c['nesterov']} {c['beta1']!r} {c['beta2']!r} {c['eps']!r} "
                     f"{c['eta']!r} {int(c['sched'] == 'constant')} {c['warmup_epochs'] * STEPS_PER_EPOCH} "
                     f"{c['epochs'] * STEPS_PER_EPOCH} {c['final']!r} {c['batch'] if c['batch_scale'] else 256} "
                     f"{K} {len(keys)} {n}")
    with open(os.path.join(out, 'cases.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print(f"wrote {len(CASES)} cases, {n} parameters, {K} steps to {out}")


if __name__ == '__main__':
    main()
