#!/usr/bin/env bash
# Stops the daemons scripts/slurm_start.sh started (and only those), by the PIDs it recorded in
# $CENTERING_SLURM_DIR/pids (default /tmp/centering-slurm): slurmd, slurmctld, then munged.
set -uo pipefail
DIR="${CENTERING_SLURM_DIR:-/tmp/centering-slurm}"
[ -f "$DIR/pids" ] || { echo "slurm: nothing to stop (no $DIR/pids)"; exit 0; }
status=0
for name in slurmd slurmctld munged; do
    pid=$(awk -v n="$name" '$1 == n {print $2}' "$DIR/pids")
    [ -n "$pid" ] || continue
    # the PID must still be that daemon: never signal a process that merely reuses the number
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]; then
        continue
    fi
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" || status=1
    fi
    echo "slurm: stopped $name (pid $pid)"
done
rm -f "$DIR/pids"
exit $status
