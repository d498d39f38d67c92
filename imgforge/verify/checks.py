"""The runtime checks: each one a small named function that turns observations into a CheckResult.

Checks never start containers themselves (runner.py does, several at once); they get a loopback
HTTP client on a published port, the image's inspect data, a process table, a log text or the
files of the web root. What a check expects comes from ``Expect``, read from the content manifest
the image carries (written by the same build that rendered its templates), never from a catalog:
a check and the image can only disagree when the image is not what its build made.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from typing import Any

from imgforge import render
from imgforge._fs import shown
from imgforge.listing import is_hidden
from imgforge.verify.expect import Expect
from imgforge.verify.http import LOOPBACK, Http, Response, try_get, url_path
from imgforge.verify.image_files import WebFile

__all__ = [
    "LOOPBACK",
    "CheckResult",
    "Expect",
    "Http",
    "Response",
    "VerifyReport",
    "is_hidden",
    "try_get",
    "url_path",
]

OPENSHIFT_USER = "1000680000:0"  # an arbitrary UID in group 0, as OpenShift's restricted SCC assigns
MOVED_PORT = 9090

_ASSET = re.compile(rf"\.(?:{'|'.join(render.ASSET_EXTENSIONS)})$", re.IGNORECASE)
_BAD_LOG = re.compile(r"\[(emerg|alert|crit)\]")
_VERSION = re.compile(r"\d+\.\d+")
# Media types a browser handles correctly, by extension (nginx's stock mime.types gives these).
CONTENT_TYPES = {
    "html": {"text/html"},
    "htm": {"text/html"},
    "css": {"text/css"},
    "js": {"application/javascript", "text/javascript"},
    "mjs": {"application/javascript", "text/javascript"},
    "svg": {"image/svg+xml"},
    "png": {"image/png"},
    "woff2": {"font/woff2"},
    "woff": {"font/woff", "application/font-woff"},
    "jpg": {"image/jpeg"},
    "jpeg": {"image/jpeg"},
    "gif": {"image/gif"},
    "webp": {"image/webp"},
    "ico": {"image/x-icon", "image/vnd.microsoft.icon"},
    "json": {"application/json"},
    "txt": {"text/plain"},
    "pdf": {"application/pdf"},
}
# Paths that must never be served whatever the content holds (most exist in no image: a 200 means
# a catch-all handed out something it should not).
HIDDEN_PROBES = ("/.git/config", "/.git/HEAD", "/.env", "/.htaccess", "/index.php", "/wp-config.php")
# Raw request targets (sent unnormalised) that try to leave the web root, plain and encoded.
TRAVERSAL_PROBES = (
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2fetc/passwd",
    "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/..%252f..%252fetc/passwd",
    "/..%5c..%5cetc%5cpasswd",
    "/.%2e/.%2e/etc/passwd",
    "/static/../../../etc/passwd",
    "//etc/passwd",
    "/./etc/passwd",
    "/etc/passwd",
    "/../../etc/nginx/nginx.conf",
    "/etc/nginx/nginx.conf",
    "/../../proc/self/environ",
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VerifyReport:
    site: str
    image: str
    image_id: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "image": self.image,
            "image_id": self.image_id,
            "checks": [c.to_dict() for c in self.checks],
            "ok": self.ok,
        }


# --- image metadata ---------------------------------------------------------------------------


def image_config(config: dict[str, Any], expect: Expect) -> CheckResult:
    """Kubernetes runAsNonRoot can only verify a numeric USER; the port and signal must match too."""
    port = expect.port
    problems = []
    user = config.get("User") or ""
    if user != expect.user:
        why = (
            "not numeric: runAsNonRoot cannot verify it"
            if not re.fullmatch(r"[0-9:]+", user)
            else f"expected {expect.user}"
        )
        problems.append(f"User {user or '(unset, root)'!r} {why}")
    if f"{port}/tcp" not in (config.get("ExposedPorts") or {}):
        problems.append(f"{port}/tcp not in ExposedPorts {sorted(config.get('ExposedPorts') or {})}")
    env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
    if env.get("LISTEN_PORT") != str(port):
        problems.append(f"Env LISTEN_PORT={env.get('LISTEN_PORT', '(unset)')}, expected {port}")
    if (config.get("StopSignal") or "SIGTERM").upper() not in ("SIGQUIT", "QUIT", "3"):
        problems.append(f"StopSignal {config.get('StopSignal') or '(unset: SIGTERM)'}, expected SIGQUIT")
    return _result("image_config", problems, f"User {user}, {port}/tcp exposed, LISTEN_PORT={port}, StopSignal SIGQUIT")


def content_manifest(found: dict[str, WebFile] | str, expect: Expect, problems: list[str]) -> CheckResult:
    """The web root holds exactly the manifest's served files, byte for byte, and nothing else.

    ``found`` is what the image's web root holds (or why it could not be read); ``problems`` are
    what the runner found wrong with the manifest itself (its label, the site it names).
    """
    problems = list(problems)
    if isinstance(found, str):
        problems.append(found)
        found = {}
    elif not found:
        problems.append(f"{expect.content_root} holds no file")
    hidden = set(expect.hidden)
    missing = [rel for rel in expect.served if rel not in found]
    changed = [
        rel
        for rel in expect.served
        if (seen := found.get(rel)) is not None
        and seen.kind == "file"
        and (seen.sha256, seen.size) != (expect.hashes[rel], expect.sizes[rel])
    ]
    files = sorted(rel for rel, seen in found.items() if seen.kind == "file")
    odd = [f"{_web(rel)} ({seen.detail})" for rel, seen in sorted(found.items()) if seen.kind != "file"]
    present = [rel for rel in files if rel in hidden]
    extra = [rel for rel in files if rel not in expect.hashes and rel not in hidden]
    for what, names in (
        ("missing", [_web(r) for r in missing]),
        ("other bytes than the manifest's", [_web(r) for r in changed]),
        ("not a regular file", odd),
        ("left out by the build but present", [_web(r) for r in present]),
        ("not in the manifest", [_web(r) for r in extra]),
    ):
        if names:
            problems.append(f"{what}: {_some(names)}")
    return _result(
        "content_manifest",
        problems,
        f"{expect.content_root} holds exactly the {len(expect.served)} files of the manifest "
        f"(sha256 and size), none of the {len(expect.hidden)} left out",
    )


def no_setuid(found: list[str]) -> CheckResult:
    """A setuid/setgid file is a way back to root for anything that runs in the container."""
    return _result(
        "no_setuid",
        [f"setuid/setgid: {_some(found)}"] if found else [],
        "no setuid or setgid file in the image",
    )


# --- the running container ----------------------------------------------------------------------


def processes(table: list[dict[str, str]], expect: Expect, implicit: AbstractSet[str] = frozenset()) -> CheckResult:
    """Every process must hold exactly the catalog's UID and GID: no root UID, no root group.

    ``implicit`` are the groups the image's /etc/group gives the UID: containerd and CRI-O add
    them even when runAsGroup is set (KEP-3619), where ``docker run --user uid:gid`` does not.
    """
    uid, gid = str(expect.uid), str(expect.gid)
    if not table:
        return CheckResult("processes", False, "no process found in the container")
    problems = []
    for proc in table:
        uids = {proc.get(k, "?") for k in ("RUID", "EUID", "SUID", "FSUID")}
        gids = {proc.get(k, "?") for k in ("RGID", "EGID", "SGID", "FSGID")}
        extra = {g for g in (proc.get("SUPGID") or "-").split(",") if g not in ("-", "", gid)} | (set(implicit) - {gid})
        if uids != {uid} or gids != {gid} or extra:
            problems.append(
                f"pid {proc.get('PID')} {proc.get('COMMAND', '')}: uids {sorted(uids)} "
                f"gids {sorted(gids)}" + (f" supplementary groups {sorted(extra)}" if extra else "")
            )
    if implicit - {gid}:
        problems.append(f"/etc/group lists UID {uid} in groups {sorted(implicit - {gid})}: Kubernetes adds them")
    return _result("processes", problems[:3], f"{len(table)} processes, all {uid}:{gid}, no supplementary group")


def implicit_groups(passwd: str, group: str, uid: int) -> set[str]:
    """GIDs of the /etc/group entries that list the user name owning ``uid`` as a member."""
    names = {f[0] for f in (line.split(":") for line in passwd.splitlines()) if len(f) > 2 and f[2] == str(uid)}
    out = set()
    for fields in (line.split(":") for line in group.splitlines()):
        if len(fields) > 3 and names & set(fields[3].split(",")):
            out.add(fields[2])
    return out


def startup_logs(log: str) -> CheckResult:
    bad = [line.strip() for line in log.splitlines() if _BAD_LOG.search(line)]
    return _result("startup_logs", bad[:3], "no emerg, alert or crit line in the log")


def stop(elapsed: float | None, exit_code: int | None, limit: float) -> CheckResult:
    """SIGQUIT is nginx's graceful stop; a PID 1 that drops it is killed after the grace period."""
    if elapsed is None:
        return CheckResult("stop", False, f"still running {limit:.0f} s after SIGQUIT")
    problems = [f"exit code {exit_code} after SIGQUIT"] if exit_code != 0 else []
    return _result("stop", problems, f"SIGQUIT stopped it in {elapsed:.2f} s, exit code 0")


