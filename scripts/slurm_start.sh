#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for trying the Slurm executor and for its tests:
#
#     sudo bash scripts/slurm_start.sh      (as root; installs slurm-wlm and munge with apt-get if missing)
#     ...   python scripts/advanced_centering_experiments.py --executor=slurm ...
#     sudo bash scripts/slurm_stop.sh       (stops what this script started, by PID)
#
# Starts munged, slurmctld and slurmd on localhost with a minimal /etc/slurm/slurm.conf (one node
# with this machine's cores and memory, one partition "debug"). State, logs and the PIDs of the
# daemons it started live in $CENTERING_SLURM_DIR (default /tmp/centering-slurm). Refuses to
# touch a slurm.conf it did not write: this is not for a machine that belongs to a real cluster.
set -euo pipefail
DIR="${CENTERING_SLURM_DIR:-/tmp/centering-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by centering scripts/slurm_start.sh"

started_any=0
fail() {
    echo "error: $*" >&2
    # leave nothing half-started behind
    if [ "$started_any" = 1 ]; then bash "$(dirname "$0")/slurm_stop.sh" >&2 || true; fi
    exit 1
}
[ "$(id -u)" = 0 ] || fail "run as root (the daemons run as root here)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    echo "installing slurm-wlm and munge..."
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge; } \
        > /tmp/centering-slurm-install.log 2>&1 || fail "apt-get could not install slurm-wlm and munge (see /tmp/centering-slurm-install.log)"
fi

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
if [ -f "$DIR/pids" ]; then
    while read -r name pid; do
        alive "$pid" && fail "already started ($name pid $pid); stop it first with scripts/slurm_stop.sh"
    done < "$DIR/pids"
fi
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    fail "$CONF exists and was not written by this script: not touching a real cluster's configuration"
fi

rm -rf "$DIR/state" "$DIR/spool"
mkdir -p "$DIR/state" "$DIR/spool"
: > "$DIR/pids"
started_any=1  # from here on a failure stops what the pids file lists
node=$(hostname -s)
cpus=$(nproc --all)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
cat > "$CONF" <<CONF
$MARK
ClusterName=centering
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=5
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF

# munge: the authentication every Slurm daemon and command uses; reuse one that already runs
if ! (munge -n | unmunge) >/dev/null 2>&1; then
    [ -f /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 || fail "no munge key and mungekey failed"
    install -d -m 0755 -o munge -g munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || install -d -m 0755 /run/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged 2>/dev/null || munged --force || fail "munged did not start"
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    echo "munged $(cat /run/munge/munged.pid)" >> "$DIR/pids"
fi

slurmctld || fail "slurmctld did not start (see $DIR/slurmctld.log)"
for _ in $(seq 50); do [ -s "$DIR/slurmctld.pid" ] && break; sleep 0.1; done
echo "slurmctld $(cat "$DIR/slurmctld.pid")" >> "$DIR/pids"
slurmd || fail "slurmd did not start (see $DIR/slurmd.log)"
for _ in $(seq 50); do [ -s "$DIR/slurmd.pid" ] && break; sleep 0.1; done
echo "slurmd $(cat "$DIR/slurmd.pid")" >> "$DIR/pids"

for _ in $(seq 60); do
    state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
    case "$state" in
        idle*|mixed*|allocated*) echo "slurm: up (node $node, $cpus CPUs; daemons: $(tr '\n' ' ' < "$DIR/pids"))"; exit 0 ;;
        down*|drain*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
fail "the node did not become idle within a minute (see $DIR/slurmctld.log and $DIR/slurmd.log)"
