# shellcheck shell=bash
# Shared set-up for ./example.sh and ./test.sh: sourced, never run directly.
# Every step is idempotent: the second run only checks and moves on.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IMGFORGE_VENV:-$ROOT/.venv}"
STATE_DIR="${IMGFORGE_RUN_DIR:-$ROOT/.run}"
APT_PACKAGES=(docker.io debootstrap docker-registry apache2-utils git wrk skopeo)
STARTED_DOCKERD=0

log() { printf '==> %s\n' "$*" >&2; }

ensure_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing system packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # The registry package starts a system service on install; the tests run their own.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi
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

dockerd_alive() { pgrep -x dockerd >/dev/null 2>&1; }

ensure_dockerd() {
    if docker info >/dev/null 2>&1; then return 0; fi
    if [[ -n "${DOCKER_HOST:-}" ]]; then
        log "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local engine"; return 1
    fi
    if ! dockerd_alive; then
        rm -f /var/run/docker.pid   # left behind by a killed session; dockerd refuses to start with it
    fi
    mkdir -p "$STATE_DIR"
    log "starting dockerd (log: $STATE_DIR/dockerd.log)"
    # --ip: published ports bind to loopback only.
    dockerd --ip=127.0.0.1 --insecure-registry=127.0.0.0/8 >"$STATE_DIR/dockerd.log" 2>&1 &
    echo $! >"$STATE_DIR/dockerd.started"
    STARTED_DOCKERD=1
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    log "dockerd did not come up; last lines of its log:"; tail -n 20 "$STATE_DIR/dockerd.log" >&2
    return 1
}

stop_dockerd_if_started() {
    [[ "$STARTED_DOCKERD" == 1 ]] || return 0
    [[ "${IMGFORGE_KEEP_DOCKERD:-0}" == 1 ]] && { log "leaving dockerd running (IMGFORGE_KEEP_DOCKERD=1)"; return 0; }
    local pid; pid="$(cat "$STATE_DIR/dockerd.started" 2>/dev/null || true)"
    docker ps -q 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        log "stopping the dockerd this script started"
        kill "$pid"
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    pkill -x containerd 2>/dev/null || true   # docker.io's dockerd runs its own containerd child
    # Container shims of this engine ("moby" namespace) exit on their own a moment later; wait, then insist.
    for _ in $(seq 1 20); do pgrep -f 'containerd-shim.*-namespace moby' >/dev/null || break; sleep 0.5; done
    pkill -f 'containerd-shim.*-namespace moby' 2>/dev/null || true
    rm -f "$STATE_DIR/dockerd.started"
}

ensure_base_image() {
    # The local stand-in for the nginx base images real users pull (see README: base images).
    if ! "$VENV/bin/imgforge" base status --quiet; then
        log "no local base image yet: bootstrapping Debian bookworm (about a minute)"
        "$VENV/bin/imgforge" base bootstrap debian --with-nginx
    fi
}

# Everything both commands need, in order; the engine is stopped on exit if this run started it.
setup() {
    trap stop_dockerd_if_started EXIT
    ensure_packages
    ensure_venv
    ensure_dockerd
    ensure_base_image
    cd "$ROOT"
}