# --- HTTP ---------------------------------------------------------------------------------------


def content_served(got: dict[str, Response | Exception], expect: Expect) -> CheckResult:
    """Every servable content file, byte for byte (a hash compare), at its own path."""
    problems = []
    for rel in expect.served:
        resp = got[url_path(rel)]
        if isinstance(resp, Exception):
            problems.append(f"/{rel}: {type(resp).__name__}: {resp}")
        elif resp.status != 200:
            problems.append(f"/{rel}: HTTP {resp.status}")
        elif resp.sha != expect.hashes[rel]:
            problems.append(f"/{rel}: served bytes differ (sha256 {resp.sha[:12]}…, file {expect.hashes[rel][:12]}…)")
    if not expect.served:
        problems.append("the content folder holds no servable file")
    return _result("content_served", problems, f"{len(expect.served)} files served with identical sha256")


def content_types(got: dict[str, Response | Exception], expect: Expect) -> CheckResult:
    """A wrong type breaks pages outright under X-Content-Type-Options: nosniff."""
    problems, checked = [], 0
    for rel in expect.served:
        wanted = CONTENT_TYPES.get(rel.rsplit(".", 1)[-1].lower()) if "." in rel else None
        resp = got[url_path(rel)]
        if wanted is None or isinstance(resp, Exception) or resp.status != 200:
            continue  # unknown extension, or not served: content_served reports that
        checked += 1
        if resp.media_type not in wanted:
            problems.append(
                f"/{rel}: Content-Type {resp.media_type or '(none)'!r}, expected {' or '.join(sorted(wanted))}"
            )
    return _result("content_types", problems, f"{checked} files with a sensible Content-Type")


