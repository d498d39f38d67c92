"""Run an image the way a Pod Security "restricted" Deployment runs it, several containers at once.

One verification starts four containers concurrently: the site as the catalog runs it, the same
with ``LISTEN_PORT`` moved, an OpenShift-style arbitrary UID in group 0, and a short-lived scanner
for setuid files. Each is read-only with a tmpfs at /tmp, all capabilities dropped and
``no-new-privileges``, published on 127.0.0.1 only. Readiness is polled every 20 ms instead of
sleeping, so a run costs little more than the slowest container start.

Containers carry a per-run label and are removed in a ``finally`` (and swept by that label), so a
failing check, a crash, Ctrl-C or SIGTERM never leaves one behind. They also carry
``io.imgforge.owner`` (``IMGFORGE_OWNER``, else the run id), so whoever started imgforge can clean up
after a killed process by that label alone, without touching anyone else's containers on a shared
engine. testcontainers' Ryuk reaper is left to the environment (``TESTCONTAINERS_RYUK_DISABLED``).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import docker.errors
import requests.exceptions
from testcontainers.core.container import DockerContainer

from imgforge.errors import DockerError
from imgforge.verify import checks
from imgforge.verify.checks import CheckResult, Expect, Http, Response

RUN_LABEL = "io.imgforge.verify.run"
OWNER_LABEL = "io.imgforge.owner"  # value: $IMGFORGE_OWNER (./example.sh and ./test.sh set it), else the run id
START_TIMEOUT = 10.0  # seconds for nginx to answer after the container starts
STOP_GRACE = 5.0  # Kubernetes' default grace is 30 s; an nginx that needs more than 5 is stuck
POLL = 0.02
SCAN_TIMEOUT = 60.0
PS_ARGS = "-o pid,ruid,euid,suid,fsuid,rgid,egid,sgid,fsgid,supgid,comm"
# Report order; also the checks each scenario owns, so a scenario that cannot start fails them all.
HTTP_CHECKS = (
    "content_served",
    "content_types",
    "missing_path",
    "hidden_files",
    "path_traversal",
    "healthz",
    "server_header",
    "security_headers",
)
MAIN_CHECKS = ("processes", *HTTP_CHECKS, "startup_logs")
ORDER = ("image_config", *MAIN_CHECKS[:-1], "listen_port", "arbitrary_uid", "no_setuid", "startup_logs", "stop")


class Cancelled(Exception):
    """Another thread asked the run to stop (Ctrl-C, SIGTERM): leave polling loops at once."""


class Fleet:
    """The containers of one run: started from any thread, all removed by ``remove_all``."""

    def __init__(self, client, image_id: str, cancel: threading.Event):
        self.client = client
        self.image_id = image_id
        self.cancel = cancel
        self.run_id = uuid.uuid4().hex[:12]
        self.labels = {RUN_LABEL: self.run_id, OWNER_LABEL: os.environ.get("IMGFORGE_OWNER") or self.run_id}
        self._started: list[DockerContainer] = []
        self._lock = threading.Lock()

    def start(
        self,
        role: str,
        *,
        user: str,
        ports: tuple[int, ...] = (),
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        **extra,
    ) -> DockerContainer:
        self._check_cancel()
        container = DockerContainer(self.image_id, command=command).with_kwargs(
            user=user, read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"], labels=self.labels, **extra
        )
        container.with_name(f"imgforge-verify-{self.run_id}-{role}").with_tmpfs_mount("/tmp")
        for key, value in (env or {}).items():
            container.with_env(key, value)
        for port in ports:
            # docker-py's (host_ip,) binding: a free port on loopback only, never on 0.0.0.0.
            container.ports[f"{port}/tcp"] = (checks.LOOPBACK,)  # type: ignore[assignment]
        with self._lock:
            self._started.append(container)
        container.start()
        return container

    def clients(self, container: DockerContainer, ports: tuple[int, ...], timeout: float = 3.0) -> list[Http] | str:
        """HTTP clients for the published ports, or why there are none (the container already exited)."""
        out = []
        for port in ports:
            bindings = self.client.api.port(container.get_container_id(), port) or []
            host_port = next((int(b["HostPort"]) for b in bindings if b.get("HostIp") == checks.LOOPBACK), None)
            if host_port is None:
                if exited := self.exited(container):
                    return exited
                raise DockerError(f"port {port} of the test container is not published on {checks.LOOPBACK}")
            out.append(Http(host_port, timeout))
        return out

    def wait_http(
        self,
        container: DockerContainer,
        web: Http,
        timeout: float = START_TIMEOUT,
        give_up: Callable[[], bool] = lambda: False,
    ) -> str | None:
        """None once nginx answers anything over HTTP; else why not (exited, timed out)."""
        deadline = time.monotonic() + timeout
        tries = 0
        while True:
            self._check_cancel()
            try:
                web.get("/")
                return None
            except (OSError, http.client.HTTPException):  # refused, reset or cut off while coming up
                pass
            tries += 1
            if tries % 10 == 0 and (exited := self.exited(container)):
                return exited
            if give_up():
                return "gave up waiting"
            if time.monotonic() > deadline:
                return f"no HTTP answer within {timeout:.0f} s: {self.log_tail(container)}"
            time.sleep(POLL)

    def state(self, container: DockerContainer) -> dict:
        return self.client.api.inspect_container(container.get_container_id()).get("State") or {}

    def exited(self, container: DockerContainer) -> str | None:
        state = self.state(container)
        if state.get("Running"):
            return None
        return f"the container exited with code {state.get('ExitCode')}: {self.log_tail(container)}"

    def logs(self, container: DockerContainer) -> str:
        return self.client.api.logs(container.get_container_id(), stdout=True, stderr=True).decode("utf-8", "replace")

    def log_tail(self, container: DockerContainer, lines: int = 3) -> str:
        tail = [line for line in self.logs(container).splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "(no log output)"

    def discard(self, container: DockerContainer) -> None:
        """Remove a container as soon as its scenario is done, in that scenario's thread."""
        with self._lock:
            if container not in self._started:
                return
            self._started.remove(container)
        self._remove(container.get_container_id())
        with contextlib.suppress(Exception):
            container.get_docker_client().client.close()

    def _remove(self, cid: str, timeout: float = 15.0) -> None:
        """Force-remove and wait until the engine no longer knows the container.

        The engine can answer 409 "removal already in progress" (or return before a slow kill
        finishes under load): only an inspect that says 404 proves the container is gone.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.api.remove_container(cid, force=True, v=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as e:
                if e.status_code != 409:
                    raise
            try:
                self.client.api.inspect_container(cid)
            except docker.errors.NotFound:
                return
            if time.monotonic() > deadline:
                raise DockerError(f"test container {cid[:12]} could not be removed within {timeout:.0f} s")
            time.sleep(0.05)

    def remove_all(self) -> None:
        """Remove every container of this run, even when interrupted again while doing so."""
        interrupted: BaseException | None = None
        with self._lock:
            started, self._started = self._started, []
        ids = {c._container.id for c in started if c._container is not None}  # None: never created
        try:
            ids |= {
                c["Id"] for c in self.client.api.containers(all=True, filters={"label": f"{RUN_LABEL}={self.run_id}"})
            }
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            pass
        for cid in ids:
            while True:
                try:
                    self._remove(cid)
                    break
                except (docker.errors.DockerException, requests.exceptions.RequestException, DockerError):
                    break  # engine gone or stuck: nothing more we can do from here
                except KeyboardInterrupt as e:  # finish cleaning up first, then honour it
                    interrupted = e
        for container in started:
            with contextlib.suppress(Exception):
                container.get_docker_client().client.close()
        if interrupted is not None:
            raise interrupted

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()


# --- the four scenarios, run concurrently ---------------------------------------------------------


def _main(fleet: Fleet, expect: Expect) -> list[CheckResult]:
    """The image as the catalog's Deployment runs it: content, headers, processes, logs."""
    site = expect.site
    container = fleet.start("main", user=f"{site.uid}:{site.gid}", ports=(site.port,))
    web = fleet.clients(container, (site.port,))
    why = web if isinstance(web, str) else fleet.wait_http(container, web := web[0])
    results = []
    side = ThreadPoolExecutor(1, thread_name_prefix="imgforge-verify-ps")  # ps while the HTTP checks run
    procs = side.submit(_processes, fleet, container, expect)
    side.shutdown(wait=False)
    if why is not None or isinstance(web, str):
        results += [CheckResult(n, False, why) for n in HTTP_CHECKS]
    else:
        token = uuid.uuid4().hex[:8]
        got = web.get_many([checks.url_path(rel) for rel in expect.served])
        results += [
            checks.content_served(got, expect),
            checks.content_types(got, expect),
            checks.missing_path(web, expect, token),
            checks.hidden_files(web, expect),
            checks.path_traversal(web, expect),
            checks.healthz(web),
        ]
        samples = checks.header_samples(web, expect, got, token)
        results += [checks.server_header(samples), checks.security_headers(samples, expect)]
    results.append(procs.result())
    results.append(checks.startup_logs(fleet.logs(container)))
    fleet.discard(container)
    return results


