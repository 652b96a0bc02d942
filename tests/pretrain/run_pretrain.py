"""End-to-end `twinfuse pretrain` on synthetic shards, on the CPU:
1. a short run lowers the loss;
2. a run stopped at step 4 and resumed (resume=auto) continues at step 5 with the same losses as
   the uninterrupted run, and ends with the same weights, BN buffers, counters and optimizer
   state, bit for bit;
3. with the newest checkpoint corrupted, resume=auto warns, skips it, resumes from the one before
   and again matches the uninterrupted run; a checkpoint whose metadata (step, loader position,
   config) was edited is refused with a message naming it;
4. a diverging run (SGD at lr 1e30) stops with a message and exit code 1 and keeps its last good
   checkpoint;
5. with MPIRUN given: 2 ranks stopped at step 3 and resumed match 2 uninterrupted ranks (losses and
   final state), with the backbone's BN per rank and synchronised (model.backbone_bn=sync); and 2
   ranks with the embeddings all-gathered (loss.c_exchange=allgather) start from the same loss as
   with C all-reduced (both exact: 1e-5 at step 1) and run to the end.
usage: run_pretrain.py TWINFUSE CONFIG SHARD_DIR WORK_DIR [MPIRUN]"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import check, failures, read_safetensors, runner, same_state, write_safetensors  # noqa: E402

TWINFUSE, CONFIG, SHARDS, WORK = sys.argv[1:5]
MPIRUN = sys.argv[5] if len(sys.argv) > 5 else None
COMMON = [f"data.shards={SHARDS}", f"run.out_dir={WORK}", "data.size=32", "data.batch=8",
          "model.projector_dim=64", "optim.warmup_epochs=0", "optim.epochs=4", "run.log_every=1",
          "backend.threads=1"]


twinfuse = runner(TWINFUSE, env={**os.environ, "OMP_NUM_THREADS": "1"}, mpirun=MPIRUN)


def run(name, *over, expect=0, ranks=1):
    return twinfuse("pretrain", CONFIG, f"run.name={name}", *COMMON, *over, expect=expect, ranks=ranks)


def losses(name):
    out = {}
    with open(os.path.join(WORK, name, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            if "monitor" not in m:   # a monitor check's line (docs/monitor.md)
                out[m["step"]] = m["loss"]
    return out



shutil.rmtree(WORK, ignore_errors=True)

# 1. The loss falls over 16 steps (means of the first and last four, the batches differ).
run("fall", "run.max_steps=16", "run.ckpt_every_steps=0", "run.resume=never")
l = losses("fall")
first, last = sum(l[s] for s in range(1, 5)) / 4, sum(l[s] for s in range(13, 17)) / 4
check(last < 0.8 * first, f"loss falls: mean of steps 1-4 {first:.4g}, of steps 13-16 {last:.4g}")

# 2. Uninterrupted against stopped-and-resumed.
run("whole", "run.max_steps=8", "run.ckpt_every_steps=2", "run.resume=never")
whole = losses("whole")
run("split", "run.max_steps=4", "run.ckpt_every_steps=2", "run.resume=never")
ckpts = sorted(os.listdir(os.path.join(WORK, "split")))
check("ckpt-00000002.safetensors" in ckpts and "ckpt-00000004.safetensors" in ckpts,
      f"checkpoints at steps 2 and 4: {ckpts}")
p = run("split", "run.max_steps=8", "run.ckpt_every_steps=2", "run.resume=auto")
check("resumed from" in p.stdout and "at step 4" in p.stdout, "resume=auto picked the step-4 checkpoint")
split = losses("split")
for s in range(5, 9):
    check(split.get(s) == whole[s], f"step {s} after resume: loss {split.get(s)!r}, uninterrupted {whole[s]!r}")
ok, why = same_state(os.path.join(WORK, "split", "ckpt-00000008.safetensors"),
                     os.path.join(WORK, "whole", "ckpt-00000008.safetensors"))
check(ok, f"final weights, BN buffers, counters and optimizer state after resume equal the uninterrupted run's ({why})")

# 3. A corrupt newest checkpoint is reported and skipped.
run("corrupt", "run.max_steps=4", "run.ckpt_every_steps=2", "run.resume=never")
newest = os.path.join(WORK, "corrupt", "ckpt-00000004.safetensors")
with open(newest, "r+b") as f:
    f.seek(-64, os.SEEK_END)
    f.write(b"\x7f" * 64)
p = run("corrupt", "run.max_steps=6", "run.ckpt_every_steps=2", "run.resume=auto")
check("skipping invalid checkpoint" in p.stderr and "ckpt-00000004" in p.stderr,
      "the corrupt step-4 checkpoint is named and skipped")
check("at step 2" in p.stdout, "resumed from the step-2 checkpoint instead")
corrupt = losses("corrupt")
check(corrupt.get(6) == whole[6], f"step 6 after the fallback: {corrupt.get(6)!r}, uninterrupted {whole[6]!r}")
ok, why = same_state(os.path.join(WORK, "corrupt", "ckpt-00000006.safetensors"),
                     os.path.join(WORK, "whole", "ckpt-00000006.safetensors"))
check(ok, f"state at step 6 after the fallback equals the uninterrupted run's ({why})")

# 3b. A checkpoint whose metadata was edited (the tensors untouched) is refused, naming the file.
def edit_meta(src, dst, key, value):
    hdr, body = read_safetensors(src)
    hdr["__metadata__"][key] = value
    write_safetensors(dst, hdr, body)


step8 = os.path.join(WORK, "split", "ckpt-00000008.safetensors")
for key, value in (("step", "7"), ("loader_step", "1"), ("config", "run: {}\n")):
    edited = os.path.join(WORK, f"edited-{key}.safetensors")
    edit_meta(step8, edited, key, value)
    p = run("edited", "run.max_steps=9", f"run.resume={edited}", expect=1)
    check(edited in p.stderr and "checksum" in p.stderr, f"metadata '{key}' edited: refused, naming the file")
unedited = os.path.join(WORK, "unedited.safetensors")
edit_meta(step8, unedited, "step", "8")
p = run("unedited", "run.max_steps=9", f"run.resume={unedited}")
check("at step 8" in p.stdout, "the same header rewritten with its values unchanged still loads")

# 4. A non-finite loss stops the run and keeps the last good checkpoint.
p = run("nan", "run.max_steps=6", "run.ckpt_every_steps=1", "run.resume=never", "optim.name=sgd",
        "optim.lr=1e30", expect=1)
check("non-finite" in p.stdout, "the run says why it stopped")
left = sorted(os.listdir(os.path.join(WORK, "nan")))
check(any(n.startswith("ckpt-") for n in left), f"a good checkpoint stays: {left}")

# 5. The same resume on 2 ranks (each rank reads the checkpoint; the loader continues its slice).
if MPIRUN:
    for bn in ("local", "sync"):
        over = [f"model.backbone_bn={bn}", "run.max_steps=6", "run.ckpt_every_steps=3"]
        run(f"whole2{bn}", *over[:2], "run.ckpt_every_steps=0", "run.resume=never", ranks=2)
        run(f"split2{bn}", over[0], "run.max_steps=3", over[2], "run.resume=never", ranks=2)
        p = run(f"split2{bn}", *over, "run.resume=auto", ranks=2)
        check("at step 3" in p.stdout, f"2 ranks, backbone BN {bn}: resumed at step 3")
        whole2, split2 = losses(f"whole2{bn}"), losses(f"split2{bn}")
        check(all(split2.get(s) == whole2[s] for s in range(4, 7)),
              f"2 ranks, backbone BN {bn}, steps 4-6 after resume: {[split2.get(s) for s in range(4, 7)]}, "
              f"uninterrupted {[whole2[s] for s in range(4, 7)]}")
        ok, why = same_state(os.path.join(WORK, f"split2{bn}", "ckpt-00000006.safetensors"),
                             os.path.join(WORK, f"whole2{bn}", "ckpt-00000006.safetensors"))
        check(ok, f"2 ranks, backbone BN {bn}: final state after resume equals the uninterrupted run's ({why})")
    ok, why = same_state(os.path.join(WORK, "whole2sync", "ckpt-00000006.safetensors"),
                         os.path.join(WORK, "whole2local", "ckpt-00000006.safetensors"))
    check(not ok, f"backbone BN sync and local train differently ({why})")
    run("gather2", "loss.c_exchange=allgather", "run.max_steps=6", "run.ckpt_every_steps=0",
        "run.resume=never", ranks=2)
    gather2, reduce2 = losses("gather2"), losses("whole2local")
    check(sorted(gather2) == list(range(1, 7)) and abs(gather2[1] - reduce2[1]) <= 1e-5 * abs(reduce2[1]),
          f"2 ranks, C all-gathered: 6 steps, step 1 loss {gather2.get(1)} against {reduce2[1]} all-reduced")

print("FAIL" if failures else "PASS")
if not failures:   # the runs' checkpoints are gigabytes; kept only to look into a failure
    shutil.rmtree(WORK, ignore_errors=True)
sys.exit(1 if failures else 0)
