"""The fleet's non-root status, computed from what kustomize renders rather than kept by hand.

The owner's audit table (UID:GID, fsGroup, read-only root, no privilege escalation, capabilities
dropped, seccomp, resources) is mostly `?` because patches change what the base says. So every
app overlay is rendered with ``kubectl kustomize`` (patches applied), many overlays per kubectl
run and several runs at once, and the table is read from the rendered pods. An app that does not
render is listed with kustomize's own error: a silently missing row would read as "fine".
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imgforge.audit.metadata import is_root_user
from imgforge.config import DEFAULT_OVERLAY_ROOT
from imgforge.errors import KustomizeFailed, UsageError
from imgforge.gitops import kustomize

CLASSES = ("hardened", "partial", "root", "linuxserver", "unknown")
# Where each workload kind keeps its pod spec.
_POD_SPEC = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}
_GOOD_SECCOMP = ("RuntimeDefault", "Localhost")


@dataclass
class ContainerRow:
    app: str
    kind: str
    workload: str
    namespace: str | None
    container: str
    init: bool
    image: str | None
    pod_uid: int | None
    pod_gid: int | None
    container_uid: int | None
    container_gid: int | None
    run_as_non_root: bool | None
    fs_group: int | None
    read_only_root: bool | None
    allow_privilege_escalation: bool | None
    capabilities_dropped: list[str]
    seccomp: str | None
    resources: dict[str, Any]
    puid_pgid: bool
    cls: str = "unknown"
    problems: list[str] = field(default_factory=list)
    # With --registry: what the image says (its config's User, its manifest digest, its audit).
    image_user: str | None = None
    image_digest: str | None = None
    image_audit: dict[str, int] | None = None
    trust: str | None = None  # with --registry and a key: signed by it, and imgforge's attestations present

    @property
    def uid(self) -> int | None:
        return self.container_uid if self.container_uid is not None else self.pod_uid

    @property
    def gid(self) -> int | None:
        return self.container_gid if self.container_gid is not None else self.pod_gid


@dataclass
class RenderFailure:
    app: str
    path: str
    error: str


@dataclass
class FleetReport:
    repo: str
    overlay_root: str
    apps: list[str]
    rows: list[ContainerRow]
    failures: list[RenderFailure]
    without_workloads: dict[str, list[str]]  # app -> kinds it renders (a HelmRelease, say)
    registry: bool = False  # images were read from their registries (--registry)
    trust: bool = False  # each image was checked against a public key (--registry with a key)
    images: list[Any] = field(default_factory=list)  # fleet_images.AuditedImage, one per digest

    def summary(self) -> dict[str, int]:
        counts = Counter(r.cls for r in self.rows if not r.init)
        return {c: counts.get(c, 0) for c in CLASSES}

    def as_dict(self) -> dict[str, Any]:
        rows = []
        for r in self.rows:
            row = asdict(r)
            row["class"] = row.pop("cls")
            rows.append(row)
        out: dict[str, Any] = {
            "repo": self.repo,
            "overlay_root": self.overlay_root,
            "apps": len(self.apps),
            "summary": self.summary(),
            "containers": rows,
            "failed": [asdict(f) for f in self.failures],
            "without_workloads": [{"app": a, "kinds": k} for a, k in self.without_workloads.items()],
        }
        if self.registry:
            out["images"] = [asdict(i) for i in self.images]
        return out


def find_overlays(repo: Path, overlay_root: str = DEFAULT_OVERLAY_ROOT) -> list[tuple[str, Path]]:
    """(app, folder) for every app folder under the overlay root that holds a kustomization."""
    root = Path(repo) / overlay_root
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder (is --repo the GitOps work tree? overlay root: {overlay_root})")
    apps = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.startswith(".") or folder.name == kustomize.GRAVEYARD:
            continue
        if any((folder / name).is_file() for name in kustomize.KUSTOMIZATION_FILES):
            apps.append((folder.name, folder))
    if not apps:
        raise UsageError(f"{root}: no app folder with a kustomization.yaml")
    return apps


def fleet_report(
    repo: str | os.PathLike[str],
    overlay_root: str = DEFAULT_OVERLAY_ROOT,
    jobs: int | None = None,
    registry: bool = False,
    trust: Callable[[str], str] | None = None,
) -> FleetReport:
    """Render every app overlay (``jobs`` renders at a time) and read each container's security
    settings; with ``registry``, also read and audit each container's image (``jobs`` at a time),
    and with ``trust`` (reference -> verdict, a worker's key check) say whether each image is signed
    by the configured key and carries imgforge's attestations."""
    overlays = find_overlays(Path(repo), overlay_root)
    kustomize.kubectl()  # fail once, before any work, when kubectl is missing
    jobs = jobs or max(2, (os.cpu_count() or 1) * 2)
    results = kustomize.render_each(overlays, jobs)
    report = FleetReport(str(repo), overlay_root, [a for a, _ in overlays], [], [], {})
    for app, folder in overlays:
        docs = results[app]
        if isinstance(docs, KustomizeFailed):
            report.failures.append(RenderFailure(app, folder.relative_to(Path(repo)).as_posix(), docs.detail))
            continue
        rows = [row for doc in docs for row in workload_rows(app, doc)]
        if rows:
            report.rows += rows
        else:
            report.without_workloads[app] = sorted({str(d.get("kind")) for d in docs})
    if registry:
        _with_images(report, jobs)
        if trust is not None:
            _with_trust(report, jobs, trust)
    return report


def _with_trust(report: FleetReport, jobs: int, trust: Callable[[str], str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    unique = sorted({r.image for r in report.rows if r.image})
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="imgforge-fleet-trust") as pool:
        verdicts = dict(zip(unique, pool.map(trust, unique), strict=True))
    report.trust = True
    for row in report.rows:
        row.trust = verdicts.get(row.image or "")


def _with_images(report: FleetReport, jobs: int) -> None:
    from imgforge.audit.fleet_images import audited_images, read_images

    facts = read_images([r.image for r in report.rows if r.image], jobs)
    report.registry = True
    report.images = audited_images(facts)
    for row in report.rows:
        fact = facts.get(row.image or "")
        if fact is None:
            continue
        if fact.audit is None:
            row.problems.append(fact.note or "image not read")
            continue
        row.image_user, row.image_digest = fact.audit.user, fact.audit.digest
        row.image_audit = fact.audit.summary()
        _judge_image_user(row)


def _judge_image_user(row: ContainerRow) -> None:
    """What the image's USER means for a row whose manifests do not set ``runAsUser``."""
    user = row.image_user
    if row.uid is not None or user is None or row.cls == "linuxserver":
        return
    if is_root_user(user):
        if row.run_as_non_root:
            row.problems.append("runAsNonRoot: true, but the image runs as root: the kubelet refuses to start it")
        else:
            row.cls = "root"
            row.problems = ["the image runs as root and nothing sets runAsUser"]
    elif not user.split(":")[0].isdigit() and row.run_as_non_root:
        row.problems.append(f"image USER {user} is not numeric: the kubelet cannot verify runAsNonRoot, refuses")


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def workload_rows(app: str, doc: dict[str, Any]) -> list[ContainerRow]:
    """One row per container (init containers included) of a rendered workload; [] for other kinds."""
    kind = doc.get("kind")
    if kind not in _POD_SPEC:
        return []
    spec = _get(doc, *_POD_SPEC[kind]) or {}
    pod = spec.get("securityContext") or {}
    rows = []
    for init, key in ((True, "initContainers"), (False, "containers")):
        for c in spec.get(key) or []:
            sc = c.get("securityContext") or {}
            env = {e.get("name") for e in c.get("env") or [] if isinstance(e, dict)}
            row = ContainerRow(
                app=app,
                kind=kind,
                workload=_get(doc, "metadata", "name") or "?",
                namespace=_get(doc, "metadata", "namespace"),
                container=c.get("name") or "?",
                init=init,
                image=c.get("image"),
                pod_uid=pod.get("runAsUser"),
                pod_gid=pod.get("runAsGroup"),
                container_uid=sc.get("runAsUser"),
                container_gid=sc.get("runAsGroup"),
                run_as_non_root=_first(sc.get("runAsNonRoot"), pod.get("runAsNonRoot")),
                fs_group=pod.get("fsGroup"),
                read_only_root=sc.get("readOnlyRootFilesystem"),
                allow_privilege_escalation=sc.get("allowPrivilegeEscalation"),
                capabilities_dropped=[str(x) for x in _get(sc, "capabilities", "drop") or []],
                seccomp=_first(_get(sc, "seccompProfile", "type"), _get(pod, "seccompProfile", "type")),
                resources={k: v for k, v in (c.get("resources") or {}).items() if k in ("requests", "limits") and v},
                puid_pgid=bool(env & {"PUID", "PGID"}),
            )
            row.cls, row.problems = classify(row, privileged=bool(sc.get("privileged")))
            rows.append(row)
    return rows


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def classify(row: ContainerRow, privileged: bool = False) -> tuple[str, list[str]]:
    """hardened / partial / root / linuxserver / unknown, and what is wrong with the row.

    hardened = Pod Security "restricted" (non-root, no privilege escalation, drop ALL, seccomp
    RuntimeDefault or Localhost) plus a read-only root filesystem. LinuxServer.io images start as
    root and drop to PUID/PGID themselves, so they are a class of their own and must not get runAsUser.
    """
    problems = []
    linuxserver = row.puid_pgid or "linuxserver/" in (row.image or "")
    if linuxserver:
        if row.uid is not None:
            problems.append("runAsUser on a LinuxServer.io image: it must start as root and use PUID/PGID")
        if row.run_as_non_root:
            problems.append("runAsNonRoot on a LinuxServer.io image: its init runs as root")
        return "linuxserver", problems
    non_root = (row.uid is not None and row.uid > 0) or (row.run_as_non_root is True and row.uid != 0)
    checks = {
        "runs as non-root": non_root,
        "allowPrivilegeEscalation: false": row.allow_privilege_escalation is False,
        "capabilities drop ALL": "ALL" in row.capabilities_dropped,
        "seccomp RuntimeDefault": row.seccomp in _GOOD_SECCOMP,
        "readOnlyRootFilesystem: true": row.read_only_root is True,
    }
    if row.uid == 0 or privileged:
        return "root", ["privileged container" if privileged else "runAsUser: 0"]
    if all(checks.values()):
        return "hardened", problems
    missing = [name for name, ok in checks.items() if not ok]
    anything_set = (
        any(checks.values())
        or row.gid is not None
        or row.fs_group is not None
        or row.run_as_non_root is not None
        or row.read_only_root is not None
        or row.allow_privilege_escalation is not None
        or row.seccomp is not None
    )
    if not anything_set:
        return "unknown", ["no securityContext: the image decides who it runs as"]
    return "partial", ["missing: " + ", ".join(missing)]


# ---------------------------------------------------------------------------------------- output

_HEADER = (
    "App",
    "Workload",
    "Container",
    "Image",
    "UID:GID",
    "runAsNonRoot",
    "fsGroup",
    "readOnlyRoot",
    "noPrivEsc",
    "capDrop",
    "seccomp",
    "resources",
    "Class",
    "Notes",
)


def _cell(value: object) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _ids(row: ContainerRow) -> str:
    if row.uid is None and row.gid is None:
        if row.image_user is not None:  # --registry: the image decides, and now we know how
            return f"{row.image_user or 'root'} (image)"
        return "?"
    text = f"{'?' if row.uid is None else row.uid}:{'?' if row.gid is None else row.gid}"
    at_container = row.container_uid is not None or row.container_gid is not None
    return text + (" (ctr)" if at_container else " (pod)")


def _yes_no(value: bool | None, good: bool) -> str:
    return "-" if value is None else ("yes" if value is good else "no")


def _resources(res: dict[str, Any]) -> str:
    parts = [name[:3] if name == "requests" else "lim" for name in ("requests", "limits") if res.get(name)]
    return "+".join(parts) or "-"


def _audit_cell(row: ContainerRow) -> str:
    if row.image_audit is None:
        return "-"
    return f"{row.image_audit['error']} errors, {row.image_audit['warning']} warnings"


def to_markdown(report: FleetReport) -> str:
    """The owner's audit table, one row per container, then failures and apps without pods; with
    ``--registry`` an ``Image audit`` column and the list of images read, one per digest."""
    extra = (["Image audit"] if report.registry else []) + (["Trust"] if report.trust else [])
    header = [*_HEADER[:-2], *extra, *_HEADER[-2:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in report.rows:
        cells: list[object] = [
            r.app,
            f"{r.kind}/{r.workload}",
            r.container + (" (init)" if r.init else ""),
            r.image,
            _ids(r),
            _yes_no(r.run_as_non_root, True),
            r.fs_group,
            _yes_no(r.read_only_root, True),
            _yes_no(r.allow_privilege_escalation, False),
            ",".join(r.capabilities_dropped),
            r.seccomp,
            _resources(r.resources),
            *([_audit_cell(r)] if report.registry else []),
            *([r.trust] if report.trust else []),
            r.cls,
            "; ".join(r.problems),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    summary = ", ".join(f"{n} {c}" for c, n in report.summary().items())
    out = [
        f"# Fleet audit: {len(report.apps)} apps under {report.overlay_root}",
        "",
        f"Containers: {summary}.",
        "",
        *lines,
    ]
    if report.registry:
        out += ["", "## Images read from their registries", "", "| Digest | USER | errors | warnings | References |"]
        out += ["|---|---|---|---|---|"]
        out += [
            f"| {_cell(i.digest[:19])} | {_cell(i.user or 'root')} | {i.summary['error']} | {i.summary['warning']} "
            f"| {_cell(', '.join(i.references))} |"
            for i in report.images
        ]
    if report.failures:
        out += ["", "## Apps that failed to render", "", "| App | Overlay | kustomize error |", "|---|---|---|"]
        out += [f"| {_cell(f.app)} | {_cell(f.path)} | {_cell(f.error)} |" for f in report.failures]
    if report.without_workloads:
        out += ["", "## Apps without pods (nothing to audit here)", ""]
        out += [f"- {app}: {', '.join(kinds) or 'no objects'}" for app, kinds in report.without_workloads.items()]
    return "\n".join(out) + "\n"
