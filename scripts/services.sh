#!/usr/bin/env bash
# Real services for the contract and integration suites, all on 127.0.0.1:
#   slurm     munge + MariaDB + slurmdbd (accounting) + slurmctld + one slurmd
#   ray       a Ray head with the Jobs API (dashboard) on a free port
#   postgres  a PostgreSQL cluster on a free port with a database `computenet`
#
# usage: scripts/services.sh start|stop|status|env [slurm|ray|postgres|all]
#
# Installs what is missing (Debian packages through apt-get, `ray[default]` into
# the project's .venv), writes every config and state file under $SERVICES_DIR
# (default ./var/services), records each daemon's PID there and stops by those
# PIDs, never by process name. After start it writes $SERVICES_DIR/env.sh, which
# exports SLURM_CONF, RAY_ADDRESS (the Jobs API's http address) and CNET_PG_URL.
# `start` is idempotent: a service already up is left alone. Every port is a
# free one picked at start; Unix sockets go to a short /tmp/cnet-run-* dir, and
# PostgreSQL's files to /tmp when the postgres user cannot reach the state dir. Each daemon carries CNET_SERVICES_DIR and
# CNET_SERVICE in its environment so `stop` can also end what it spawned (Slurm
# job steps, Ray workers) and nothing is left running.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
SERVICES_DIR=${SERVICES_DIR:-$ROOT/var/services}
mkdir -p "$SERVICES_DIR"
DIR=$(cd "$SERVICES_DIR" && pwd)
export CNET_SERVICES_DIR=$DIR
# Unix sockets live in a short directory: socket paths must stay under 108 bytes,
# whatever the length of the state dir's path.
RUN=/tmp/cnet-run-$(printf %s "$DIR" | md5sum | cut -c1-10)
PY=${PYTHON:-python3}
SLURM_CPUS=${SLURM_CPUS:-8}          # CPUs the test node declares (jobs mostly sleep)
SLURM_MEM_MB=${SLURM_MEM_MB:-8192}
RAY_NUM_CPUS=${RAY_NUM_CPUS:-8}
RAY_OBJECT_STORE_BYTES=${RAY_OBJECT_STORE_BYTES:-100000000}
# Ray runs its jobs as the user it runs as; as root, run it as this unprivileged user
# so a Ray job cannot read the agent's files or /proc/<agent>/environ ('' keeps root).
RAY_RUN_AS=${RAY_RUN_AS-nobody}
APT_UPDATED=0

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

# --- helpers ---------------------------------------------------------------

free_ports() {  # free_ports N -> N distinct free TCP ports on 127.0.0.1
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

pid_alive() {  # pid_alive PIDFILE
    [[ -s $1 ]] || return 1
    local pid
    pid=$(head -n1 "$1" | tr -dc 0-9)
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

wait_until() {  # wait_until SECONDS WHAT CMD...
    local limit=$1 what=$2
    shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= end)); then
            log "timed out after ${limit}s waiting for $what"
            return 1
        fi
        sleep 0.3
    done
}

port_open() {  # port_open PORT
    "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()" "$1"
}

