#!/usr/bin/env bash
# A real single-node Slurm (slurm_local.sh: munge + slurmctld + slurmd in a temporary directory)
# runs slurm/pretrain.sbatch with the real twinfuse on 2 ranks: a few Barlow Twins steps on tiny
# synthetic shards (both ranks, the job's header, the run's done line and its checkpoint); then a
# longer run whose rank 1 is killed (SIGKILL, as a node failure would) once it is stepping: the
# job must end within 60 s, non-zero, and its output must name task 1; then a run requeued
# mid-way (scontrol requeue) resumes from its last checkpoint and ends with the weights of an
# uninterrupted run, tensor for tensor. Skips (77) when the daemons cannot start here.
# Every wait draws on one budget (TW_SLURM_BUDGET seconds, 240 by default, below the ctest
# timeout), so that a stuck phase ends in fail() with the job states and the daemons' logs rather
# than in a silent ctest timeout.
# Usage: TW_PYTHON=python-with-safetensors slurm_test.sh REPO_ROOT TWINFUSE
set -uo pipefail
repo=$(realpath "$1") tw=$(realpath "$2")
t_start=$(date +%s)
deadline=$(( t_start + ${TW_SLURM_BUDGET:-240} ))
skip() { echo "SKIP: $*"; exit 77; }
# Seconds left of the budget (at least 1, for timeout's sake); in_time: some are left.
left() { local s=$(( deadline - $(date +%s) )); echo $(( s > 1 ? s : 1 )); }
in_time() { [ "$(date +%s)" -lt "$deadline" ]; }
phase() { echo "# [$(( $(date +%s) - t_start )) s] $*"; }
# Waits (within the budget) until job $1 has left the queue; sbatch --wait would poll ever more
# slowly (up to 32 s between looks).
wait_job() { while in_time && [ -n "$(squeue -h -j "$1" 2>/dev/null)" ]; do sleep 0.3; done; }
# On failure: the jobs' states, then every job of this private Slurm cancelled and gone before the
# daemons stop (a job left running would outlive them), then the logs.
fail() {
  echo "FAIL after $(( $(date +%s) - t_start )) s: $*"
  sinfo -N -o '%N %T %E' 2>/dev/null
  squeue -o '%i %T %r %S' 2>/dev/null
  jobs_left=$(squeue -h -o %i 2>/dev/null)
  if [ -n "$jobs_left" ]; then
    scancel $jobs_left
    for _ in $(seq 1 60); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  for f in "$tmp"/*.log "$tmp"/*.out; do echo "== $f"; tail -40 "$f"; done
  exit 1
}
# shellcheck source=slurm_local.sh
. "$(dirname "$0")/slurm_local.sh"
tw_slurm_start
# Rank 0's output as one string: srun -u labels each chunk it reads, so a long line can arrive
# split in two labelled pieces; the checks of whole lines read this instead (grep reading all of
# it, not -q, so that pipefail never sees a writer cut off).
rank0() { grep '^0: ' "$1" | sed 's/^0: //' | tr -d '\n'; }

"$tw" synth --out "$tmp/shards" --size 32 --train 32 --val 0 --test 0 --clouds 0 --shard-size 32 >"$tmp/synth.log" 2>&1 \
  || fail "twinfuse synth failed"
ov=("data.shards=$tmp/shards" "run.out_dir=$tmp/out" data.size=32 data.batch=8 model.projector_dim=64
    optim.warmup_epochs=0 run.log_every=1 run.resume=never)
cfg=$repo/configs/pretrain/demo_s1.yaml
cd "$tmp"

# A few steps on 2 ranks, one thread each.
phase "a few steps"
out=$tmp/job.out
jid=$(TW_BIN=$tw sbatch --parsable -n 2 -c 1 -o "$out" "$repo/slurm/pretrain.sbatch" "$cfg" "${ov[@]}" \
        run.name=few run.max_steps=4 run.ckpt_every_steps=0) || fail "sbatch failed"
wait_job "$jid"
cat "$out" 2>/dev/null
[ -z "$(squeue -h -j "$jid" 2>/dev/null)" ] || fail "job $jid (4 steps) did not end in time"
grep -Eq '^# job [0-9]+  hosts '"$host"'  tasks 2  date ' "$out" || fail "no job header"
grep -q '^0: # twinfuse pretrain .* ranks=2' "$out" || fail "rank 0 did not report 2 ranks"
grep -Eq '^0: .*step +4/4 ' "$out" || fail "no line for step 4"
rank0 "$out" | grep '# done: 4 steps, .* checkpoint [^ ]*/out/few/ckpt-0*4.safetensors OK' >/dev/null || fail "no done line from the run"
ls "$tmp"/out/few/ckpt-*4.safetensors >/dev/null 2>&1 || fail "no checkpoint of step 4"
grep -Eq '^# job [0-9]+ done: exit 0' "$out" || fail "no done line from the job"

# A long run; once it steps, rank 1 (Slurm's local task 1) is killed.
phase "a long run, rank 1 killed"
out2=$tmp/job2.out
jid=$(TW_BIN=$tw sbatch --parsable -n 2 -c 1 -o "$out2" "$repo/slurm/pretrain.sbatch" "$cfg" "${ov[@]}" \
        run.name=killed run.max_steps=100000 run.ckpt_every_steps=0) || fail "sbatch failed"
# (The progress lines are rate-limited: any step line means it is stepping.)
while in_time; do
  grep -Eq '^0: .*step +[0-9]+/100000' "$out2" 2>/dev/null && break
  sleep 0.5
done
grep -Eq '^0: .*step +[0-9]+/100000' "$out2" || fail "the long run did not step"
# scontrol listpids: PID JOBID STEPID LOCALID GLOBALID; the twinfuse of global task 1.
pid=$(scontrol listpids "$jid" 2>/dev/null | awk -v tw="$tw" '$5 == 1 { print $1 }' |
      while read -r p; do [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$tw" ] && echo "$p"; done | head -1)
[ -n "$pid" ] || fail "no twinfuse process of task 1 in job $jid: $(scontrol listpids "$jid")"
kill -KILL "$pid"
t0=$(date +%s)
for _ in $(seq 1 120); do
  [ -z "$(squeue -h -j "$jid" 2>/dev/null)" ] && break
  sleep 0.5
done
dt=$(( $(date +%s) - t0 ))
cat "$out2"
[ -z "$(squeue -h -j "$jid" 2>/dev/null)" ] || fail "job $jid still running 60 s after rank 1 was killed"
grep -Eq '^# job [0-9]+ done: exit [1-9]' "$out2" || fail "the job with a killed rank did not end non-zero"
grep -q 'task 1: Killed' "$out2" || fail "the output does not name task 1"

# Requeue: a 2-rank run of 16 steps, checkpoints every 2, is requeued (as a pre-emption would)
# once its first checkpoint is written; it resumes from its last checkpoint and must end with the
# weights of the same run left alone.
phase "an uninterrupted run"
jid=$(TW_BIN=$tw sbatch --parsable -n 2 -c 1 -o "$tmp/whole.out" "$repo/slurm/pretrain.sbatch" "$cfg" "${ov[@]}" \
        run.name=whole run.max_steps=16 run.ckpt_every_steps=2) || fail "sbatch failed"
wait_job "$jid"
grep -Eq '^# job [0-9]+ done: exit 0' "$tmp/whole.out" || fail "the uninterrupted run (job $jid) did not end, or not with 0"
phase "the same run, requeued"
out3=$tmp/requeued.out
jid=$(TW_BIN=$tw sbatch --parsable -n 2 -c 1 -o "$out3" --open-mode=append "$repo/slurm/pretrain.sbatch" "$cfg" \
        "${ov[@]}" run.name=requeued run.max_steps=16 run.ckpt_every_steps=2 run.resume=auto) || fail "sbatch failed"
while in_time; do
  ls "$tmp"/out/requeued/ckpt-*2.safetensors >/dev/null 2>&1 && break
  sleep 0.2
done
scontrol requeue "$jid" || fail "scontrol requeue $jid failed"
# Slurm holds a requeued job back a while (BeginTime): once it is pending again, let it start now;
# one held (a launch that failed is requeued held) is released. Each new state is said, with its
# reason; the job leaving the queue ends the wait whatever its end.
seen=requeued
while in_time; do
  state=$(squeue -h -j "$jid" -o '%T %r' 2>/dev/null)
  [ -n "$state" ] && [ "$state" != "$seen" ] && phase "job $jid: $state" && seen=$state
  case $state in
    '') [ "$seen" = requeued ] || break ;;
    PENDING*[Hh]eld*) scontrol release "$jid" 2>/dev/null ;;
    PENDING*) scontrol update JobId="$jid" StartTime=now 2>/dev/null ;;
  esac
  sleep 0.5