def missing_path(web: Http, expect: Expect, token: str) -> CheckResult:
    probes = [f"/imgforge-missing-{token}", f"/imgforge-missing-{token}/deeper/page.html"]
    fallback = expect.fallback_sha()
    problems = []
    for path in probes:
        resp = try_get(web, path)
        if isinstance(resp, str):
            problems.append(resp)
        elif fallback is not None and (resp.status != 200 or resp.sha != fallback):
            problems.append(f"{path}: HTTP {resp.status}, expected 200 with index.html (SPA fallback)")
        elif fallback is None and resp.status != 404:
            problems.append(f"{path}: HTTP {resp.status}, expected 404")
    want = "200 with index.html (SPA)" if fallback else "404"
    return _result("missing_path", problems, f"missing paths give {want}")


def hidden_files(web: Http, expect: Expect) -> CheckResult:
    """Dotfiles, .git/ and server-side source: never a 200 other than the SPA fallback page."""
    allowed = {expect.fallback_sha()} - {None}
    paths = [url_path(rel) for rel in expect.hidden] + [
        p for p in HIDDEN_PROBES if p not in map(url_path, expect.hidden)
    ]
    problems = []
    for path, resp in web.get_many(paths).items():
        if isinstance(resp, Exception):
            problems.append(f"{path}: {type(resp).__name__}: {resp}")
        elif resp.status == 200 and resp.sha not in allowed:
            problems.append(f"{path}: served (HTTP 200, {len(resp.body)} bytes)")
    return _result(
        "hidden_files",
        problems,
        f"none served of {len(expect.hidden)} hidden content file(s) and {len(HIDDEN_PROBES)} probes",
    )


