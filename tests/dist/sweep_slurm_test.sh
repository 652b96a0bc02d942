#!/usr/bin/env bash
# A real single-node Slurm (slurm_local.sh) runs slurm/sweep.sbatch with the real twinfuse: a
# 2-cell sweep (configs/sweep/demo.yaml shrunk to S1 scratch at 50 % and 100 % of 32 tiny synthetic
# patches) as an array of 2 tasks; both cells finish and results.csv has both cells' rows; a
# dependent collect job (no --array) skips both and writes results.csv; a requeued task appends
# to its log and skips its finished cell. Skips (77) where Slurm cannot start.
# Usage: sweep_slurm_test.sh REPO_ROOT TWINFUSE
set -uo pipefail
repo=$(realpath "$1") tw=$(realpath "$2")
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; for f in "$tmp"/*.log "$tmp"/*.out; do echo "== $f"; tail -30 "$f"; done; exit 1; }
# shellcheck source=slurm_local.sh
. "$(dirname "$0")/slurm_local.sh"
tw_slurm_start

"$tw" synth --out "$tmp/shards" --size 32 --train 32 --val 8 --test 8 --clouds 8 --shard-size 32 >"$tmp/synth.log" 2>&1 \
  || fail "twinfuse synth failed"
ov=("data.shards=$tmp/shards" "run.out_dir=$tmp/out" data.size=32 data.batch=8 optim.epochs=1 backend.threads=1
    sweep.sources=s1 sweep.experiments=scratch:finetune 'sweep.fractions="0.5,1"' 'sweep.splits="val,clouds"')
cfg=$repo/configs/sweep/demo.yaml
dir=$tmp/out/demo-sweep
cells=(s1-scratch-finetune-f0.5-s0 s1-scratch-finetune-f1-s0)
"$tw" sweep "$cfg" --list "${ov[@]}" >"$tmp/list.log" 2>&1 || fail "twinfuse sweep --list failed"
grep -q 'slurm: --array=0-1' "$tmp/list.log" || fail "the grid is not 2 cells: $(cat "$tmp/list.log")"

cd "$tmp"
# Waits (polling, quicker than sbatch --wait's back-off) until no job of $1 is queued or running.
wait_jobs() {
  for _ in $(seq 1 480); do
    [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
    sleep 0.5
  done
  fail "jobs $1 still queued after 240 s: $(squeue -j "$1")"
}
exit_code() { scontrol show job "$1" | grep -o 'ExitCode=[0-9:]*' | head -1; }
# The array (one cell per task, the script's own log names: %x-%A_%a.out in the submit
# directory), and the collect job after it: nothing left to run, results.csv and the report rewritten.
jid=$(TW_BIN=$tw sbatch --parsable --array=0-1 -c 1 "$repo/slurm/sweep.sbatch" "$cfg" "${ov[@]}") || fail "sbatch --array failed"
cid=$(TW_BIN=$tw sbatch --parsable --dependency=afterok:"$jid" -c 1 -o "$tmp/collect.out" "$repo/slurm/sweep.sbatch" \
        "$cfg" "${ov[@]}") || fail "sbatch --dependency failed"
wait_jobs "$jid,$cid"
for a in 0 1; do cat "$tmp/twinfuse-sweep-${jid}_$a.out" 2>/dev/null; done
for a in 0 1; do
  log=$tmp/twinfuse-sweep-${jid}_$a.out
  [ "$(exit_code "${jid}_$a")" = ExitCode=0:0 ] || fail "array task $a: $(exit_code "${jid}_$a")"
  [ -f "$log" ] || fail "no log $log"
  grep -Eq "^# job [0-9]+  cell $a of array job $jid  hosts $host  tasks 1  restart 0  date " "$log" || fail "task $a: no header"
  grep -q "^0: # ---- cell $((a + 1))/2 ${cells[$a]}\$" "$log" || fail "task $a did not run cell $a (${cells[$a]})"
  grep -Eq '^# job [0-9]+ done: exit 0' "$log" || fail "task $a: no done line"
  [ -f "$dir/${cells[$a]}/eval.json" ] || fail "cell ${cells[$a]} has no eval.json"
done
rows() { for c in "${cells[@]}"; do for s in val clouds; do grep -c "^$c,s1,none,.*,$s,8," "$dir/results.csv"; done; done | paste -sd' '; }

cat "$tmp/collect.out"
[ "$(exit_code "$cid")" = ExitCode=0:0 ] || fail "the collect job: $(exit_code "$cid")"
grep -q "every cell not yet done" "$tmp/collect.out" || fail "the collect job's header"
[ "$(grep -c ': done, skipped$' "$tmp/collect.out")" = 2 ] || fail "the collect job did not skip both cells"
grep -q "2 of 2 cells done" "$tmp/collect.out" || fail "the collect job did not count 2 done cells"
[ "$(rows)" = "1 1 1 1" ] || fail "results.csv: rows per cell and split '$(rows)', want '1 1 1 1'"
[ "$(wc -l < "$dir/results.csv")" = 5 ] || fail "results.csv: $(wc -l < "$dir/results.csv") lines, want a header and 4 rows"
[ -s "$dir/results.md" ] || fail "no results.md after the collect job"

# A requeued task (as after a pre-emption) starts the script again: the log is appended to, the
# restart counted, the finished cell skipped.
log=$tmp/twinfuse-sweep-${jid}_0.out
scontrol requeue "${jid}_0" || fail "scontrol requeue ${jid}_0 failed"
# Slurm holds a requeued job back a while (BeginTime); let it start now.
scontrol update JobId="${jid}_0" StartTime=now
for _ in $(seq 1 240); do
  [ "$(grep -c '^# job [0-9]* done: exit' "$log")" -ge 2 ] && break
  sleep 0.5
done
cat "$log"
grep -Eq "^# job [0-9]+  cell 0 of array job $jid  hosts $host  tasks 1  restart 1  date " "$log" || fail "no second header (restart 1) in $log"
[ "$(grep -c '^# job [0-9]* done: exit 0' "$log")" = 2 ] || fail "the requeued task did not finish with exit 0"
grep -q "^0: # ---- cell 1/2 ${cells[0]}: done, skipped" "$log" || fail "the requeued task did not skip its finished cell"
[ "$(rows)" = "1 1 1 1" ] || fail "results.csv after the requeue: '$(rows)'"
echo "PASS: a 2-task array ran both sweep cells; the collect job and a requeued task skipped them; results.csv has both"
