#!/usr/bin/env bash
# A real single-node Slurm (slurm_local.sh: munge + slurmctld + slurmd in a temporary directory)
# runs slurm/pretrain.sbatch with a 2-rank MPI program (test_comm mpi) standing in for twinfuse;
# the rank-labelled output must show both ranks and the job's header. Skips (77) when the
# daemons cannot start here. Usage: slurm_test.sh REPO_ROOT TEST_COMM
set -uo pipefail
repo=$(realpath "$1") test_comm=$(realpath "$2")
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; for f in "$tmp"/*.log; do echo "== $f"; tail -20 "$f"; done; exit 1; }
# shellcheck source=slurm_local.sh
. "$(dirname "$0")/slurm_local.sh"
tw_slurm_start

# The stand-in for twinfuse: checks that it was asked to pretrain, then runs the MPI test.
cat > "$tmp/fake_twinfuse" <<FAKE
#!/bin/sh
[ "\$1" = pretrain ] && [ "\$2" = cfg.yaml ] && [ "\$3" = optim.lr=0.1 ] || { echo "bad arguments: \$*"; exit 9; }
exec "$test_comm" mpi
FAKE
chmod +x "$tmp/fake_twinfuse"

cd "$tmp"
out=$tmp/job.out
TW_BIN=$tmp/fake_twinfuse timeout 120 sbatch --wait -n 2 -o "$out" "$repo/slurm/pretrain.sbatch" cfg.yaml optim.lr=0.1
rc=$?
cat "$out" 2>/dev/null
[ $rc -eq 0 ] || fail "sbatch --wait exited $rc"
grep -Eq '^# job [0-9]+  hosts '"$host"'  tasks 2  date ' "$out" || fail "no job header"
grep -q '^0: PASS test_comm mpi' "$out" || fail "rank 0's labelled PASS line is missing"
grep -q '^0: # 0 rank(s) failed' "$out" || fail "the ranks' verdict is missing"
grep -Eq '^# job [0-9]+ done: exit 0' "$out" || fail "no done line"

# A failing rank fails the job, and the failure reaches sbatch --wait.
cat > "$tmp/fake_twinfuse" <<FAKE
#!/bin/sh
exec "$test_comm" fatal
FAKE
TW_BIN=$tmp/fake_twinfuse timeout 120 sbatch --wait -n 2 -o "$tmp/job2.out" "$repo/slurm/pretrain.sbatch" cfg.yaml
rc=$?
cat "$tmp/job2.out" 2>/dev/null
[ $rc -ne 0 ] || fail "a job whose rank 1 died exited 0"
grep -q 'fatal on rank 1' "$tmp/job2.out" || fail "the failed job's output does not name rank 1"
echo "PASS: slurm job ran 2 MPI ranks via srun -l -u; a dead rank failed the job"
