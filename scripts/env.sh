# shellcheck shell=bash
# Shared set-up for ./example.sh and ./test.sh: sourced, never run directly.
# Every step is idempotent: the second run only checks and moves on.
#
# These scripts run on people's laptops, next to Docker CE, k3s or a system containerd, so they
# are good guests (README: "What the set-up changes on your machine"):
# - apt only ever adds packages (--no-remove); docker.io only where no Docker engine is installed;
# - no system service is enabled, disabled, started or stopped;
# - the only process ever signalled is the dockerd this run started, by its PID (never by name);
#   its containerd stops with it, and its container shims are waited for, never killed;
# - the only containers removed are those labelled io.imgforge.owner=$IMGFORGE_OWNER (this run);
# - run as root in a clone someone else owns, what the run wrote in the clone is handed back.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IMGFORGE_VENV:-$ROOT/.venv}"
STATE_DIR="${IMGFORGE_RUN_DIR:-$ROOT/.run}"
# docker.io is not in this list: it is added only where no engine is installed (docker_package).
APT_PACKAGES=(python3-venv debootstrap docker-registry apache2-utils git wrk skopeo)
# Debian's docker.io conflicts with these: apt would have to remove them to install it.
DOCKER_CONFLICTS=(docker-ce docker-ce-cli containerd.io moby-engine moby-cli moby-containerd docker-ee)
OWNER_LABEL=io.imgforge.owner
# Every container this run starts (imgforge's, the tests') carries $OWNER_LABEL=$IMGFORGE_OWNER;
# clean-up at the end removes exactly those. Set it yourself to find a run's leftovers by label.
export IMGFORGE_OWNER="${IMGFORGE_OWNER:-imgforge-$(date +%Y%m%d%H%M%S)-$$}"
# testcontainers' reaper (Ryuk) runs as a container pulled from Docker Hub, which cannot be
# reached everywhere; imgforge removes its own containers. Set it to false to use Ryuk.
export TESTCONTAINERS_RYUK_DISABLED="${TESTCONTAINERS_RYUK_DISABLED:-true}"
DOCKER_PIDFILE=/var/run/docker.pid
DOCKERD_STOP_GRACE=30   # seconds between SIGTERM and SIGKILL (dockerd itself waits 15 s for containers)
SHIM_WAIT=20            # seconds to wait for the engine's container shims to exit on their own
STARTED_DOCKERD_PID=""  # set only when this run started dockerd
STARTED_DOCKERD_TIME="" # its start time (/proc/PID/stat field 22): a reused PID is never signalled