kill_pidfiles() {  # kill_pidfiles PIDFILE NAME [PIDFILE NAME]...: TERM all, wait, then KILL
    local -a files=() names=() pids=()
    local i pid
    while (($#)); do
        files+=("$1")
        names+=("$2")
        shift 2
    done
    for i in "${!files[@]}"; do
        pid=""
        [[ -s ${files[i]} ]] && pid=$(head -n1 "${files[i]}" | tr -dc 0-9)
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        else
            pid=""
        fi
        pids+=("$pid")
    done
    local end=$((SECONDS + 20))
    for i in "${!files[@]}"; do
        pid=${pids[i]}
        if [[ -n $pid ]]; then
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then
                log "${names[i]} ($pid) ignored SIGTERM; killing"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            log "stopped ${names[i]} ($pid)"
        fi
        rm -f "${files[i]}"
    done
}

kill_pidfile() {  # kill_pidfile PIDFILE NAME
    kill_pidfiles "$1" "$2"
}

marked_pids() {  # marked_pids SERVICE [DIR] -> PIDs this script's daemons spawned, and their descendants
    # A process is ours when it carries our marker in its environment or runs in our
    # state dir (slurmstepd does: it has a clean environment and its cwd is the log dir),
    # or has a file open under DIR. Ray's agents need the last: setproctitle blanks
    # their environment, and once the raylet is gone they are nobody's descendants,
    # but they keep their logs open in the head's temp dir.
    "$PY" - "$DIR" "$1" "$$" "${2:-}" <<'EOF'
import os, sys
root, svc, me = sys.argv[1], sys.argv[2], {os.getpid(), os.getppid(), int(sys.argv[3])}
extra = sys.argv[4].rstrip(os.sep) + os.sep if sys.argv[4] else None


def holds_open(pid):
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(extra):
                return True
        except OSError:
            pass
    return False


marker = {f"CNET_SERVICES_DIR={root}".encode(), f"CNET_SERVICE={svc}".encode()}
here = os.path.join(root, svc) + os.sep
children, ours = {}, set()
for name in os.listdir("/proc"):
    if not name.isdigit() or int(name) in me:
        continue
    pid = int(name)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(pid)
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = set(f.read().split(b"\0"))
        cwd = os.readlink(f"/proc/{pid}/cwd") + os.sep
    except OSError:
        continue
    if marker <= env or cwd.startswith(here):
        ours.add(pid)
    elif extra and (cwd.startswith(extra) or holds_open(pid)):
        ours.add(pid)
todo = list(ours)
while todo:
    for child in children.get(todo.pop(), []):
        if child not in ours and child not in me:
            ours.add(child)
            todo.append(child)
print(" ".join(map(str, sorted(ours))))
EOF
}

sweep() {  # sweep SERVICE [DIR]: end every leftover process of this service (see marked_pids)
    local svc=$1 dir=${2:-} pids round
    pids=$(marked_pids "$svc" "$dir")
    [[ -z $pids ]] && return 0
    log "ending leftover $svc processes: $(echo $pids)"
    kill -TERM $pids 2>/dev/null || true
    # A dying worker can still spawn a child after a scan (a Ray job driver's
    # `/bin/sh -c ...`), so scan again until nothing marked is left.
    for round in 1 2 3 4 5 6 7 8 9 10; do
        sleep 1
        pids=$(marked_pids "$svc" "$dir")
        [[ -z $pids ]] && return 0
        kill -KILL $pids 2>/dev/null || true
    done
    log "warning: $svc processes still alive after stop: $(echo $pids)"
    return 0
}

as_root_or_die() {
    [[ $(id -u) == 0 ]] || die "installing $1 needs root (apt-get); install it yourself or run as root"
}

apt_install() {
    as_root_or_die "$*"
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

make_run_dir() {
    mkdir -p "$RUN"
    chmod 755 "$RUN"
}

# --- installs --------------------------------------------------------------

install_slurm() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v mariadbd >/dev/null || missing+=(mariadb-server)
    if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

install_ray() {
    if ! "$VENV/bin/python" -c "import ray.job_submission, ray.dashboard" 2>/dev/null; then
        [[ -x $VENV/bin/pip ]] || die "no virtual environment at $VENV (set VENV=...)"
        log "pip install ray[default] into $VENV"
        "$VENV/bin/pip" install -q 'ray[default]'
    fi
}

pg_bindir() {
    local d
    for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        [[ -x $d/initdb ]] && { echo "$d"; return 0; }
    done
    return 1
}

install_postgres() {
    pg_bindir >/dev/null || apt_install postgresql-15
}

# --- munge -----------------------------------------------------------------

start_munge() {
    local d=$DIR/munge
    mkdir -p "$d"
    chmod 700 "$d"
    if pid_alive "$d/munged.pid"; then return 0; fi
    if [[ ! -s $d/munge.key ]]; then
        dd if=/dev/urandom of="$d/munge.key" bs=1024 count=1 status=none
    fi
    chmod 400 "$d/munge.key"
    rm -f "$RUN/munge.socket" "$RUN/munge.socket.lock"
    CNET_SERVICE=slurm munged --force --socket="$RUN/munge.socket" --key-file="$d/munge.key" \
        --pid-file="$d/munged.pid" --log-file="$d/munged.log" --seed-file="$d/munged.seed" 9>&-
    wait_until 15 munged bash -c "munge -S '$RUN/munge.socket' -n | unmunge -S '$RUN/munge.socket'"
    log "munged up (pid $(cat "$d/munged.pid"))"
}

# --- MariaDB (Slurm accounting store) ----------------------------------------

start_mariadb() {
    local d=$DIR/mariadb port
    mkdir -p "$d"
    if pid_alive "$d/mariadbd.pid"; then return 0; fi
    if [[ ! -d $d/data/mysql ]]; then
        mariadb-install-db --no-defaults --datadir="$d/data" --user="$(id -un)" \
            --skip-test-db >"$d/install.log" 2>&1 || { cat "$d/install.log" >&2; die "mariadb-install-db failed"; }
    fi
    port=$(free_ports 1)
    echo "$port" >"$d/port"
    CNET_SERVICE=slurm setsid mariadbd --no-defaults --datadir="$d/data" --user="$(id -un)" \
        --port="$port" --bind-address=127.0.0.1 --socket="$RUN/mysqld.sock" \
        --pid-file="$d/mariadbd.pid" --log-error="$d/mariadbd.err" --skip-name-resolve \
        --innodb-buffer-pool-size=16M --skip-log-bin --max-connections=50 \
        </dev/null >/dev/null 2>&1 9>&- &
    wait_until 60 mariadb bash -c "[[ -S '$RUN/mysqld.sock' ]] && mariadb --no-defaults -S '$RUN/mysqld.sock' -u root -e 'select 1'" \
        || { tail -20 "$d/mariadbd.err" >&2; die "MariaDB did not start"; }
    mariadb --no-defaults -S "$RUN/mysqld.sock" -u root <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
    log "mariadb up on 127.0.0.1:$port (pid $(cat "$d/mariadbd.pid"))"
}

# --- Slurm -----------------------------------------------------------------

write_slurm_conf() {  # write_slurm_conf CTLD_PORT SLURMD_PORT DBD_PORT DB_PORT
    local d=$DIR/slurm host user
    host=$(hostname -s)
    user=$(id -un)
    mkdir -p "$d/state" "$RUN/spool" "$d/log"
    cat >"$d/slurm.conf" <<EOF
# Written by scripts/services.sh: a one-node test cluster on 127.0.0.1.
ClusterName=cnet
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$user
SlurmdUser=$user
SlurmctldPort=$1
SlurmdPort=$2
AuthType=auth/munge
AuthInfo=socket=$RUN/munge.socket
CredType=cred/munge
StateSaveLocation=$d/state
# slurmstepd puts its sockets in the spool dir: it must have a short path.
SlurmdSpoolDir=$RUN/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# Schedule a submitted batch job at once (the default waits up to 3 s to batch submissions).
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# Without a default memory per CPU every job asks for the whole node and jobs run one at a time.
DefMemPerCPU=128
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=60
MessageTimeout=10
KillWait=2
InactiveLimit=0
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$3
# For auth/munge this names the MUNGE socket used to reach slurmdbd (AuthInfo does not apply there).
AccountingStoragePass=$RUN/munge.socket
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$SLURM_CPUS RealMemory=$SLURM_MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$d/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$RUN/munge.socket
DbdAddr=127.0.0.1
DbdHost=$host
DbdPort=$3
SlurmUser=$user
LogFile=$d/log/slurmdbd.log
PidFile=$d/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$4
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$d/slurmdbd.conf"
    echo "" >"$d/cgroup.conf"
}

slurm_up() {
    local d=$DIR/slurm
    pid_alive "$DIR/munge/munged.pid" && pid_alive "$DIR/mariadb/mariadbd.pid" &&
        pid_alive "$d/slurmdbd.pid" && pid_alive "$d/slurmctld.pid" && pid_alive "$d/slurmd.pid"
}

start_slurm() {
    local d=$DIR/slurm
    if slurm_up; then log "slurm already running"; write_slurm_env; return 0; fi
    # A half-started cluster (one daemon died) is restarted whole.
    stop_slurm quiet
    install_slurm
    make_run_dir
    start_munge
    start_mariadb
    local ports
    read -r -a ports <<<"$(free_ports 3)"
    write_slurm_conf "${ports[0]}" "${ports[1]}" "${ports[2]}" "$(cat "$DIR/mariadb/port")"
    export SLURM_CONF=$d/slurm.conf
    # slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF.
    CNET_SERVICE=slurm slurmdbd </dev/null 9>&-
    wait_until 60 slurmdbd port_open "${ports[2]}" || { tail -20 "$d/log/slurmdbd.log" >&2; die "slurmdbd did not start"; }
    sacctmgr -i add cluster cnet >/dev/null 2>&1 || true
    CNET_SERVICE=slurm slurmctld </dev/null 9>&-
    wait_until 60 slurmctld scontrol ping || { tail -20 "$d/log/slurmctld.log" >&2; die "slurmctld did not start"; }
    CNET_SERVICE=slurm slurmd -N "$(hostname -s)" </dev/null 9>&-
    wait_until 60 "the slurm node to become idle" \
        bash -c "sinfo -h -N -o %T | grep -Eq '^(idle|mixed|allocated)'" \
        || { tail -20 "$d/log/slurmd.log" >&2; die "slurmd did not register"; }
    # An account for tests and operators to pass as --account (not enforced).
    sacctmgr -i add account cnet Description=computenet Organization=computenet >/dev/null 2>&1 || true
    sacctmgr -i add user "$(id -un)" Account=cnet >/dev/null 2>&1 || true
    echo "${ports[*]}" >"$d/ports"
    write_slurm_env
    log "slurm up: slurmctld :${ports[0]} slurmd :${ports[1]} slurmdbd :${ports[2]}; SLURM_CONF=$d/slurm.conf"
}

write_slurm_env() {
    printf 'export SLURM_CONF=%q\n' "$DIR/slurm/slurm.conf" >"$DIR/slurm/env.sh"
}

stop_slurm() {
    local d=$DIR/slurm quiet=${1:-}
    if [[ -f $d/slurm.conf ]] && pid_alive "$d/slurmctld.pid"; then
        # Jobs outlive slurmd (slurmstepd re-parents to init): cancel them first.
        SLURM_CONF=$d/slurm.conf scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        local end=$((SECONDS + 10))
        while ((SECONDS < end)) && [[ -n $(SLURM_CONF=$d/slurm.conf squeue -h -o %i -t running,completing 2>/dev/null) ]]; do
            sleep 0.3
        done
    fi
    # slurmctld flushes its last accounting records to slurmdbd, so slurmdbd goes after it.
    kill_pidfiles "$d/slurmd.pid" slurmd "$d/slurmctld.pid" slurmctld
    kill_pidfiles "$d/slurmdbd.pid" slurmdbd
    kill_pidfiles "$DIR/mariadb/mariadbd.pid" mariadbd "$DIR/munge/munged.pid" munged
    sweep slurm
    rm -rf "$RUN/spool"
    rm -f "$d/env.sh"
    [[ -n $quiet ]] || log "slurm stopped"
}

status_slurm() {
    local d=$DIR/slurm name f ok=0
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        case $name in
            munged) f=$DIR/munge/munged.pid ;;
            mariadbd) f=$DIR/mariadb/mariadbd.pid ;;
            *) f=$d/$name.pid ;;
        esac
        if pid_alive "$f"; then
            echo "slurm: $name running (pid $(head -n1 "$f"))"
        else
            echo "slurm: $name stopped"
            ok=1
        fi
    done
    if ((ok == 0)); then
        echo "slurm: SLURM_CONF=$d/slurm.conf; node: $(SLURM_CONF=$d/slurm.conf sinfo -h -N -o '%N %T %C' 2>/dev/null | head -n1)"
    fi
    return $ok
}

