#!/usr/bin/env bash
# Single-node SLURM "cluster" for CI and local testing of danas-bench's
# submitit/Hydra launcher path.  Runs munged + slurmctld + slurmd on this host
# (Debian 12, run as root, no systemd: the daemons are started directly).
#
# Usage: slurm/cluster.sh {install|start|stop|status|restart}
#
# Environment overrides:
#   DANAS_SLURM_STATE   state dir for pid files and daemon logs [/tmp/danas-slurm]
#   DANAS_SLURM_WAIT    seconds to wait for the node to become idle [60]
#   DANAS_SLURM_MEM_PCT percent of MemTotal advertised as RealMemory [90]
set -euo pipefail

STATE_DIR="${DANAS_SLURM_STATE:-/tmp/danas-slurm}"
WAIT_S="${DANAS_SLURM_WAIT:-60}"
MEM_PCT="${DANAS_SLURM_MEM_PCT:-90}"

SLURM_CONF=/etc/slurm/slurm.conf
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
MUNGE_PID="$MUNGE_RUN/munged.pid"
CTLD_PID="$STATE_DIR/slurmctld.pid"
SLURMD_PID="$STATE_DIR/slurmd.pid"
MARKER="# Managed by danas-bench slurm/cluster.sh"

HOST="$(hostname -s)"

log() { echo "[slurm/cluster.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() {
    # The daemons, /etc and /var/spool all need root; fail early and clearly.
    [[ "$(id -u)" -eq 0 ]] || die "must run as root"
}

# --- pid helpers -------------------------------------------------------------

# Print the pid stored in file $1 if that process is alive, else nothing.
live_pid() {
    local f="$1" pid
    [[ -s "$f" ]] || return 0
    pid="$(tr -dc '0-9' <"$f")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

# Stop the process recorded in pid file $2 (daemon name $1): TERM, wait, KILL.
stop_pidfile() {
    local name="$1" f="$2" pid i
    pid="$(live_pid "$f")"
    if [[ -n "$pid" ]]; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name did not exit after SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$f"
}

# Last resort if a pid file was lost: match the exact daemon binary name only
# (pgrep -x), never a substring, so unrelated processes are never touched.
stop_by_name() {
    local name="$1" pids
    pids="$(pgrep -x "$name" || true)"
    [[ -z "$pids" ]] && return 0
    log "WARNING: $name still running without a pid file (pids: $(echo $pids)); killing by exact name"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    sleep 2
    pids="$(pgrep -x "$name" || true)"
    # shellcheck disable=SC2086
    [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null || true
}

# --- install -----------------------------------------------------------------

cmd_install() {
    need_root
    local pkgs=(slurm-wlm munge) missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        # Idempotent/fast path: no network access when everything is present.
        log "packages already installed: ${pkgs[*]}"
        return 0
    fi
    log "installing: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}"
}

# --- munge -------------------------------------------------------------------

start_munge() {
    # Key: munged refuses keys that are not owned by munge or are group/world
    # readable, so enforce munge:munge 0400.
    if [[ ! -s "$MUNGE_KEY" ]]; then
        log "creating munge key $MUNGE_KEY"
        install -d -o munge -g munge -m 0700 /etc/munge
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"

    # Runtime dirs normally created by systemd-tmpfiles / the unit file.
    # munged checks owners+modes: socket dir must be munge-owned and not
    # world-writable; log/lib dirs must not be group/world writable.
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 0700 /var/log/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge

    if [[ -n "$(live_pid "$MUNGE_PID")" ]]; then
        log "munged already running (pid $(live_pid "$MUNGE_PID"))"
    else
        # A stale socket/pid from a killed munged makes it refuse to start.
        rm -f "$MUNGE_PID" "$MUNGE_RUN"/munge.socket.2*
        log "starting munged"
        # munged forks into the background itself and writes its pid file.
        runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID"
    fi

    # Sanity check: a credential must round-trip before slurm can use it.
    local i
    for i in $(seq 1 25); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 30 /var/log/munge/munged.log >&2 || true
    die "munge credential round-trip failed"
}

# --- slurm.conf --------------------------------------------------------------

write_slurm_conf() {
    local cpus mem_kb real_mem tmp
    cpus="$(nproc)"
    mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    # Advertise less than the physical memory: slurmd marks the node INVALID
    # if RealMemory exceeds what it detects, and we leave room for the OS.
    real_mem=$(( mem_kb / 1024 * MEM_PCT / 100 ))
    # Without a default, CR_Core_Memory gives a job that doesn't ask for
    # memory the WHOLE node's memory, so jobs would run one at a time.
    def_mem=$(( real_mem / cpus ))

    install -d -m 0755 /etc/slurm
    tmp="$(mktemp "$STATE_DIR/slurm.conf.XXXXXX")"
    cat >"$tmp" <<EOF
$MARKER -- regenerated on every 'start'.
ClusterName=danas
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# Silence "Configured MailProg is invalid" (no MTA here; sbatch --mail-* is a no-op).
MailProg=/bin/true

# No systemd/cgroups needed: track processes via /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
SchedulerType=sched/backfill

# No slurmdbd: no accounting (submitit then warns that sacct is unavailable).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none

StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# Bring a DOWN node back automatically once slurmd registers with a valid config.
ReturnToService=2
# Small timeouts so the node comes up and jobs are cleaned up quickly.
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
TCPTimeout=5
InactiveLimit=0
KillWait=5
MinJobAge=300
Waittime=0

NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    chmod 0644 "$tmp"

    if [[ -f "$SLURM_CONF" ]] && cmp -s "$tmp" "$SLURM_CONF"; then
        rm -f "$tmp"
        return 1  # unchanged
    fi
    # Never silently clobber a hand-written config: keep a backup of it.
    if [[ -f "$SLURM_CONF" ]] && ! grep -qF "$MARKER" "$SLURM_CONF"; then
        local bak
        bak="$SLURM_CONF.bak.$(date +%Y%m%d%H%M%S)"
        log "backing up existing $SLURM_CONF to $bak"
        cp -p "$SLURM_CONF" "$bak"
    fi
    mv -f "$tmp" "$SLURM_CONF"
    log "wrote $SLURM_CONF (CPUs=$cpus RealMemory=${real_mem}MB DefMemPerCPU=${def_mem}MB)"
    return 0  # changed
}

# --- node state --------------------------------------------------------------

node_state() {
    # %T = extended state (idle, mixed, down*, drained, ...); one partition.
    sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n 1 || true
}

dump_logs() {
    local f
    for f in "$STATE_DIR/slurmctld.log" "$STATE_DIR/slurmd.log" /var/log/munge/munged.log; do
        [[ -f "$f" ]] || continue
        echo "===== tail -n 60 $f =====" >&2
        tail -n 60 "$f" >&2 || true
    done
}

wait_idle() {
    local deadline state last=""
    deadline=$(( $(date +%s) + WAIT_S ))
    while :; do
        state="$(node_state)"
        [[ "$state" != "$last" ]] && log "node $HOST state: ${state:-<no answer>}"
        last="$state"
        case "$state" in
            idle|mixed|allocated|completing)
                return 0 ;;
            down|down\*|drain*|drained*|fail*)
                # e.g. left DOWN in saved state after an unclean stop.
                scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
        esac
        if (( $(date +%s) >= deadline )); then
            log "node did not become idle within ${WAIT_S}s (last state: ${state:-none})"
            sinfo -N -l >&2 || true
            scontrol show node "$HOST" >&2 || true
            dump_logs
            return 1
        fi
        sleep 1
    done
}