done
cat "$out3"
[ -z "$(squeue -h -j "$jid" 2>/dev/null)" ] || fail "the requeued job $jid did not end in time"
rank0 "$out3" | grep -E '# resumed from [^ ]*ckpt-0*([2-9]|1[0-4])\.safetensors at step ([2-9]|1[0-4])[^0-9]' >/dev/null ||
  fail "the requeued job did not resume from a checkpoint before the end"
rank0 "$out3" | grep '# done: 16 steps' >/dev/null || fail "the requeued job did not finish its 16 steps"
"$TW_PYTHON" - "$tmp"/out/whole/ckpt-*16.safetensors "$tmp"/out/requeued/ckpt-*16.safetensors <<'PY' ||
import sys
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
bad = [k for k in a if k not in b or a[k].tobytes() != b[k].tobytes()]
print(f"{len(a)} tensors, {len(bad)} differ: {bad[:5]}")
sys.exit(1 if bad or a.keys() != b.keys() else 0)
PY
  fail "the requeued run's weights differ from the uninterrupted run's"
echo "PASS: 2 ranks of the real twinfuse ran 4 steps under Slurm; killing rank 1 ended the job in ${dt} s, naming it;"
echo "      a requeued run resumed from its checkpoint and ended bit-equal to an uninterrupted one"