def _moved_port(fleet: Fleet, expect: Expect) -> list[CheckResult]:
    """LISTEN_PORT must move the listener (entrypoints that ignore it are a known failure).

    This container, run as the catalog's user, also takes the stop check: it runs in parallel
    with the main container's HTTP checks instead of after them.
    """
    site = expect.site
    moved = checks.MOVED_PORT if site.port != checks.MOVED_PORT else checks.MOVED_PORT + 1
    container = fleet.start(
        "port", user=f"{site.uid}:{site.gid}", ports=(moved, site.port), env={"LISTEN_PORT": str(moved)}
    )
    webs = fleet.clients(container, (moved, site.port), 1.0)
    if isinstance(webs, str):
        return [CheckResult("listen_port", False, f"LISTEN_PORT={moved}: {webs}"), _stop(fleet, container)]
    new, old = webs
    seen_old: dict[str, float] = {}

    def old_answers() -> bool:  # stop waiting soon after nginx shows up on the old port instead
        with contextlib.suppress(Exception):
            old.get("/healthz")
            seen_old.setdefault("at", time.monotonic())
        return bool(seen_old) and time.monotonic() - seen_old["at"] > 1.0

    why = fleet.wait_http(container, new, give_up=old_answers)
    resp = checks.try_get(old, "/healthz")
    answered_old = f"HTTP {resp.status}" if isinstance(resp, Response) else None
    result = checks.listen_port(moved, why is None, answered_old, site.port)
    if why is not None and why != "gave up waiting" and result.ok is False:
        result = CheckResult(result.name, False, f"{result.detail} ({why})")
    stopped = _stop(fleet, container)
    fleet.discard(container)
    return [result, stopped]


