#!/usr/bin/env bash
# A real Slurm array run of `maxi batch` on this machine (Debian bookworm, run as root):
# installs slurm-wlm and munge, writes a one-node slurm.conf, starts munged, slurmctld and
# slurmd by hand (no systemd), submits `sbatch --array=0-3` over 40 MNIST digits, waits,
# merges the shards, and checks that every input is present exactly once and that the merged
# results equal a single-process run's.
#
#   scripts/slurm-e2e.sh                     # configs/mnist_pp_short.toml (CI-sized)
#   CONFIG=configs/mnist_pp.toml scripts/slurm-e2e.sh   # the full main job (much longer)
#
# Environment: MAXI (the binary; default target/release/maxi, built if missing), CONFIG,
# INPUTS (default mnist:0..40), TASKS (array size, default 4), WORK (scratch folder),
# KEEP=1 (leave the daemons running and WORK in place).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
START=$(date +%s)
INPUTS=${INPUTS:-mnist:0..40}
TASKS=${TASKS:-4}
WORK=${WORK:-$(mktemp -d /tmp/maxi-slurm.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
say() { echo "== [$(( $(date +%s) - START )) s] $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "slurm-e2e: run as root (it installs packages and starts the Slurm daemons)" >&2
    exit 2
fi

MAXI=${MAXI:-$ROOT/target/release/maxi}
if [ ! -x "$MAXI" ]; then
    say "building maxi"
    (cd "$ROOT" && cargo build --release -p maxi-cli)
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log"; exit 1; }
fi

PIDS=()
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then
        echo "KEEP=1: daemons left running (pids ${PIDS[*]:-}); scratch in $WORK"
        return
    fi
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    if [ -f /run/munge/e2e.pid ]; then
        kill "$(cat /run/munge/e2e.pid)" 2>/dev/null || true
    fi
}
trap cleanup EXIT

say "munge: key and daemon"
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if ! munge -n </dev/null >/dev/null 2>&1; then
    runuser -u munge -- munged --pid-file=/run/munge/e2e.pid --log-file=/var/log/munge/e2e.log ||
        munged --force --pid-file=/run/munge/e2e.pid --log-file=/var/log/munge/e2e.log
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n </dev/null | unmunge >/dev/null

say "slurm.conf (one node: this machine)"
NODE=$(hostname -s)
# the node's CPUs, sockets, cores and memory as slurmd sees them
NODELINE=$(slurmd -C | head -1 | sed 's/ UpTime=.*//')
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$WORK/logs"
cat >/etc/slurm/slurm.conf <<EOF
ClusterName=maxi-e2e
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
$NODELINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
CPUS=$(echo "$NODELINE" | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')

say "starting slurmctld and slurmd"
rm -rf /var/spool/slurmctld/* /var/spool/slurmd/*
slurmctld -D -i >"$WORK/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D >"$WORK/slurmd.out" 2>&1 &
PIDS+=($!)
for i in $(seq 100); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    case "$state" in idle*|mix*|alloc*) break ;; esac
    if [ "$i" = 100 ]; then
        echo "the node did not come up (state: ${state:-none}); logs in $WORK" >&2
        tail -20 "$WORK/slurmctld.log" "$WORK/slurmd.log" >&2 || true
        exit 1
    fi
    sleep 0.3
done
sinfo

# default: the main job's PP settings, shortened (60 updates of 1 + 49 rows, no search)
CONFIG=${CONFIG:-$ROOT/configs/mnist_pp_short.toml}
CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")

say "sbatch --array=0-$((TASKS - 1)) over $INPUTS (each task: 1 CPU, maxi batch --threads 1)"
cat >"$WORK/job.sh" <<EOF
#!/bin/bash
#SBATCH --job-name=maxi-batch
#SBATCH --cpus-per-task=1
#SBATCH --output=$WORK/logs/%A_%a.out
# Slurm sets SLURM_ARRAY_TASK_ID/COUNT: maxi batch takes its shard from them
exec "$MAXI" batch --config "$CONFIG" --inputs "$INPUTS" \\
    --out "$WORK/out/shard-\$SLURM_ARRAY_TASK_ID" --threads "\${SLURM_CPUS_PER_TASK:-1}" --quiet
EOF
SUBMIT=$(date +%s)
if ! sbatch --wait --array="0-$((TASKS - 1))" "$WORK/job.sh"; then
    echo "an array task failed; its log:" >&2
    tail -n 20 "$WORK"/logs/*.out >&2 || true
    exit 1
fi
ARRAY_S=$(( $(date +%s) - SUBMIT ))
say "array done in ${ARRAY_S} s; merging"
SHARDS=()
for i in $(seq 0 $((TASKS - 1))); do SHARDS+=("$WORK/out/shard-$i"); done
"$MAXI" merge "${SHARDS[@]}" --out "$WORK/merged"

say "single-process run of the same batch (--threads $CPUS)"
ONE=$(date +%s)
"$MAXI" batch --config "$CONFIG" --inputs "$INPUTS" --out "$WORK/single" --threads "$CPUS" --quiet
SINGLE_S=$(( $(date +%s) - ONE ))

say "checking: every input once, merged == single"
python3 - "$WORK/merged/results.jsonl" "$WORK/single/results.jsonl" "$WORK/out" <<'EOF'
import json, sys, pathlib
merged = [json.loads(l) for l in open(sys.argv[1])]
single = [json.loads(l) for l in open(sys.argv[2])]
ids = [l["id"] for l in merged]
assert len(ids) == len(set(ids)), "an input is present twice"
assert ids == [l["id"] for l in single], "merged and single runs list different inputs"
strip = lambda l: {k: v for k, v in l.items() if k not in ("wall_s", "dir")}
diff = [a["id"] for a, b in zip(merged, single) if strip(a) != strip(b)]
assert not diff, f"results differ for {diff}"
# and the explanations themselves, byte for byte
out = pathlib.Path(sys.argv[3])
for l in merged:
    a = pathlib.Path(l["dir"]) / "explanation.npy"
    b = pathlib.Path(sys.argv[2]).parent / "inputs" / l["id"] / "explanation.npy"
    assert a.read_bytes() == b.read_bytes(), f"explanation of {l['id']} differs"
valid = sum(1 for l in merged if l["valid"])
print(f"{len(ids)} inputs, each once; merged == single-process results and explanations; {valid} valid")
EOF
say "passed: array ${ARRAY_S} s, single process ${SINGLE_S} s, total $(( $(date +%s) - START )) s"
