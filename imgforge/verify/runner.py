"""Run an image the way a Pod Security "restricted" Deployment runs it, several containers at once.

First the image's content manifest is read out of a created (never started) container and checked
against its label: it says what the image must serve and how (``Expect``), so no catalog and no
content folder are needed. Then five scenarios run concurrently: the site as its Deployment runs
it, the same with ``LISTEN_PORT`` moved, an OpenShift-style arbitrary UID in group 0, a short-lived
scanner for setuid files, and the comparison of the web root with the manifest. Each container is
read-only with a tmpfs at /tmp, all capabilities dropped and ``no-new-privileges``, published on
127.0.0.1 only. Readiness is polled every 20 ms instead of sleeping, so a run costs little more
than the slowest container start. fleet.py says how every container is labelled and removed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import docker.errors
import requests.exceptions
from testcontainers.core.container import DockerContainer

from imgforge._fs import shown
from imgforge.content_manifest import FIX, IMAGE_PATH, LABEL, MAX_BYTES, ContentManifest, digest_of
from imgforge.errors import DockerError, NotFound
from imgforge.verify import checks, image_files
from imgforge.verify.checks import CheckResult, Expect, Response
from imgforge.verify.fleet import OWNER_LABEL, POLL, RUN_LABEL, Cancelled, Fleet

__all__ = ["ORDER", "OWNER_LABEL", "RUN_LABEL", "Cancelled", "Fleet", "verify_image"]

STOP_GRACE = 5.0  # Kubernetes' default grace is 30 s; an nginx that needs more than 5 is stuck
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
ORDER = (
    "image_config",
    "content_manifest",
    *MAIN_CHECKS[:-1],
    "listen_port",
    "arbitrary_uid",
    "no_setuid",
    "startup_logs",
    "stop",
)


def read_expectations(
    fleet: Fleet, container: str, labels: dict[str, str], where: str, site: str | None
) -> tuple[Expect, list[str]]:
    """The image's content manifest as ``Expect``, and what is wrong with it short of unreadable.

    No manifest, or one that cannot be read as one, is NotFound (nothing can be checked without
    it). A manifest whose bytes differ from the image's label, or that names another site than
    the one asked for, is still used, and the ``content_manifest`` check fails saying so.
    """
    try:
        data = image_files.read_file(fleet.client, container, IMAGE_PATH, MAX_BYTES)
    except ValueError as e:
        raise NotFound(f"{where}: {e}; {FIX}") from e
    label = labels.get(LABEL)
    if data is None:
        said = f" (its {LABEL} label says one was built in)" if label else ""
        raise NotFound(
            f"{where} holds no imgforge content manifest at {IMAGE_PATH}{said}: it was built by another tool "
            f"or by an imgforge that wrote none, so there is nothing to check it against; {FIX}"
        )
    manifest = ContentManifest.parse(data, f"{where}: {IMAGE_PATH}")
    problems = []
    if label != digest_of(data):
        problems.append(
            f"{IMAGE_PATH} does not match its label {LABEL} "
            f"(label {shown(label) if label is not None else '(none)'}, file {digest_of(data)})"
        )
    if site is not None and manifest.site != site:
        problems.append(f"the manifest is of site {shown(manifest.site)}, not {shown(site)}")
    return Expect.from_manifest(manifest), problems


# --- the scenarios, run concurrently --------------------------------------------------------------


def _main(fleet: Fleet, expect: Expect) -> list[CheckResult]:
    """The image as its Deployment runs it: content, headers, processes, logs."""
    container = fleet.start("main", user=expect.user, ports=(expect.port,))
    clients = fleet.clients(container, (expect.port,))
    why = clients if isinstance(clients, str) else fleet.wait_http(container, clients[0])
    results: list[CheckResult] = []
    side = ThreadPoolExecutor(1, thread_name_prefix="imgforge-verify-ps")  # ps while the HTTP checks run
    procs = side.submit(_processes, fleet, container, expect)
    side.shutdown(wait=False)
    if why is not None or isinstance(clients, str):
        results += [CheckResult(n, False, why or "no HTTP client") for n in HTTP_CHECKS]
    else:
        web = clients[0]
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
    moved = checks.MOVED_PORT if expect.port != checks.MOVED_PORT else checks.MOVED_PORT + 1
    container = fleet.start("port", user=expect.user, ports=(moved, expect.port), env={"LISTEN_PORT": str(moved)})
    webs = fleet.clients(container, (moved, expect.port), 1.0)
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
    result = checks.listen_port(moved, why is None, answered_old, expect.port)
    if why is not None and why != "gave up waiting" and result.ok is False:
        result = CheckResult(result.name, False, f"{result.detail} ({why})")
    stopped = _stop(fleet, container)
    fleet.discard(container)
    return [result, stopped]


def _arbitrary_uid(fleet: Fleet, expect: Expect) -> list[CheckResult]:
    container = fleet.start("uid", user=checks.OPENSHIFT_USER, ports=(expect.port,))
    clients = fleet.clients(container, (expect.port,))
    page = expect.index or (expect.served[0] if expect.served else "")
    resp: Response | str
    if isinstance(clients, str):
        resp = clients
    else:
        resp = fleet.wait_http(container, clients[0]) or checks.try_get(clients[0], checks.url_path(page))
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
        fleet.check_cancel()
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
    created = fleet.create("export", command=["/"])
    try:
        with tempfile.TemporaryFile() as spool:
            for chunk in fleet.client.api.export(created):
                spool.write(chunk)
            spool.seek(0)
            with tarfile.open(fileobj=spool) as tar:
                return ["/" + m.name for m in tar if m.isfile() and m.mode & 0o6000]
    finally:
        fleet.remove(created)


def _processes(fleet: Fleet, container: DockerContainer, expect: Expect) -> CheckResult:
    """The engine's ``top``: ps on the engine's host, so nothing is needed in the image."""
    try:
        top = container.get_wrapped_container().top(ps_args=PS_ARGS)
    except docker.errors.APIError as e:
        return CheckResult("processes", False, f"cannot list processes: {e.explanation or e}")
    titles = top.get("Titles") or []
    table = [dict(zip(titles, row, strict=True)) for row in top.get("Processes") or [] if len(row) == len(titles)]
    return checks.processes(table, expect, _implicit_groups(container, expect.uid))


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


def _content(container: str, problems: list[str], fleet: Fleet, expect: Expect) -> list[CheckResult]:
    """The web root against the manifest, read from the container the manifest came out of."""
    found = image_files.web_root(fleet.client, container, expect.content_root)
    return [checks.content_manifest(found, expect, problems)]


Scenario = Callable[[Fleet, Expect], list[CheckResult]]
SCENARIOS: dict[Scenario, tuple[str, ...]] = {
    _main: MAIN_CHECKS,
    _moved_port: ("listen_port", "stop"),
    _arbitrary_uid: ("arbitrary_uid",),
    _setuid_scan: ("no_setuid",),
}


def _guarded(scenario: Scenario, names: tuple[str, ...], fleet: Fleet, expect: Expect) -> list[CheckResult]:
    """A container the engine refuses to start fails that scenario's checks, not the whole run."""
    try:
        return scenario(fleet, expect)
    except docker.errors.APIError as e:
        detail = f"the engine could not run the container: {e.explanation or e}"
        return [CheckResult(n, False, detail) for n in names]
    except requests.exceptions.ConnectionError as e:
        raise DockerError(f"lost the Docker engine during the test: {e}") from e


def verify_image(
    client: docker.DockerClient,
    image_id: str,
    config: dict[str, Any],
    where: str,
    site: str | None = None,
    cancel: threading.Event | None = None,
) -> tuple[str, list[CheckResult]]:
    """The site the image's manifest names and all its checks, in report order.

    ``where`` names the image in messages; ``site``, when given, is the site the image must be
    of. Every container is removed before returning.
    """
    cancel = cancel or threading.Event()
    fleet = Fleet(client, image_id, cancel)
    pool = ThreadPoolExecutor(len(SCENARIOS) + 1, thread_name_prefix="imgforge-verify")
    try:
        files = fleet.create("files", command=["/"])
        expect, problems = read_expectations(fleet, files, config.get("Labels") or {}, where, site)
        scenarios: dict[Scenario, tuple[str, ...]] = {
            **SCENARIOS,
            functools.partial(_content, files, problems): ("content_manifest",),
        }
        results = [checks.image_config(config, expect)]
        futures = [pool.submit(_guarded, fn, names, fleet, expect) for fn, names in scenarios.items()]
        for future in futures:
            results += future.result()
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        fleet.remove_all()
    return site or expect.site, sorted(results, key=lambda r: ORDER.index(r.name) if r.name in ORDER else len(ORDER))
