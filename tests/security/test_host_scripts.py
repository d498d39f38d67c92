"""./example.sh and ./test.sh are good guests on a laptop that already runs Docker, k3s or containerd.

Two kinds of test. Static ones read the scripts for calls that can harm a host whatever the
branch: killing by name, apt removing packages, touching system services, removing containers
by anything but this run's owner label. Behavioural ones run the set-up functions of
scripts/env.sh for real, with a PATH that holds only recording stand-ins for the OS commands at the
boundary (docker, dockerd, containerd's shim, apt-get, dpkg-query, sudo) plus a few coreutils: they
record how the script called them, so the real engine, apt and sudo are never reachable from here.
The stand-in engine runs as real processes, so "stopped by PID", "waited for" and "never signalled"
are observed, not assumed. Decoys named like the real daemons stand for the ones a laptop already
runs: they must come out untouched. One test starts a real dockerd of its own beside the shared
engine (own socket, roots, pidfile and network namespace; no bridge, no iptables) and checks the
shared one is unmoved, its docker0 bridge included.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV_SH = REPO / "scripts" / "env.sh"
SCRIPTS = [ENV_SH, REPO / "test.sh", REPO / "example.sh", REPO / ".ci" / "run"]
OWNER = "imgforge-test-owner"
OWN_RUNNING, OWN_STOPPED, FOREIGN = "a" * 64, "b" * 64, "c" * 64
# Real tools the scripts may use besides the stand-ins; nothing else is on PATH.
TOOLS = [
    "bash",
    "dirname",
    "basename",
    "date",
    "env",
    "cat",
    "sleep",
    "rm",
    "mkdir",
    "tr",
    "sed",
    "sort",
    "comm",
    "tail",
    "cut",
    "stat",
    "find",
    "chown",
    "ls",
    "grep",
    "touch",
    "id",
]


def code_lines(path: Path) -> list[str]:
    """The script's lines without comments (a "#" at the start of a word begins one)."""
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line:
            out.append(line)
    return out


def all_code() -> list[tuple[str, str]]:
    return [(p.name, line) for p in SCRIPTS for line in code_lines(p)]


# ---- static: calls that must never appear --------------------------------------------------------


def test_no_process_is_killed_by_name():
    for name, line in all_code():
        assert not re.search(r"\b(pkill|killall)\b", line), f"{name}: {line}"
        assert not re.search(r"\b(pgrep|pidof)\b.*\|.*\bkill\b|\bkill\b.*\$\((pgrep|pidof)", line), f"{name}: {line}"
        assert not re.search(r"\bxargs\b.*\bkill\b", line), f"{name}: {line}"
    kills = [(name, line) for name, line in all_code() if re.search(r"(^|[;&|(]\s*)kill\s", line)]
    assert kills, "the scripts stop the dockerd they start: there must be a kill of its PID"
    for name, line in kills:  # every target is one PID held in a variable of ours
        target = re.search(r"\bkill\s+(?:-\w+\s+)*(\S+)", line)[1]
        assert re.fullmatch(r'"\$\w+"', target), f"{name}: kill of {target}, not of a PID variable: {line}"


def test_apt_only_ever_adds_packages():
    apt = [(name, line) for name, line in all_code() if re.search(r"\b(apt-get|apt|dpkg|aptitude)\b", line)]
    assert any("install" in line for _, line in apt), "the package step is gone?"
    for name, line in apt:
        assert not re.search(
            r"\s(remove|purge|autoremove|dist-upgrade|full-upgrade)\b|--(auto-?remove|purge)\b"
            r"|dpkg\s+(-r|-P|--remove|--purge)",
            line,
        ), f"{name}: {line}"
        if re.search(r"\bapt-get\b.*\binstall\b", line):
            assert "--no-remove" in line, f"{name}: apt-get install without --no-remove: {line}"
        assert not re.search(r"\bapt\s", line), f"{name}: use apt-get (stable interface): {line}"


def test_no_system_service_is_enabled_disabled_started_or_stopped():
    for name, line in all_code():
        assert not re.search(r"\b(systemctl|service|update-rc\.d|invoke-rc\.d|rc-service|chkconfig)\b", line), (
            f"{name}: {line}"
        )


