#!/usr/bin/env python3
"""The scaling model of docs/scaling.md: weak-scaling efficiency of a Barlow Twins pre-training step
from 8 to 1,024 GPUs, per-GPU batch 128 and 256, from FLOPs per pair (counted as bench/bt_step
counts them), an assumed sustained GPU rate, published NVLink / InfiniBand all-reduce bus
bandwidths (nccl-tests' busbw), and twinfuse's bucket schedule (buckets cut from the arena's end,
started as backward finalises each ResNet18 stage of the last view, one at a time on the
communication stream). Every assumption is a named argument; docs/scaling.md lists them.
usage: scaling.py [--gpu a100|h100] [--dim 2048] [--channels 12] [--size 120] [--c-exchange allreduce|best]
       scaling.py --ranks 2 --batch 16 --tflops T --busbw GB/s --alpha us ...   (one case in detail: the
       check against bench/bt_step's measured overlap on this machine)"""
import argparse
import math

MIB = 1 << 20


def resnet18_stages(c_in, size):
    """Per stage (stem, layer1..4): forward conv FLOPs per image and trained parameters."""
    stages = []
    h = (size + 2 * 3 - 7) // 2 + 1                      # conv1 7x7/2, pad 3
    stem_f = 2.0 * c_in * 64 * 49 * h * h
    stages.append((stem_f, c_in * 64 * 49 + 2 * 64))
    h = (h + 2 - 3) // 2 + 1                             # maxpool 3x3/2, pad 1
    c = 64
    for s, c_out in enumerate((64, 128, 256, 512)):
        stride = 1 if s == 0 else 2
        ho = (h + 2 - 3) // stride + 1
        f = 2.0 * c * c_out * 9 * ho * ho + 3 * 2.0 * c_out * c_out * 9 * ho * ho
        p = c * c_out * 9 + 3 * c_out * c_out * 9 + 4 * 2 * c_out
        if stride == 2:
            f += 2.0 * c * c_out * ho * ho
            p += c * c_out + 2 * c_out
        stages.append((f, p))
        h, c = ho, c_out
    return stages


def allreduce_s(n_bytes, ranks, busbw, alpha):
    """nccl-tests: busbw = algbw * 2(n-1)/n, so time = bytes * 2(n-1)/n / busbw, plus a latency."""
    return alpha + n_bytes * 2.0 * (ranks - 1) / ranks / busbw


def allgather_s(total_bytes, ranks, busbw, alpha):
    """nccl-tests' all-gather: busbw = algbw * (n-1)/n over the gathered size."""
    return alpha + total_bytes * (ranks - 1) / ranks / busbw