log() { printf '==> %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

is_installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

docker_answers() { docker info >/dev/null 2>&1; }

# "docker.io" when this machine has no Docker engine at all and Debian's package may be installed;
# nothing when an engine answers, DOCKER_HOST names one, or a dockerd binary is installed.
docker_package() {
    if docker_answers || [[ -n "${DOCKER_HOST:-}" ]] || command -v dockerd >/dev/null 2>&1; then
        return 0
    fi
    local pkg
    for pkg in "${DOCKER_CONFLICTS[@]}"; do
        if is_installed "$pkg"; then
            die "no dockerd found, but $pkg is installed; Debian's docker.io conflicts with it, so it is not" \
                "installed here. Install or start your engine's daemon (docker-ce has it), or point" \
                "DOCKER_HOST at a running engine, then run this again"
        fi
    done
    echo docker.io
}

ensure_packages() {
    local missing=() pkg docker_pkg
    docker_pkg="$(docker_package)"
    for pkg in "${APT_PACKAGES[@]}" $docker_pkg; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    local how="as root"
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing Debian packages: ${missing[*]}. Installing them needs" \
            "root: run this as root, or install them first: apt-get install --no-remove ${missing[*]}"
        how="through sudo"
    fi
    log "installing Debian packages with apt-get $how: ${missing[*]} (plus their dependencies; nothing is removed)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-remove "${missing[@]}" >/dev/null
}

ensure_venv() {
    local stamp="$VENV/.imgforge-installed"
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating virtualenv $VENV"
        python3 -m venv "$VENV"
    fi
    if [[ ! -f "$stamp" || "$ROOT/pyproject.toml" -nt "$stamp" ]]; then
        log "installing imgforge and its dependencies into $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test]"
        touch "$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}

# -- processes: by PID only ------------------------------------------------------------------------

proc_field() {  # proc_field PID N: field N (>= 3) of /proc/PID/stat, read past the "(name)" with its spaces
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    read -r -a stat <<<"${stat##*) }"
    echo "${stat[$(($2 - 3))]}"
}

proc_start_time() { proc_field "$1" 22; }

is_process() {  # is_process PID START_TIME: that very process (not a later one with a reused PID) lives
    [[ "$(proc_start_time "$1" 2>/dev/null)" == "$2" ]]
}

dockerd_pids() {  # every live process named dockerd (read from /proc; only ever used to decide, never to signal)
    local comm name
    for comm in /proc/[0-9]*/comm; do
        read -r name 2>/dev/null <"$comm" || continue
        [[ "$name" == dockerd ]] && { comm="${comm#/proc/}"; echo "${comm%/comm}"; }
    done
    return 0
}

wait_gone() {  # wait_gone PID START_TIME SECONDS: 0 once that process has exited
    local tries=$(($3 * 10))
    while ((tries-- > 0)); do
        is_process "$1" "$2" || return 0
        sleep 0.1
    done
    ! is_process "$1" "$2"
}

ensure_dockerd() {
    if docker_answers; then return 0; fi
    if [[ -n "${DOCKER_HOST:-}" ]]; then
        die "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local engine"
    fi
    local dockerd
    dockerd="$(command -v dockerd)" || die "no Docker engine answers and no dockerd is installed"
    if [[ $EUID -ne 0 ]]; then
        die "no Docker engine answers; start yours first, or run this as root to let it start $dockerd" \
            "for the run"
    fi
    local holder
    holder="$(cat "$DOCKER_PIDFILE" 2>/dev/null)" || holder=""
    if [[ -n "$holder" && "$(cat "/proc/$holder/comm" 2>/dev/null)" == dockerd ]]; then
        die "a dockerd runs already (pid $holder, $DOCKER_PIDFILE) but does not answer; not starting a second" \
            "one. Point DOCKER_HOST at its socket, or fix or stop it yourself"
    fi
    if [[ -f "$DOCKER_PIDFILE" && -z "$(dockerd_pids)" ]]; then   # left by a killed engine
        log "removing $DOCKER_PIDFILE left behind by an engine that is gone"
        rm -f "$DOCKER_PIDFILE"
    fi
    start_dockerd "$dockerd"
}

# Start dockerd (extra arguments go to it) and wait until it answers. Published ports bind to
# loopback only (--ip); the tests' registries on 127.0.0.0/8 speak plain HTTP.
start_dockerd() {
    local dockerd="$1"
    shift
    mkdir -p "$STATE_DIR"
    log "starting $dockerd for this run (log: $STATE_DIR/dockerd.log)"
    "$dockerd" --ip=127.0.0.1 --insecure-registry=127.0.0.0/8 "$@" >"$STATE_DIR/dockerd.log" 2>&1 &
    STARTED_DOCKERD_PID=$!
    STARTED_DOCKERD_TIME="$(proc_start_time "$STARTED_DOCKERD_PID")" || STARTED_DOCKERD_TIME=gone
    echo "$STARTED_DOCKERD_PID" >"$STATE_DIR/dockerd.started"
    local tries=600
    while ((tries-- > 0)); do
        docker_answers && return 0
        is_process "$STARTED_DOCKERD_PID" "$STARTED_DOCKERD_TIME" || break
        sleep 0.05
    done
    log "dockerd did not come up; last lines of its log:"
    tail -n 20 "$STATE_DIR/dockerd.log" >&2
    return 1
}

# "PID START_TIME" of each container shim of the engine this run started: the shims of its running
# containers (by -id) and every shim of the containerd it runs itself (by -address).
engine_shim_pids() {
    local ids address="" dir cmd id addr config
    ids=" $(docker ps -q --no-trunc 2>/dev/null | tr '\n' ' ') "
    for dir in /proc/[0-9]*; do   # dockerd's own containerd: its socket sits next to its --config
        [[ "$(cat "$dir/comm" 2>/dev/null)" == containerd ]] || continue
        [[ "$(proc_field "${dir#/proc/}" 4)" == "$STARTED_DOCKERD_PID" ]] || continue
        config="$(tr '\0' '\n' 2>/dev/null <"$dir/cmdline" | sed -n '/^--config$/{n;p;}')"
        [[ -z "$config" ]] || address="$(dirname "$config")/containerd.sock"
    done
    for dir in /proc/[0-9]*; do   # comm is cut to 15 characters: containerd-shim-runc-v2 shows as containerd-shim
        [[ "$(cat "$dir/comm" 2>/dev/null)" == containerd-shim* ]] || continue
        cmd=" $(tr '\0' ' ' 2>/dev/null <"$dir/cmdline") " || continue
        id="${cmd#* -id }" addr="${cmd#* -address }"
        id="${id%% *}" addr="${addr%% *}"
        if [[ "$ids" == *" $id "* || ( -n "$address" && "$addr" == "$address" ) ]]; then
            echo "${dir#/proc/} $(proc_start_time "${dir#/proc/}")"
        fi
    done
    return 0
}

remove_owned_containers() {  # this run's containers, found by its owner label only
    docker_answers || return 0
    local ids
    ids="$(docker ps -aq --filter "label=$OWNER_LABEL=$IMGFORGE_OWNER")" || return 0
    [[ -n "$ids" ]] || return 0
    log "removing containers this run left behind (label $OWNER_LABEL=$IMGFORGE_OWNER)"
    # shellcheck disable=SC2086  # one id per word
    docker rm -f $ids >/dev/null || true
}

stop_started_dockerd() {
    local pid="$STARTED_DOCKERD_PID" start="$STARTED_DOCKERD_TIME"
    [[ -n "$pid" ]] || return 0
    if ! is_process "$pid" "$start"; then rm -f "$STATE_DIR/dockerd.started"; return 0; fi
    if [[ "${IMGFORGE_KEEP_DOCKERD:-0}" == 1 ]]; then
        log "leaving the dockerd this run started running (pid $pid; IMGFORGE_KEEP_DOCKERD=1)"; return 0
    fi
    local foreign
    foreign="$(comm -23 <(docker ps -q | sort) <(docker ps -q --filter "label=$OWNER_LABEL=$IMGFORGE_OWNER" | sort))"
    if [[ -n "$foreign" ]]; then
        log "leaving the dockerd this run started running (pid $pid): it now runs containers of someone" \
            "else ($(echo $foreign)). Stop it yourself when they are done: kill $pid"
        return 0
    fi
    local shims
    shims="$(engine_shim_pids)"
    log "stopping the dockerd this run started (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$start" "$DOCKERD_STOP_GRACE"; then
        log "dockerd (pid $pid) ignored SIGTERM for $DOCKERD_STOP_GRACE s; sending SIGKILL to that pid"
        is_process "$pid" "$start" && kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" "$start" 10 || log "dockerd (pid $pid) is still there"
    fi
    local shim shim_start
    while read -r shim shim_start; do   # they exit once their container has stopped
        [[ -n "$shim" ]] || continue
        wait_gone "$shim" "$shim_start" "$SHIM_WAIT" || log "container shim pid $shim still runs; it was left alone"
    done <<<"$shims"
    if [[ -f "$DOCKER_PIDFILE" && -z "$(dockerd_pids)" ]]; then rm -f "$DOCKER_PIDFILE"; fi
    rm -f "$STATE_DIR/dockerd.started"
}

# Run as root in a clone that belongs to someone else: hand every root-owned path in the clone
# (.venv, .run, *.egg-info, .pytest_cache, __pycache__, anything else the run wrote) back to the
# clone's owner. .git is left alone: nothing here writes to it.
restore_clone_owner() {
    [[ $EUID -eq 0 ]] || return 0
    local owner
    owner="$(stat -c %u:%g "$ROOT")"
    [[ "$owner" != 0:* ]] || return 0
    find "$ROOT" -xdev -path "$ROOT/.git" -prune -o -user 0 -exec chown -h "$owner" {} +
}

on_exit() {
    set +e
    remove_owned_containers
    stop_started_dockerd
    restore_clone_owner
}

ensure_base_image() {
    # The local stand-in for the nginx base images real users pull (see README: base images).
    if ! "$VENV/bin/imgforge" base status --quiet; then
        log "no local base image yet: bootstrapping Debian bookworm (about a minute)"
        "$VENV/bin/imgforge" base bootstrap debian --with-nginx
    fi
}

# Everything both commands need, in order; on exit this run's containers are removed and the
# engine is stopped if this run started it. An argument names a function to run once the
# virtualenv exists and before anything touches Docker (./test.sh: the lint and type checks).
setup() {
    trap on_exit EXIT
    ensure_packages
    ensure_venv
    cd "$ROOT"
    if [[ -n "${1:-}" ]]; then "$1"; fi
    ensure_dockerd
    ensure_base_image
    cd "$ROOT"
}