def test_containers_are_removed_by_this_runs_owner_label_only():
    for name, line in all_code():
        assert not re.search(r"\bdocker\s+(\w+\s+)?(rmi|prune|system|stop|kill)\b", line), f"{name}: {line}"
    removals = [line for _, line in all_code() if re.search(r"\bdocker\s+(container\s+)?rm\b", line)]
    assert removals == ["docker rm -f $ids >/dev/null || true"]
    body = ENV_SH.read_text().split("remove_owned_containers() {", 1)[1].split("\n}", 1)[0]
    assert 'ids="$(docker ps -aq --filter "label=$OWNER_LABEL=$IMGFORGE_OWNER")"' in body


def test_both_commands_run_the_one_guarded_setup():
    for script in ("test.sh", "example.sh"):
        lines = code_lines(REPO / script)
        assert 'source "$(dirname "${BASH_SOURCE[0]}")/scripts/env.sh"' in lines, script
        assert any(line == "setup" or line.startswith("setup ") for line in lines), script
    assert "exec bash ./test.sh -q" in code_lines(REPO / ".ci" / "run")


def test_imgforge_leaves_ryuk_to_the_environment():
    """Importing the package (CLI and runner) sets nothing; testcontainers reads what the caller set."""
    probe = textwrap.dedent("""\
        import os, imgforge.cli, imgforge.verify.runner
        from testcontainers.core.config import testcontainers_config as c
        print(os.environ.get("TESTCONTAINERS_RYUK_DISABLED"), c.ryuk_disabled)
        """)
    env = {k: v for k, v in os.environ.items() if k != "TESTCONTAINERS_RYUK_DISABLED"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None", "False"]
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "TESTCONTAINERS_RYUK_DISABLED": "true"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["true", "True"]


def test_the_scripts_turn_ryuk_off_unless_told_and_label_with_imgforges_label():
    from imgforge.verify.runner import OWNER_LABEL

    show = f'source "{ENV_SH}"; echo "$TESTCONTAINERS_RYUK_DISABLED $OWNER_LABEL $IMGFORGE_OWNER"'
    env = {k: v for k, v in os.environ.items() if k not in ("TESTCONTAINERS_RYUK_DISABLED", "IMGFORGE_OWNER")}
    ryuk, label, owner = subprocess.run(
        ["bash", "-c", show], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert (ryuk, label) == ("true", OWNER_LABEL)
    assert owner.startswith("imgforge-")
    env.update(TESTCONTAINERS_RYUK_DISABLED="false", IMGFORGE_OWNER="ci-pipeline-42")
    assert subprocess.run(["bash", "-c", show], env=env, capture_output=True, text=True, check=True).stdout.split() == [
        "false",
        OWNER_LABEL,
        "ci-pipeline-42",
    ]


# ---- behavioural: the set-up functions against recording stand-ins -------------------------------

STANDINS = {
    # docker: `info` answers while the engine is up; ps/rm over $FAKE/containers ("id owner running").
    "docker": r"""#!/bin/bash
        echo "docker $*" >>"$FAKE/calls"
        [[ -f "$FAKE/engine-up" ]] || { echo "Cannot connect to the Docker daemon" >&2; exit 1; }
        case "$1" in
          info) exit 0 ;;
          ps) shift; all=0 full=0 want=""
              while (($#)); do case "$1" in
                  -a) all=1 ;; -q) ;; -aq|-qa) all=1 ;; --no-trunc) full=1 ;;
                  --filter) shift; want="${1#label=}" ;; esac; shift; done
              while read -r id owner running; do
                  [[ -n "$id" ]] || continue
                  ((all || running)) || continue
                  [[ -z "$want" || "$want" == "io.imgforge.owner=$owner" ]] || continue
                  ((full)) && echo "$id" || echo "${id:0:12}"
              done <"$FAKE/containers" ;;
          rm) shift; [[ "$1" == -f ]] && shift
              for id in "$@"; do sed -i "/^$id/d" "$FAKE/containers"; done ;;
        esac
        """,
    # dockerd: up until SIGTERM (or ignores it), runs its own containerd like docker.io's does.
    "dockerd": r"""#!/bin/bash
        echo "dockerd $*" >>"$FAKE/calls"
        echo $$ >"$FAKE/dockerd.pid"
        "$FAKE/bin/containerd" --config "$FAKE/exec/containerd/containerd.toml" --log-level info &
        if [[ -f "$FAKE/ignore-term" ]]; then trap 'echo "dockerd ignored TERM" >>"$FAKE/events"' TERM
        else trap 'echo "dockerd stopping" >>"$FAKE/events"; rm -f "$FAKE/engine-up"; exit 0' TERM; fi
        touch "$FAKE/engine-up"
        while :; do sleep 0.05; done
        """,
    "containerd": r"""#!/bin/bash
        while kill -0 $PPID 2>/dev/null; do sleep 0.05; done   # stops with its dockerd
        """,
    # A container's shim: exits a second after the engine went down; logs any signal it gets.
    "containerd-shim-runc-v2": r"""#!/bin/bash
        for sig in TERM INT HUP QUIT USR1; do trap "echo 'shim $$ got $sig' >>'$FAKE/events'" $sig; done
        while [[ -f "$FAKE/engine-up" ]]; do sleep 0.05; done
        sleep 1
        echo "shim $$ exited" >>"$FAKE/events"
        """,
    "dpkg-query": r"""#!/bin/bash
        pkg="${!#}"
        grep -qx "$pkg" "$FAKE/installed" && { printf 'install ok installed'; exit 0; }
        echo "dpkg-query: no packages found matching $pkg" >&2; exit 1
        """,
    "apt-get": r"""#!/bin/bash
        echo "apt-get $* (uid $(id -u 2>/dev/null || echo ?))" >>"$FAKE/calls"
        echo "apt-get was called" >&2
        """,
    "sudo": r"""#!/bin/bash
        echo "sudo $*" >>"$FAKE/calls"
        exec "$@"
        """,
}
DECOY = r"""#!/bin/bash
    for sig in TERM INT HUP QUIT KILL USR1; do
        trap "echo 'decoy $(basename "$0") got $sig' >>'$FAKE/events'" $sig 2>/dev/null
    done
    while :; do sleep 0.05; done
    """


@dataclass
class Host:
    """A scratch machine: stand-ins on PATH, their records, and the processes started for it."""

    root: Path
    procs: list[subprocess.Popen]

    @property
    def fake(self) -> Path:
        return self.root / "fake"

    def calls(self, prefix: str = "") -> list[str]:
        path = self.fake / "calls"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if line.startswith(prefix)]

    def events(self) -> list[str]:
        path = self.fake / "events"
        return path.read_text().splitlines() if path.exists() else []

    def containers(self) -> list[str]:
        return [line.split()[0] for line in (self.fake / "containers").read_text().splitlines() if line.strip()]

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": f"{self.fake / 'bin'}:{self.root / 'tools'}",
            "FAKE": str(self.fake),
            "HOME": str(self.root),
            "IMGFORGE_OWNER": OWNER,
            "IMGFORGE_RUN_DIR": str(self.root / "run"),
            **extra,
        }

    def run(self, body: str, *, user: int | None = None, **extra: str) -> subprocess.CompletedProcess:
        """Source env.sh in a fresh bash and run ``body``; on exit, record that the shell finished."""
        script = (
            f'source "{ENV_SH}"\nDOCKER_PIDFILE="{self.fake}/docker.pid"\n'
            f'trap \'on_exit; echo "setup exited" >>"$FAKE/events"\' EXIT\n{textwrap.dedent(body)}'
        )
        pre = (
            [shutil.which("setpriv"), f"--reuid={user}", f"--regid={user}", "--clear-groups"]
            if user is not None
            else []
        )
        return subprocess.run(
            [*pre, shutil.which("bash"), "-c", script],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def engine(self, up: bool) -> None:
        (self.fake / "engine-up").touch() if up else (self.fake / "engine-up").unlink(missing_ok=True)

    def spawn(self, exe: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([str(exe), *args], env=self.env(), start_new_session=True)
        self.procs.append(proc)
        return proc

    def decoy(self, name: str, *args: str) -> subprocess.Popen:
        """A process named like a real daemon that this run did not start (the laptop's own)."""
        path = self.root / "laptop" / name
        path.parent.mkdir(exist_ok=True)
        _write_exe(path, DECOY)
        proc = self.spawn(str(path), *args)
        time.sleep(0.2)  # let it set its traps
        return proc

    def fake_pid(self, name: str) -> int | None:
        path = self.fake / f"{name}.pid"
        return int(path.read_text()) if path.exists() else None


def _write_exe(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text))
    path.chmod(0o755)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def host():
    # World-readable, so a test can run the scripts as an unprivileged user too.
    root = Path(tempfile.mkdtemp(prefix="imgforge-host-"))
    root.chmod(0o755)
    (root / "fake" / "bin").mkdir(parents=True)
    (root / "tools").mkdir()
    for tool in TOOLS:
        (root / "tools" / tool).symlink_to(shutil.which(tool))
    for name, text in STANDINS.items():
        _write_exe(root / "fake" / "bin" / name, text)
    (root / "fake" / "installed").write_text("")
    (root / "fake" / "containers").write_text(f"{OWN_RUNNING} {OWNER} 1\n{OWN_STOPPED} {OWNER} 0\n{FOREIGN} laptop 0\n")
    (root / "fake").chmod(0o777)  # the stand-ins write their records as whichever user runs them
    for path in (root / "fake").iterdir():
        path.chmod(0o777 if path.is_dir() else 0o666)
    h = Host(root, [])
    yield h
    for pid in filter(None, [h.fake_pid("dockerd")]):  # a stand-in dockerd a test left running on purpose
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    for proc in h.procs:  # only what this test started, by PID
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    shutil.rmtree(root, ignore_errors=True)


def test_an_answering_engine_is_used_and_only_this_runs_containers_are_removed(host):
    host.engine(up=True)
    done = host.run("ensure_dockerd")
    assert done.returncode == 0, done.stderr
    assert host.calls("dockerd") == []
    assert host.calls("docker rm") == [f"docker rm -f {OWN_RUNNING[:12]} {OWN_STOPPED[:12]}"]
    assert host.containers() == [FOREIGN]


def test_an_installed_dockerd_is_started_then_stopped_by_its_pid_and_its_shims_waited_for(host):
    laptop = [
        host.decoy("dockerd"),
        host.decoy("containerd"),
        host.decoy(
            "containerd-shim-runc-v2",
            "-namespace",
            "moby",
            "-id",
            "d" * 64,
            "-address",
            "/run/containerd/containerd.sock",
        ),
    ]
    sock = f"{host.fake}/exec/containerd/containerd.sock"
    done = host.run(f"""
        ensure_dockerd
        containerd-shim-runc-v2 -namespace moby -id {OWN_RUNNING} -address {sock} &
        sleep 0.3   # the container runs
        """)
    assert done.returncode == 0, done.stderr
    [started] = host.calls("dockerd")
    assert started == "dockerd --ip=127.0.0.1 --insecure-registry=127.0.0.0/8"
    pid = host.fake_pid("dockerd")
    assert f"stopping the dockerd this run started (pid {pid})" in done.stderr
    events = host.events()
    assert "dockerd stopping" in events
    assert not _alive(pid)
    shim_exit = [i for i, e in enumerate(events) if re.fullmatch(r"shim \d+ exited", e)]
    assert shim_exit, events
    assert shim_exit[0] < events.index("setup exited"), events  # waited for, not left behind
    assert not [e for e in events if " got " in e], events  # no shim, no decoy got any signal
    assert all(proc.poll() is None for proc in laptop)
    assert host.containers() == [FOREIGN]
    assert not (host.root / "run" / "dockerd.started").exists()


def test_a_dockerd_that_ignores_sigterm_gets_sigkill_on_its_pid_only(host):
    laptop = host.decoy("dockerd")
    (host.fake / "ignore-term").touch()
    done = host.run("DOCKERD_STOP_GRACE=1\nensure_dockerd")
    pid = host.fake_pid("dockerd")
    assert done.returncode == 0, done.stderr
    assert "dockerd ignored TERM" in host.events()
    assert not _alive(pid)
    assert f"dockerd (pid {pid}) ignored SIGTERM for 1 s; sending SIGKILL to that pid" in done.stderr
    assert laptop.poll() is None
    assert not [e for e in host.events() if e.startswith("decoy")]


def test_an_engine_that_now_runs_someone_elses_containers_is_left_running(host):
    (host.fake / "containers").write_text(f"{FOREIGN} laptop 1\n")
    done = host.run("ensure_dockerd")
    pid = host.fake_pid("dockerd")
    assert done.returncode == 0, done.stderr
    assert _alive(pid)
    assert "dockerd stopping" not in host.events()
    assert f"leaving the dockerd this run started running (pid {pid})" in done.stderr
    assert f"kill {pid}" in done.stderr
    assert host.containers() == [FOREIGN]


def test_a_dead_docker_host_is_reported_not_replaced_by_a_local_engine(host):
    done = host.run("ensure_dockerd", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert done.returncode == 1
    assert host.calls("dockerd") == []
    assert "DOCKER_HOST=unix:///nonexistent/docker.sock does not answer; not starting a local engine" in done.stderr


def test_a_dockerd_that_holds_the_pidfile_is_not_doubled(host):
    laptop = host.decoy("dockerd")
    (host.fake / "docker.pid").write_text(f"{laptop.pid}\n")
    done = host.run("ensure_dockerd")
    assert done.returncode == 1
    assert host.calls("dockerd") == []
    assert f"a dockerd runs already (pid {laptop.pid}" in done.stderr
    assert laptop.poll() is None
    assert (host.fake / "docker.pid").exists()


def test_a_stale_pidfile_stays_while_any_dockerd_lives(host):
    laptop = host.decoy("dockerd")  # e.g. a rootless engine of another user
    (host.fake / "docker.pid").write_text("999999999\n")
    done = host.run("ensure_dockerd")
    assert done.returncode == 0, done.stderr
    assert (host.fake / "docker.pid").read_text() == "999999999\n"
    assert laptop.poll() is None


def _missing(host: Host, *installed: str) -> None:
    (host.fake / "installed").write_text("".join(f"{p}\n" for p in installed))


ALL_BUT_TWO = ["python3-venv", "docker-registry", "apache2-utils", "git", "wrk"]  # debootstrap, skopeo missing


def test_as_root_apt_adds_only_the_missing_packages_and_never_removes(host):
    host.engine(up=True)
    _missing(host, *ALL_BUT_TWO)
    done = host.run("ensure_packages")
    assert done.returncode == 0, done.stderr
    assert host.calls("apt-get") == [
        "apt-get update -qq (uid 0)",
        "apt-get install -y -qq --no-remove debootstrap skopeo (uid 0)",
    ]
    said = done.stderr.index("installing Debian packages with apt-get as root: debootstrap skopeo")
    assert said < done.stderr.index("apt-get was called")  # said what, before doing it


def test_without_any_engine_docker_io_is_added(host):
    _missing(host, *ALL_BUT_TWO)
    (host.fake / "bin" / "dockerd").unlink()
    done = host.run("ensure_packages")
    assert done.returncode == 0, done.stderr
    assert host.calls("apt-get install") == ["apt-get install -y -qq --no-remove debootstrap skopeo docker.io (uid 0)"]


def test_an_installed_dockerd_means_no_docker_io(host):
    _missing(host, *ALL_BUT_TWO)  # no engine answers, but the stand-in dockerd is installed
    done = host.run("ensure_packages")
    assert done.returncode == 0, done.stderr
    assert host.calls("apt-get install") == ["apt-get install -y -qq --no-remove debootstrap skopeo (uid 0)"]


@pytest.mark.parametrize("other", ["docker-ce", "containerd.io"])
def test_docker_io_is_never_installed_over_a_conflicting_engine(host, other):
    _missing(host, *ALL_BUT_TWO, other)
    (host.fake / "bin" / "dockerd").unlink()
    done = host.run("ensure_packages")
    assert done.returncode == 1
    assert host.calls("apt-get") == []
    assert f"no dockerd found, but {other} is installed; Debian's docker.io conflicts with it" in done.stderr


def test_not_root_goes_through_sudo_after_saying_so(host):
    host.engine(up=True)
    _missing(host, *ALL_BUT_TWO)
    done = host.run("ensure_packages", user=65534)
    assert done.returncode == 0, done.stderr
    assert "installing Debian packages with apt-get through sudo: debootstrap skopeo" in done.stderr
    assert host.calls("sudo") == [
        "sudo apt-get update -qq",
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-remove debootstrap skopeo",
    ]


def test_not_root_without_sudo_stops_before_apt_and_says_what_to_run(host):
    host.engine(up=True)
    _missing(host, *ALL_BUT_TWO)
    (host.fake / "bin" / "sudo").unlink()
    done = host.run("ensure_packages", user=65534)
    assert done.returncode == 1
    assert host.calls("apt-get") == []
    assert "missing Debian packages: debootstrap skopeo. Installing them needs root" in done.stderr
    assert "apt-get install --no-remove debootstrap skopeo" in done.stderr


def test_root_run_in_someone_elses_clone_hands_its_files_back(host):
    clone = host.root / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(ENV_SH, clone / "scripts" / "env.sh")
    outside = host.root / "outside-file"
    outside.write_text("root's own\n")
    os.chown(clone, 1000, 1000)
    for rel in (
        ".venv/bin/python",
        ".run/dockerd.log",
        "imgforge.egg-info/PKG-INFO",
        "tests/__pycache__/x.pyc",
        ".git/objects/ab",
    ):
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        (clone / rel).write_text("made by root\n")
    (clone / ".venv" / "lib64").symlink_to(outside)
    (clone / "notes.txt").write_text("a third user's file\n")
    os.chown(clone / "notes.txt", 1001, 1001)
    done = subprocess.run(
        ["bash", "-c", f'source "{clone}/scripts/env.sh"; restore_clone_owner'],
        capture_output=True,
        text=True,
        env=host.env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    owners = {str(p.relative_to(clone)): (p.lstat().st_uid, p.lstat().st_gid) for p in clone.rglob("*")}
    assert {rel: owner for rel, owner in owners.items() if owner != (1000, 1000)} == {
        ".git": (0, 0),
        ".git/objects": (0, 0),
        ".git/objects/ab": (0, 0),
        "notes.txt": (1001, 1001),
    }
    assert outside.stat().st_uid == 0  # the link was handed over, not what it points to


def test_root_run_in_roots_own_clone_changes_no_owner(host):
    clone = host.root / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(ENV_SH, clone / "scripts" / "env.sh")
    (clone / ".venv").mkdir()
    os.chown(clone / ".venv", 1000, 1000)
    subprocess.run(["bash", "-c", f'source "{clone}/scripts/env.sh"; restore_clone_owner'], check=True, env=host.env())
    assert (clone / ".venv").stat().st_uid == 1000
    assert (clone / "scripts").stat().st_uid == 0


def _sleep_rootfs(dest: Path) -> Path:
    """A tar with /bin/sleep and the libraries it links: the smallest image that runs a process."""
    import tarfile

    libs = re.findall(
        r"(/\S+\.so[.\d]*)", subprocess.run(["ldd", "/bin/sleep"], capture_output=True, text=True, check=True).stdout
    )
    with tarfile.open(dest, "w") as tar:
        for path in ["/bin/sleep", *libs]:
            tar.add(os.path.realpath(path), arcname=path.lstrip("/"))
    return dest


@pytest.mark.docker
@pytest.mark.slow
def test_a_real_dockerd_of_our_own_stops_by_pid_with_its_containerd_and_shims(host, docker_client):
    """The real daemon, started beside the shared engine on its own socket, roots, pidfile and network.

    With a container of this run still running at the stop (the case the shim wait is for),
    SIGTERM to the dockerd's PID is enough: dockerd stops the container and its own containerd,
    and the script sees every shim exit. The shared engine answers as before, with the same ID.
    """
    if shutil.which("dockerd") is None:
        pytest.skip("no dockerd installed here (the engine is remote): nothing of ours to start")
    shared_id = docker_client.info()["ID"]
    real = host.root / "real"
    (real / "bin").mkdir(parents=True)
    for tool in ("docker", "containerd", "containerd-shim-runc-v2", "runc", "docker-init"):
        if shutil.which(tool):
            (real / "bin" / tool).symlink_to(shutil.which(tool))
    # Its own network namespace: a dockerd with --bridge=none deletes the host's docker0 (moby's
    # removeDefaultBridgeInterface), which would cut the shared engine's containers off.
    _write_exe(
        real / "bin" / "dockerd", f'#!/bin/bash\nexec {shutil.which("unshare")} --net {shutil.which("dockerd")} "$@"\n'
    )
    bridge = Path("/sys/class/net/docker0").exists()
    (real / "daemon.json").write_text("{}\n")
    rootfs = _sleep_rootfs(real / "sleep.tar")
    own = f"unix://{real}/docker.sock"
    body = f"""
        trap stop_started_dockerd EXIT   # whatever fails below, our dockerd does not outlive the test
        start_dockerd "$(command -v dockerd)" -H {own} --data-root {real}/data --exec-root {real}/exec \\
            --pidfile {real}/docker.pid --config-file {real}/daemon.json --bridge=none --iptables=false \\
            --ip-forward=false
        echo "dockerd $STARTED_DOCKERD_PID" >&2
        docker import {rootfs} imgforge-test/sleep:1 >/dev/null
        docker run -d -q --init --network none --label "$OWNER_LABEL=$IMGFORGE_OWNER" imgforge-test/sleep:1 \\
            /bin/sleep 300 >/dev/null
        engine_shim_pids >"{real}/shims"
        stop_started_dockerd
        """
    try:
        done = subprocess.run(
            [shutil.which("bash"), "-c", f'source "{ENV_SH}"\n{textwrap.dedent(body)}'],
            env={**host.env(DOCKER_HOST=own), "PATH": f"{real / 'bin'}:{host.root / 'tools'}"},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stderr + (host.root / "run" / "dockerd.log").read_text()[-2000:]
        pid = int(re.search(r"^dockerd (\d+)$", done.stderr, re.M)[1])
        shims = [int(line.split()[0]) for line in (real / "shims").read_text().splitlines()]
        assert shims
        assert f"stopping the dockerd this run started (pid {pid})" in done.stderr
        assert "SIGKILL" not in done.stderr
        assert "still runs" not in done.stderr
        assert not _alive(pid)
        assert not any(_alive(shim) for shim in shims)
        assert not [d for d in Path("/proc").glob("[0-9]*") if _cmdline(d).startswith(f"containerd --config {real}")]
    finally:  # should the script have failed to: our dockerd by the PID it wrote, then its mount
        left = (real / "docker.pid").read_text().strip() if (real / "docker.pid").exists() else ""
        if left and _alive(int(left)) and Path(f"/proc/{left}/comm").read_text().strip() == "dockerd":
            os.kill(int(left), signal.SIGTERM)
            for _ in range(300):
                if not _alive(int(left)):
                    break
                time.sleep(0.1)
        subprocess.run(["umount", "-R", str(real / "data")], capture_output=True, check=False)
    assert docker_client.ping()
    assert docker_client.info()["ID"] == shared_id
    assert Path("/sys/class/net/docker0").exists() == bridge


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_the_test_command_runs_lint_and_types_before_any_docker_work():
    """./test.sh fails fast on ruff/mypy: the hook runs after the virtualenv and before the engine."""
    test_sh = code_lines(REPO / "test.sh")
    assert "setup static_checks" in test_sh
    assert any("ruff check" in line and "ruff format --check" in line and "mypy" in line for line in test_sh)
    body = (REPO / "scripts" / "env.sh").read_text(encoding="utf-8").split("setup() {", 1)[1].split("\n}", 1)[0]
    order = [line.strip() for line in body.splitlines() if line.strip()]
    hook = next(i for i, line in enumerate(order) if '"$1"' in line)
    assert order.index("ensure_venv") < hook < order.index("ensure_dockerd") < order.index("ensure_base_image")
