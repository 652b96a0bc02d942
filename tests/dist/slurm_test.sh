#!/usr/bin/env bash
# A real single-node Slurm (munge + slurmctld + slurmd in a temporary directory, random ports)
# runs slurm/pretrain.sbatch with a 2-rank MPI program (test_comm mpi) standing in for twinfuse;
# the rank-labelled output must show both ranks and the job's header. Skips (77) when the
# daemons cannot start here. Usage: slurm_test.sh REPO_ROOT TEST_COMM
set -uo pipefail
repo=$(realpath "$1") test_comm=$(realpath "$2")
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; for f in "$tmp"/*.log; do echo "== $f"; tail -20 "$f"; done; exit 1; }
for t in munged slurmctld slurmd sbatch sinfo scontrol srun; do
  command -v "$t" >/dev/null || skip "$t not installed (Debian: slurm-wlm, munge)"
done
[ "$(id -u)" = 0 ] || skip "starting slurmd needs root"

tmp=$(mktemp -d /tmp/tw_slurm.XXXXXX)
chmod 755 "$tmp"
stop() {
  for pf in "$tmp"/slurmd.pid "$tmp"/slurmctld.pid "$tmp"/munged.pid; do
    [ -s "$pf" ] && kill "$(cat "$pf")" 2>/dev/null
  done
  sleep 0.5
  rm -rf "$tmp"
}
trap stop EXIT

# munge: a fresh key, its own socket, so nothing on the machine is touched.
head -c 1024 /dev/urandom > "$tmp/munge.key"
chmod 400 "$tmp/munge.key"
munged --force --key-file="$tmp/munge.key" --socket="$tmp/munge.sock" --pid-file="$tmp/munged.pid" \
       --log-file="$tmp/munged.log" --seed-file="$tmp/munge.seed" >"$tmp/munged-start.log" 2>&1 \
  || skip "munged does not start here: $(tail -1 "$tmp/munged-start.log")"

host=$(hostname -s)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
port=$(( 20000 + (RANDOM % 20000) ))
mkdir -p "$tmp/state" "$tmp/spool"
cat > "$tmp/slurm.conf" <<CONF
ClusterName=twtest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$tmp/munge.sock
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$tmp/slurm.conf
slurmctld -f "$SLURM_CONF" >"$tmp/slurmctld-start.log" 2>&1 || skip "slurmctld does not start: $(tail -1 "$tmp/slurmctld-start.log")"
slurmd -f "$SLURM_CONF" >"$tmp/slurmd-start.log" 2>&1 || skip "slurmd does not start: $(tail -1 "$tmp/slurmd-start.log")"
for _ in $(seq 1 60); do
  state=$(sinfo -h -o %T 2>/dev/null | head -1)
  [ "$state" = idle ] && break
  sleep 0.5
done
[ "$state" = idle ] || skip "the node did not come up (state '${state}'): $(tail -3 "$tmp/slurmd.log" 2>/dev/null)"

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