def _arbitrary_uid(fleet: Fleet, expect: Expect) -> list[CheckResult]:
    container = fleet.start("uid", user=checks.OPENSHIFT_USER, ports=(expect.site.port,))
    web = fleet.clients(container, (expect.site.port,))
    why = web if isinstance(web, str) else fleet.wait_http(container, web := web[0])
    page = expect.index or (expect.served[0] if expect.served else "")
    resp: Response | str = why or checks.try_get(web, checks.url_path(page))  # type: ignore[arg-type]
    fleet.discard(container)
    return [checks.arbitrary_uid(resp, expect)]


def _setuid_scan(fleet: Fleet, expect: Expect) -> list[CheckResult]:
    """``find`` as root with only CAP_DAC_READ_SEARCH (to see into every folder), no network.

    Images without ``find`` are scanned from an export of their filesystem instead (slower).
    """
    try:
        container = fleet.start(
            "scan",
            user="0:0",
            cap_add=["DAC_READ_SEARCH"],
            network_mode="none",
            entrypoint=["find"],
            command=["/", "-xdev", "(", "-perm", "-4000", "-o", "-perm", "-2000", ")", "-type", "f"],
        )
    except docker.errors.APIError as e:
        if "executable file not found" not in str(e) and "no such file" not in str(e).lower():
            raise
        return [checks.no_setuid(_export_scan(fleet))]
    wrapped = container.get_wrapped_container()
    deadline = time.monotonic() + SCAN_TIMEOUT
    while fleet.state(container).get("Running"):
        fleet._check_cancel()
        if time.monotonic() > deadline:
            return [CheckResult("no_setuid", False, f"the scan did not finish within {SCAN_TIMEOUT:.0f} s")]
        time.sleep(POLL)
    code = fleet.state(container).get("ExitCode")
    found = [line for line in wrapped.logs(stdout=True, stderr=False).decode("utf-8", "replace").splitlines() if line]
    err = wrapped.logs(stdout=False, stderr=True).decode("utf-8", "replace").strip().splitlines()
    fleet.discard(container)
    if code != 0:
        return [CheckResult("no_setuid", False, f"scan incomplete (find exit {code}): {' | '.join(err[-2:])}")]
    return [checks.no_setuid(found)]