def path_traversal(web: Http, expect: Expect) -> CheckResult:
    """A 200 whose body is not a content file means a file from outside the web root."""
    content = set(expect.hashes.values())
    problems = []
    for path, resp in web.get_many(list(TRAVERSAL_PROBES)).items():
        if isinstance(resp, Exception):
            problems.append(f"{path}: {type(resp).__name__}: {resp}")
        elif resp.status == 200 and resp.sha not in content:
            head = resp.body[:40].decode("utf-8", "replace").replace("\n", "\\n")
            problems.append(f"{path}: HTTP 200 with a file from outside the web root ({head!r}…)")
    return _result("path_traversal", problems, f"{len(TRAVERSAL_PROBES)} traversal probes returned no outside file")


def healthz(web: Http) -> CheckResult:
    resp = try_get(web, "/healthz")
    if isinstance(resp, str):
        return CheckResult("healthz", False, resp)
    ok = resp.status == 200 and resp.body.strip() == b"ok"
    return CheckResult(
        "healthz",
        ok,
        "/healthz: 200 ok" if ok else f"/healthz: HTTP {resp.status}, body {resp.body[:40]!r} (expected 200 'ok')",
    )


def server_header(samples: dict[str, Response]) -> CheckResult:
    """A version in Server tells scanners which CVEs to try."""
    problems = [
        f"{path}: Server: {r.headers['server']}"
        for path, r in samples.items()
        if _VERSION.search(r.headers.get("server", ""))
    ]
    shown = {r.headers.get("server", "(none)") for r in samples.values()}
    return _result("server_header", problems[:1], f"Server: {', '.join(sorted(shown))} (no version)")


def security_headers(samples: dict[str, Response], expect: Expect) -> CheckResult:
    """On pages, assets and error responses alike (add_header is not inherited into a location
    that sets its own, the classic way assets lose them)."""
    wanted = expect.headers
    problems = []
    for path, resp in samples.items():
        for name, value in wanted:
            got = resp.headers.get(name.lower())
            if got != value:
                problems.append(f"{path} (HTTP {resp.status}): {name}: {got or '(missing)'}, expected {value!r}")
    return _result("security_headers", problems[:4], f"{', '.join(n for n, _ in wanted)} on {len(samples)} responses")


def header_samples(web: Http, expect: Expect, got: dict[str, Response | Exception], token: str) -> dict[str, Response]:
    """A page, an asset and an error response: each location of site.conf answers once."""
    assets = [url_path(r) for r in expect.served if _ASSET.search(r)]
    fetched = {p: got.get(p) or try_get(web, p) for p in ["/", *assets[:1], f"/imgforge-missing-{token}.css"]}
    return {path: resp for path, resp in fetched.items() if isinstance(resp, Response)}


def listen_port(moved: int, answered_moved: bool, answered_old: str | None, old: int) -> CheckResult:
    problems = []
    if not answered_moved:
        problems.append(f"LISTEN_PORT={moved}: no HTTP answer on {moved}")
    if answered_old:
        problems.append(f"LISTEN_PORT={moved}: the old port {old} still answers ({answered_old})")
    return _result("listen_port", problems, f"LISTEN_PORT={moved} serves on {moved} (read-only root), nothing on {old}")


def arbitrary_uid(resp: Response | str, expect: Expect) -> CheckResult:
    """OpenShift runs an arbitrary UID with GID 0: files must not depend on owning the UID."""
    page = expect.index or (expect.served[0] if expect.served else "")
    if isinstance(resp, str):
        return CheckResult("arbitrary_uid", False, f"as {OPENSHIFT_USER}: {resp}")
    bad = resp.status != 200 or (page and resp.sha != expect.hashes[page])
    return _result(
        "arbitrary_uid",
        [f"as {OPENSHIFT_USER}: /{page}: HTTP {resp.status}, not the content file"] if bad else [],
        f"as {OPENSHIFT_USER}: /{page} served",
    )


# --- helpers ------------------------------------------------------------------------------------


def _web(rel: str) -> str:
    """A web-root path for a detail, quoted whole: one line whatever bytes an image's file name holds."""
    return shown("/" + rel)


def _some(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (f" (+{len(names) - most} more)" if len(names) > most else "")


def _result(name: str, problems: list[str], ok_detail: str) -> CheckResult:
    if problems:
        return CheckResult(name, False, "; ".join(problems))
    return CheckResult(name, True, ok_detail)