# --- start / stop / status ---------------------------------------------------

cmd_start() {
    need_root
    command -v slurmctld >/dev/null || die "slurm not installed; run: $0 install"
    install -d -m 0755 "$STATE_DIR"

    start_munge

    local conf_changed=0
    write_slurm_conf && conf_changed=1

    # Spool dirs must exist and be owned by SlurmUser (root here).
    install -d -m 0755 "$CTLD_SPOOL" "$SLURMD_SPOOL"

    if [[ -n "$(live_pid "$CTLD_PID")" ]]; then
        log "slurmctld already running (pid $(live_pid "$CTLD_PID"))"
        if (( conf_changed )); then
            log "config changed, reconfiguring"
            scontrol reconfigure || true
        fi
    else
        log "starting slurmctld"
        # Default (forking) mode: it daemonizes, detaches from our stdout, and
        # writes SlurmctldPidFile. -i ignores unreadable/incompatible state
        # (e.g. after an upgrade) instead of refusing to start.
        slurmctld -i
    fi

    if [[ -n "$(live_pid "$SLURMD_PID")" ]]; then
        log "slurmd already running (pid $(live_pid "$SLURMD_PID"))"
    else
        log "starting slurmd"
        slurmd
    fi

    if ! wait_idle; then
        die "cluster failed to come up"
    fi
    log "cluster up: slurmctld=$(live_pid "$CTLD_PID") slurmd=$(live_pid "$SLURMD_PID") munged=$(live_pid "$MUNGE_PID")"
    sinfo
}

cmd_stop() {
    need_root
    # Reverse start order; slurmd first so it doesn't log controller errors.
    stop_pidfile slurmd "$SLURMD_PID"
    stop_pidfile slurmctld "$CTLD_PID"
    stop_pidfile munged "$MUNGE_PID"
    # Fallback if pid files were lost (e.g. state dir wiped while running).
    stop_by_name slurmd
    stop_by_name slurmctld
    stop_by_name munged
    # slurmstepd may linger briefly after slurmd exits if a job was running.
    stop_by_name slurmstepd
    # One name per pgrep call: pgrep refuses patterns longer than 15 chars.
    local left="" n
    for n in slurmd slurmctld slurmstepd munged; do
        left+="$(pgrep -x -l "$n" || true) "
    done
    [[ -z "${left// /}" ]] || die "processes still running: $left"
    log "stopped (nothing left running)"
}

cmd_status() {
    local state rc=0 f
    # slurmctld only notices a dead slurmd after SlurmdTimeout, so check the
    # daemons' pids too instead of trusting sinfo alone.
    for f in "$MUNGE_PID" "$CTLD_PID" "$SLURMD_PID"; do
        if [[ -z "$(live_pid "$f")" ]]; then
            log "not running: $(basename "$f" .pid)"
            rc=1
        fi
    done
    sinfo || true
    (( rc == 0 )) || return 1
    state="$(node_state)"
    case "$state" in
        idle|mixed|allocated) return 0 ;;
        *) return 1 ;;
    esac
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    *) echo "usage: $0 {install|start|stop|status|restart}" >&2; exit 2 ;;
esac