def _export_scan(fleet: Fleet) -> list[str]:
    created = fleet.client.api.create_container(fleet.image_id, command=["/"], labels=fleet.labels)
    try:
        with tempfile.TemporaryFile() as spool:
            for chunk in fleet.client.api.export(created["Id"]):
                spool.write(chunk)
            spool.seek(0)
            with tarfile.open(fileobj=spool) as tar:
                return ["/" + m.name for m in tar if m.isfile() and m.mode & 0o6000]
    finally:
        fleet._remove(created["Id"])


def _processes(fleet: Fleet, container: DockerContainer, expect: Expect) -> CheckResult:
    """The engine's ``top``: ps on the engine's host, so nothing is needed in the image."""
    try:
        top = container.get_wrapped_container().top(ps_args=PS_ARGS)
    except docker.errors.APIError as e:
        return CheckResult("processes", False, f"cannot list processes: {e.explanation or e}")
    table = [dict(zip(top.get("Titles") or [], row)) for row in top.get("Processes") or []]
    return checks.processes(table, expect, _implicit_groups(container, expect.site.uid))


def _implicit_groups(container: DockerContainer, uid: int) -> set[str]:
    """Read /etc/passwd and /etc/group out of the running container (no tool needed in it)."""
    texts = []
    for path in ("/etc/passwd", "/etc/group"):
        try:
            stream, _ = container.get_wrapped_container().get_archive(path)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                member = tar.next()
                handle = tar.extractfile(member) if member is not None and member.isfile() else None
                texts.append(handle.read().decode("utf-8", "replace") if handle else "")
        except docker.errors.NotFound:
            texts.append("")  # distroless images may have neither file: no implicit group then
    return checks.implicit_groups(texts[0], texts[1], uid)


def _stop(fleet: Fleet, container: DockerContainer) -> CheckResult:
    """SIGQUIT (the STOPSIGNAL image_config requires), then at most the grace period."""
    wrapped = container.get_wrapped_container()
    if not fleet.state(container).get("Running"):
        return CheckResult("stop", False, f"the container was no longer running: {fleet.log_tail(container)}")
    started = time.monotonic()
    wrapped.kill(signal="SIGQUIT")
    try:
        code = wrapped.wait(timeout=STOP_GRACE)["StatusCode"]
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        return checks.stop(None, None, STOP_GRACE)
    return checks.stop(time.monotonic() - started, code, STOP_GRACE)


SCENARIOS: dict[Callable[[Fleet, Expect], list[CheckResult]], tuple[str, ...]] = {
    _main: MAIN_CHECKS,
    _moved_port: ("listen_port", "stop"),
    _arbitrary_uid: ("arbitrary_uid",),
    _setuid_scan: ("no_setuid",),
}


def _guarded(scenario, names: tuple[str, ...], fleet: Fleet, expect: Expect) -> list[CheckResult]:
    """A container the engine refuses to start fails that scenario's checks, not the whole run."""
    try:
        return scenario(fleet, expect)
    except docker.errors.APIError as e:
        detail = f"the engine could not run the container: {e.explanation or e}"
        return [CheckResult(n, False, detail) for n in names]
    except requests.exceptions.ConnectionError as e:
        raise DockerError(f"lost the Docker engine during the test: {e}") from e


def verify_image(
    client, image_id: str, config: dict, expect: Expect, cancel: threading.Event | None = None
) -> list[CheckResult]:
    """All checks of one image, in report order; every container removed before returning."""
    cancel = cancel or threading.Event()
    fleet = Fleet(client, image_id, cancel)
    pool = ThreadPoolExecutor(len(SCENARIOS), thread_name_prefix=f"imgforge-verify-{expect.site.name}")
    results = [checks.image_config(config, expect)]
    try:
        futures = [pool.submit(_guarded, fn, names, fleet, expect) for fn, names in SCENARIOS.items()]
        for future in futures:
            results += future.result()
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        fleet.remove_all()
    return sorted(results, key=lambda r: ORDER.index(r.name) if r.name in ORDER else len(ORDER))
