# Sourced by the Slurm tests: tw_slurm_start starts a real single-node Slurm (munge, slurmctld,
# slurmd) in $tmp (a fresh temporary directory, random ports, stopped and removed at exit) and
# exports SLURM_CONF; it calls skip (77) when a tool is missing or a daemon cannot start here.
# Needs: skip and fail defined by the caller.
tw_slurm_stop() {
  for pf in "$tmp"/slurmd.pid "$tmp"/slurmctld.pid "$tmp"/munged.pid; do
    [ -s "$pf" ] && kill "$(cat "$pf")" 2>/dev/null
  done
  sleep 0.5
  rm -rf "$tmp"
}

tw_slurm_start() {
  for t in munged slurmctld slurmd sbatch sinfo scontrol srun squeue; do
    command -v "$t" >/dev/null || skip "$t not installed (Debian: slurm-wlm, munge)"
  done
  [ "$(id -u)" = 0 ] || skip "starting slurmd needs root"
  tmp=$(mktemp -d /tmp/tw_slurm.XXXXXX)
  chmod 755 "$tmp"
  trap tw_slurm_stop EXIT
  # munge: a fresh key, its own socket, so nothing on the machine is touched.
  head -c 1024 /dev/urandom > "$tmp/munge.key"
  chmod 400 "$tmp/munge.key"
  munged --force --key-file="$tmp/munge.key" --socket="$tmp/munge.sock" --pid-file="$tmp/munged.pid" \
         --log-file="$tmp/munged.log" --seed-file="$tmp/munge.seed" >"$tmp/munged-start.log" 2>&1 \
    || skip "munged does not start here: $(tail -1 "$tmp/munged-start.log")"
  host=$(hostname -s)
  local mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  local port=$(( 20000 + (RANDOM % 20000) ))
  # Job ids from a random start: Slurm's PMIx plugin keeps per-step folders named by job id in /tmp
  # (/tmp/spmix_appdir_<uid>_<job>.<step>), and a second Slurm of these tests (the sanitizer pass,
  # a parallel ctest) counting from 1 again would meet a folder left there and fail to launch.
  local first_job=$(( 1000 + RANDOM * 1000 + RANDOM % 1000 ))
  mkdir -p "$tmp/state" "$tmp/spool"
  cat > "$tmp/slurm.conf" <<CONF
ClusterName=twtest
FirstJobId=$first_job
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
  local state=
  for _ in $(seq 1 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1)
    [ "$state" = idle ] && break
    sleep 0.5
  done
  [ "$state" = idle ] || skip "the node did not come up (state '${state}'): $(tail -3 "$tmp/slurmd.log" 2>/dev/null)"
}