# --- Ray -------------------------------------------------------------------

start_ray() {
    local d=$DIR/ray
    mkdir -p "$d"
    if pid_alive "$d/ray.pid" && [[ -s $d/env.sh ]]; then log "ray already running"; return 0; fi
    stop_ray quiet
    install_ray
    local p tmp
    read -r -a p <<<"$(free_ports 10)"
    # A token file in ~/.ray (left by any earlier `ray` use on the machine) turns on
    # Ray's token authentication, and then the Jobs API answers 401 to every client;
    # this test cluster listens on loopback only, so run it without.
    export RAY_AUTH_MODE=disabled
    # Ray puts Unix sockets under its temp dir, and socket paths must stay under 108 bytes.
    tmp=$(mktemp -d /tmp/cnet-ray.XXXXXX)
    echo "$tmp" >"$d/tempdir"
    local as_user=() ray_cmd=("$VENV/bin/ray")
    if [[ $(id -u) == 0 && -n $RAY_RUN_AS ]] && id "$RAY_RUN_AS" >/dev/null 2>&1; then
        local drop=(setpriv --reuid="$RAY_RUN_AS" --regid="$(id -g "$RAY_RUN_AS")" --clear-groups)
        # Ray's jobs inherit its environment: give it a clean one, not this shell's.
        # HOME inside the temp dir: Ray writes ~/.ray, and the user may have no home.
        local site clean_env=(HOME="$tmp" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8
            CNET_SERVICES_DIR="$DIR" CNET_SERVICE=ray RAY_AUTH_MODE=disabled
            RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0)
        site=$("$VENV/bin/python" -c 'import ray, os; print(os.path.dirname(os.path.dirname(ray.__file__)))')
        # The venv's interpreter may live where that user cannot reach (pyenv under /root),
        # so Ray runs on the system's python of the same version, with the venv's packages.
        local same_version
        same_version="import sys, ray; assert sys.version_info[:2] == $("$VENV/bin/python" -c 'import sys; print(tuple(sys.version_info[:2]))')"
        if "${drop[@]}" env PYTHONPATH="$site" /usr/bin/python3 -c "$same_version" 2>/dev/null; then
            as_user=(env -i PYTHONPATH="$site" "${clean_env[@]}" "${drop[@]}")
            ray_cmd=(/usr/bin/python3 -c 'import sys; from ray.scripts.scripts import main; sys.argv[0] = "ray"; sys.exit(main())')
        elif "${drop[@]}" "$VENV/bin/python" -c "$same_version" 2>/dev/null; then
            as_user=(env -i "${clean_env[@]}" "${drop[@]}")
        else
            log "warning: no python that $RAY_RUN_AS can run has ray; the Ray head runs as root"
        fi
        if [[ ${#as_user[@]} -gt 0 ]]; then chown "$RAY_RUN_AS:$(id -gn "$RAY_RUN_AS")" "$tmp"; fi
    fi
    # Ray turns --node-ip-address=127.0.0.1 into the host's outward address unless it
    # believes it runs a one-machine cluster; this switch keeps every Ray port on loopback.
    CNET_SERVICE=ray RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 setsid "${as_user[@]}" "${ray_cmd[@]}" start --head --block \
        --node-ip-address=127.0.0.1 --port="${p[0]}" \
        --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="${p[1]}" \
        --ray-client-server-port="${p[2]}" --node-manager-port="${p[3]}" \
        --object-manager-port="${p[4]}" --dashboard-agent-listen-port="${p[5]}" \
        --dashboard-agent-grpc-port="${p[6]}" --metrics-export-port="${p[7]}" \
        --runtime-env-agent-port="${p[8]}" \
        --num-cpus="$RAY_NUM_CPUS" --num-gpus=0 --object-store-memory="$RAY_OBJECT_STORE_BYTES" \
        --temp-dir="$tmp" --disable-usage-stats \
        </dev/null >"$d/ray.log" 2>&1 9>&- &
    echo $! >"$d/ray.pid"
    local url="http://127.0.0.1:${p[1]}"
    wait_until 120 "the Ray Jobs API" "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/api/version', timeout=2)" "$url" \
        || { tail -30 "$d/ray.log" >&2; die "ray head did not start"; }
    # The Jobs API answers before the head node's agent does; wait until jobs can be listed.
    wait_until 60 "the Ray job agent" "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/api/jobs/', timeout=5)" "$url" || true
    {
        printf 'export RAY_ADDRESS=%q\n' "$url"
        printf 'export CNET_RAY_GCS_ADDRESS=%q\n' "127.0.0.1:${p[0]}"
        printf 'export RAY_AUTH_MODE=disabled\n'
    } >"$d/env.sh"
    log "ray up: Jobs API $url, GCS 127.0.0.1:${p[0]} (pid $(cat "$d/ray.pid"))"
}

stop_ray() {
    local d=$DIR/ray quiet=${1:-}
    local tmp=""
    [[ -s $d/tempdir ]] && tmp=$(cat "$d/tempdir")
    kill_pidfile "$d/ray.pid" "ray head"
    sweep ray "$tmp"
    if [[ -n $tmp ]]; then rm -rf "$tmp"; rm -f "$d/tempdir"; fi
    rm -f "$d/env.sh"
    [[ -n $quiet ]] || log "ray stopped"
}

status_ray() {
    local d=$DIR/ray
    if pid_alive "$d/ray.pid"; then
        echo "ray: head running (pid $(cat "$d/ray.pid")); $(grep RAY_ADDRESS "$d/env.sh" 2>/dev/null | sed 's/^export //')"
    else
        echo "ray: stopped"
        return 1
    fi
}

# --- PostgreSQL ------------------------------------------------------------

pg_run() {  # run a PostgreSQL program as the postgres user (initdb refuses root)
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_home() {  # where the postgres user's files live: in the state dir when it can reach it
    local d=$DIR/postgres h
    if [[ -s $d/home && -d $(cat "$d/home") ]]; then cat "$d/home"; return 0; fi
    h=$d/pg
    mkdir -p "$h"
    if [[ $(id -u) == 0 ]]; then
        chown postgres:postgres "$h"
        chmod 700 "$h"
        if ! runuser -u postgres -- test -w "$h" 2>/dev/null; then
            # The state dir lies under a directory postgres cannot enter (a clone under /root).
            rm -rf "$h"
            h=$(mktemp -d /tmp/cnet-pg.XXXXXX)
            chown postgres:postgres "$h"
        fi
    fi
    echo "$h" >"$d/home"
    echo "$h"
}

start_postgres() {
    local d=$DIR/postgres h bin port pw
    mkdir -p "$d"
    if pid_alive "$d/postgres.pid" && [[ -s $d/env.sh ]]; then log "postgres already running"; return 0; fi
    stop_postgres quiet
    install_postgres
    bin=$(pg_bindir)
    h=$(pg_home)
    make_run_dir
    mkdir -p "$RUN/pg"
    [[ $(id -u) == 0 ]] && chown postgres:postgres "$RUN/pg"
    if [[ ! -s $d/password ]]; then
        "$PY" -c "import secrets; print(secrets.token_hex(12))" >"$d/password"
        chmod 600 "$d/password"
    fi
    pw=$(cat "$d/password")
    if [[ ! -f $h/data/PG_VERSION ]]; then
        cp "$d/password" "$h/pwfile"
        [[ $(id -u) == 0 ]] && chown postgres:postgres "$h/pwfile"
        pg_run "$bin/initdb" -D "$h/data" -U postgres --pwfile="$h/pwfile" -E UTF8 --no-locale \
            --auth-local=trust --auth-host=scram-sha-256 >"$d/initdb.log" 2>&1 \
            || { cat "$d/initdb.log" >&2; rm -f "$h/pwfile"; die "initdb failed"; }
        rm -f "$h/pwfile"
    fi
    port=$(free_ports 1)
    CNET_SERVICE=postgres pg_run "$bin/pg_ctl" -D "$h/data" -l "$h/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $RUN/pg -c shared_buffers=16MB -c max_connections=100 -c fsync=off" \
        start >/dev/null 9>&- || { tail -20 "$h/postgres.log" >&2; die "postgres did not start"; }
    head -n1 "$h/data/postmaster.pid" >"$d/postgres.pid"
    if ! pg_run "$bin/psql" -h "$RUN/pg" -p "$port" -U postgres -tAc \
        "select 1 from pg_database where datname = 'computenet'" | grep -q 1; then
        pg_run "$bin/createdb" -h "$RUN/pg" -p "$port" -U postgres computenet
    fi
    echo "$port" >"$d/port"
    printf 'export CNET_PG_URL=%q\n' "postgresql+psycopg://postgres:$pw@127.0.0.1:$port/computenet" >"$d/env.sh"
    log "postgres up on 127.0.0.1:$port (pid $(cat "$d/postgres.pid")), database computenet, data in $h"
}

stop_postgres() {
    local d=$DIR/postgres quiet=${1:-} bin
    if pid_alive "$d/postgres.pid" && bin=$(pg_bindir) && [[ -s $d/home ]]; then
        pg_run "$bin/pg_ctl" -D "$(cat "$d/home")/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    fi
    kill_pidfile "$d/postgres.pid" postgres
    sweep postgres
    rm -f "$d/env.sh"
    [[ -n $quiet ]] || log "postgres stopped"
}

status_postgres() {
    local d=$DIR/postgres
    if pid_alive "$d/postgres.pid"; then
        echo "postgres: running (pid $(cat "$d/postgres.pid")) on 127.0.0.1:$(cat "$d/port" 2>/dev/null)"
    else
        echo "postgres: stopped"
        return 1
    fi
}

# --- env file ----------------------------------------------------------------

write_env() {
    local f=$DIR/env.sh svc
    {
        echo "# Written by scripts/services.sh; source it: . $f"
        printf 'export CNET_SERVICES_DIR=%q\n' "$DIR"
        for svc in slurm ray postgres; do
            [[ -s $DIR/$svc/env.sh ]] && cat "$DIR/$svc/env.sh"
        done
    } >"$f.tmp"
    mv "$f.tmp" "$f"
}

# --- main ------------------------------------------------------------------

cmd=${1:-}
target=${2:-all}
case $target in
    all) services=(slurm ray postgres) ;;
    slurm | ray | postgres) services=("$target") ;;
    *) usage ;;
esac

exec 9>"$DIR/.lock"
flock 9

case $cmd in
    start)
        t0=$SECONDS
        for s in "${services[@]}"; do "start_$s"; done
        write_env
        log "ready in $((SECONDS - t0))s; env: . $DIR/env.sh"
        ;;
    stop)
        for ((i = ${#services[@]} - 1; i >= 0; i--)); do "stop_${services[i]}"; done
        write_env
        rmdir "$RUN/pg" "$RUN" 2>/dev/null || true  # only once nothing uses them
        ;;
    status)
        rc=0
        for s in "${services[@]}"; do "status_$s" || rc=3; done
        exit $rc
        ;;
    env)
        write_env
        cat "$DIR/env.sh"
        ;;
    *) usage ;;
esac