def step(a, ranks, batch, bucket_bytes):
    """One step: (compute s, blocking collectives s, exposed gradient all-reduce s, detail)."""
    st = resnet18_stages(a.channels, a.size)
    d = a.dim
    fwd_bb = sum(f for f, _ in st)
    proj_f = 2.0 * (512 * d + 2 * d * d)                  # three GEMMs per sample
    loss_f = 2.0 * d * d                                   # C = bn(z1)^T bn(z2) per sample
    # per pair: 2 views x (forward + backward-weights + backward-data but the stem's) + heads
    pair = 2 * (3 * fwd_bb - st[0][0]) + 2 * 3 * proj_f + 3 * loss_f
    rate = a.tflops * 1e12
    t_compute = batch * pair / rate
    t_fwd = batch * (2 * fwd_bb + 2 * proj_f + loss_f) / rate
    t_proj_bwd = batch * (2 * 2 * proj_f + 2 * loss_f) / rate
    bwd_stage = [batch * (f if i == 0 else 2 * f) / rate for i, (f, _) in enumerate(st)]
    t_bb_view = sum(bwd_stage)
    # Ready times of the arena's ranges, from its end: the projector's (after its backward), then
    # the last view's layer4, layer3, ..., stem; time 0 = start of backward.
    p_proj = 512 * d + 2 * d * d + 2 * 2 * d
    ranges = [(p_proj * 4, t_proj_bwd)]
    t = t_proj_bwd + t_bb_view                            # the first view's backbone backward
    for i in (4, 3, 2, 1, 0):
        t += bwd_stage[i]
        ranges.append((st[i][1] * 4, t))
    t_bwd = t
    busbw, alpha = (a.intra_busbw, a.intra_alpha) if ranks <= a.gpus_per_node else (a.inter_busbw, a.inter_alpha)
    busbw *= 1e9
    alpha *= 1e-6 * (1 + math.log2(max(1, ranks // a.gpus_per_node)) if ranks > a.gpus_per_node else 1)
    # Buckets of bucket_bytes from the end; a bucket is ready when its lowest byte is.
    total = sum(b for b, _ in ranges)
    size = bucket_bytes if bucket_bytes else total
    free_at, hi, comm_alone = 0.0, total, 0.0
    while hi > 0:
        lo = max(0, hi - size)
        covered, ready = 0, 0.0
        for nb, tr in ranges:                              # ranges from the end downwards
            if total - covered - nb < hi and total - covered > lo:
                ready = max(ready, tr)
            covered += nb
        start = max(ready, free_at)
        free_at = start + allreduce_s(hi - lo, ranks, busbw, alpha)
        comm_alone += allreduce_s(hi - lo, ranks, busbw, alpha)
        hi = lo
    exposed = max(0.0, free_at - t_bwd)
    # Blocking: the cross-correlation (all-reduce D x D, or all-gather both views' embeddings,
    # whichever is cheaper) and the synced BNs' 12 small all-reduces (6 forward, 6 backward).
    c_ar = allreduce_s(4.0 * d * d, ranks, busbw, alpha)
    # The all-gather makes every rank form the whole C from the global batch's embeddings: the
    # other ranks' rows cost 2 (N - b) D^2 FLOPs more (the backward needs only the local rows).
    c_ag = allgather_s(2.0 * ranks * batch * d * 4, ranks, busbw, alpha) + 2.0 * (ranks - 1) * batch * d * d / rate
    bn = 12 * allreduce_s(8.0 * d, ranks, busbw, alpha)
    blocking = (c_ar if a.c_exchange == "allreduce" else min(c_ar, c_ag)) + bn
    return t_compute, blocking, exposed, dict(fwd=t_fwd, bwd=t_bwd, c_ar=c_ar, c_ag=c_ag, bn=bn,
                                              grad_mib=total / MIB, pair_gflop=pair / 1e9, comm=comm_alone)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", default="h100", choices=["a100", "h100"])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--channels", type=int, default=12)
    ap.add_argument("--size", type=int, default=120)
    ap.add_argument("--tflops", type=float, help="sustained TFLOP/s on this step (default: a100 20, h100 40)")
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--bw-scale", type=float, default=1.0, help="multiply every bus bandwidth (sensitivity)")
    ap.add_argument("--c-exchange", default="allreduce", choices=["allreduce", "best"],
                    help="allreduce: C all-reduced (what twinfuse does); best: the cheaper of that and all-gather "
                         "(its time includes forming the whole C on every rank)")
    ap.add_argument("--ranks", type=int, help="one case: this many ranks (all in one node)")
    ap.add_argument("--batch", type=int, default=16, help="one case: pairs per rank")
    ap.add_argument("--busbw", type=float, help="one case: all-reduce bus bandwidth, GB/s")
    ap.add_argument("--alpha", type=float, default=10.0, help="one case: latency per all-reduce, us")
    ap.add_argument("--bucket-mib", type=float, default=4.0, help="one case: the bucket size")
    a = ap.parse_args()
    if a.tflops is None:
        a.tflops = 20.0 if a.gpu == "a100" else 40.0
    if a.ranks:
        if a.busbw is None:
            ap.error("--ranks needs --busbw")
        a.gpus_per_node = a.ranks
        a.intra_busbw, a.intra_alpha = a.busbw, a.alpha
        tc, blk, exp, inf = step(a, a.ranks, a.batch, int(a.bucket_mib * MIB))
        print(f"# one case: {a.ranks} ranks x {a.batch} pairs at {a.tflops:g} TFLOP/s, busbw {a.busbw:g} GB/s, "
              f"latency {a.alpha:g} us, buckets of {a.bucket_mib:g} MiB")
        print(f"predicted step_ms={1e3 * (tc + blk + exp):.1f} compute_ms={1e3 * tc:.1f} backward_ms={1e3 * inf['bwd']:.1f} "
              f"comm_alone_ms={1e3 * inf['comm']:.2f} wait_ms={1e3 * exp:.2f} "
              f"overlap={1 - exp / inf['comm'] if inf['comm'] else 0:.3f} blocking_ms={1e3 * blk:.2f}")
        return
    # Published all-reduce busbw at large messages (nccl-tests): 8x A100 NVLink3 230-250 GB/s, A100 +
    # 8x HDR multi-node 250-300 quoted (we take 180); 8x H100 NVLink4 460-480, H100 + 8x NDR 400-450
    # quoted (we take 350). Latency: 15 us inside a node, 25 us across, +1x per doubling of nodes.
    bw = {"a100": (230.0, 180.0), "h100": (450.0, 350.0)}[a.gpu]
    a.intra_busbw, a.inter_busbw = bw[0] * a.bw_scale, bw[1] * a.bw_scale
    a.intra_alpha, a.inter_alpha = 15.0, 25.0
    buckets = [1, 2, 4, 8, 16, 25, 32, 64, 128, 0]
    _, _, _, info = step(a, 8, 128, 0)
    print(f"# scaling model: {a.gpu} at {a.tflops:g} TFLOP/s sustained, {a.channels} channels {a.size}x{a.size}, "
          f"projector {a.dim}; {info['pair_gflop']:.2f} GFLOP per pair, gradients {info['grad_mib']:.1f} MiB f32")
    print(f"# busbw {a.intra_busbw:g} GB/s within a node of {a.gpus_per_node}, {a.inter_busbw:g} GB/s across nodes")
    print("# ranks batch  step_ms  C_ms(ar/ag)  bn_ms  best_bucket_MiB  exposed_ms  efficiency  (flat, no overlap: eff)")
    for batch in (128, 256):
        for ranks in (8, 16, 32, 64, 128, 256, 512, 1024):
            best = None
            for mib in buckets:
                tc, blk, exp, inf = step(a, ranks, batch, mib * MIB)
                eff = tc / (tc + blk + exp)
                if best is None or eff > best[0] + 1e-9:
                    best = (eff, mib, tc, blk, exp, inf)
            eff, mib, tc, blk, exp, inf = best
            tc0, blk0, _, inf0 = step(a, ranks, batch, 0)
            t_flat = allreduce_s(inf0["grad_mib"] * MIB, ranks,
                                 (a.intra_busbw if ranks <= a.gpus_per_node else a.inter_busbw) * 1e9, 0)
            flat_eff = tc0 / (tc0 + blk0 + t_flat)
            print(f"  {ranks:5d} {batch:5d} {1e3 * tc:8.1f} {1e3 * inf['c_ar']:6.2f}/{1e3 * inf['c_ag']:<6.2f} "
                  f"{1e3 * inf['bn']:6.2f} {('all' if mib == 0 else str(mib)):>15} {1e3 * exp:11.2f} {eff:11.3f}"
                  f"   ({flat_eff:.3f})")


if __name__ == "__main__":
    main()
