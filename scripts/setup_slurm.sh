#!/usr/bin/env bash
# A one-node SLURM on this machine for the real-scheduler test (tests/test_cluster_slurm.py), from
# Debian's packages: munge, MariaDB + slurmdbd (so that sacct answers: submitit watches its jobs through
# sacct), slurmctld and slurmd; one node named after `hostname -s` in one CPU partition `cpu`.
#
#   bash scripts/setup_slurm.sh          install what is missing, write the configs, start the daemons and
#                                        wait until sinfo and sacct answer (a running cluster is kept)
#   bash scripts/setup_slurm.sh stop     stop the daemons this script started (a cluster it found running
#                                        is left alone)
#
# Needs root (CI runs as root). Every daemon runs as root, with its state and logs under
# $SLURM_SETUP_DIR (default /var/lib/declip-slurm); the configs go to /etc/slurm. Prints its time.
set -euo pipefail
t0=$SECONDS
STATE=${SLURM_SETUP_DIR:-/var/lib/declip-slurm}
CLUSTER=declip-ci
DB_PASS=declip-ci-slurmdbd  # the local MariaDB account of slurmdbd (a throwaway CI cluster)
log() { echo "[slurm] $*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "[slurm] needs root (apt-get and the daemons); CI runs as root" >&2
    exit 2
fi

stop_all() {
    scontrol shutdown >/dev/null 2>&1 || true
    for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/slurmdbd.pid"; do
        if [ -s "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
    sleep 1
    service mariadb stop >/dev/null 2>&1 || true
    service munge stop >/dev/null 2>&1 || true
}

if [ "${1:-}" = "stop" ]; then
    if [ ! -e "$STATE/started" ]; then  # never stop a cluster this script did not start
        log "nothing to stop: no cluster started by this script"
        exit 0
    fi
    stop_all
    rm -f "$STATE/started"
    log "stopped ($((SECONDS - t0)) s)"
    exit 0
fi

if sinfo -h >/dev/null 2>&1 && sacct -n -X >/dev/null 2>&1; then
    log "a cluster answers already: $(sinfo -h -o '%P %D %T' | tr '\n' ' ')($((SECONDS - t0)) s)"
    exit 0
fi

missing=()
for cmd in slurmctld:slurmctld slurmd:slurmd slurmdbd:slurmdbd sbatch:slurm-client munged:munge \
    mariadbd:mariadb-server; do
    command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd#*:}")
done
t_install=$SECONDS
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (slurm-wlm) from the Debian mirror"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        slurm-wlm slurmdbd munge mariadb-server >/dev/null
fi
t_install=$((SECONDS - t_install))

node=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)  # leave the rest to this machine
mkdir -p /etc/slurm "$STATE/spool/slurmd" "$STATE/spool/slurmctld" "$STATE/log"
cat >/etc/slurm/slurm.conf <<EOF
# written by scripts/setup_slurm.sh: a one-node cluster for the tests
ClusterName=$CLUSTER
SlurmctldHost=$node
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobRequeue=1
KillWait=2
MinJobAge=600
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
cat >/etc/slurm/slurmdbd.conf <<EOF
# written by scripts/setup_slurm.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
EOF
chmod 600 /etc/slurm/slurmdbd.conf

if [ -e "$STATE/started" ]; then
    stop_all  # daemons of an earlier start that no longer answer
fi
touch "$STATE/started"
service munge start >/dev/null
service mariadb start >/dev/null
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
slurmdbd
wait_for() {  # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds
    local limit=$1 what=$2
    shift 2
    for _ in $(seq $((limit * 4))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    echo "[slurm] $what did not answer within $limit s; logs in $STATE/log" >&2
    tail -n 20 "$STATE"/log/*.log >&2 || true
    exit 1
}
wait_for 30 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
slurmctld
wait_for 30 slurmctld scontrol ping
slurmd
node_idle() { sinfo -h -n "$node" -o %T | grep -qx idle; }
wait_for 60 "the node $node" node_idle
wait_for 30 sacct sacct -n -X
log "ready: node $node ($cpus CPUs, $mem_mb MB) in partition cpu; sacct answers in $((SECONDS - t0)) s (of which installing $t_install s)"
