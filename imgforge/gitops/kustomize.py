"""Proof by rendering: ``kubectl kustomize`` before and after, and the checks on the result.

Source edits are only a means; what Flux applies is the rendered manifest. So every plan is
rendered twice. The "before" render runs on the work tree itself (kustomize only reads). The
"after" render runs on a temporary copy of the kustomization folders involved, with the planned
texts written into it, so a failing proof never leaves a trace in the user's repo. The checks are
the conditions ``imgforge test`` ran the image under: the new image, the securityContext, the
``/tmp`` emptyDir, and exactly one container port carrying the new number. Any other rendered
object that changed is also a failure: a tag bump must not move a Service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgforge.errors import GitopsError
from imgforge.gitops.patch import Keyed

KUSTOMIZE_TIMEOUT = 120
TMP_SIZE = "16Mi"


class KustomizeFailed(GitopsError):
    def __init__(self, where: str, detail: str):
        super().__init__(f"kubectl kustomize {where} failed: {detail}")


class ProofFailed(GitopsError):
    def __init__(self, app: str, reasons: list[str]):
        super().__init__(f"{app}: the patched overlay does not render as planned, nothing written: "
                         + "; ".join(reasons))
        self.reasons = reasons


def _load_all(text: str) -> list[dict]:
    try:  # PyYAML's libyaml loader is ~10x faster than pure Python on large renders
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return [d for d in yaml.load_all(text, Loader=loader) if d]
    except ImportError:
        from ruamel.yaml import YAML

        return [d for d in YAML(typ="safe").load_all(text) if d]


class Pending:
    """A ``kubectl kustomize`` running in the background while the caller parses files."""

    def __init__(self, overlay: Path, label: str | None = None):
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise GitopsError("kubectl not found on PATH; it is needed to prove GitOps changes "
                              "(kubectl kustomize)")
        self.label = label or str(overlay)
        self.proc = subprocess.Popen([kubectl, "kustomize", str(overlay)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def result(self) -> list[dict]:
        try:
            out, err = self.proc.communicate(timeout=KUSTOMIZE_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            self.cancel()
            raise KustomizeFailed(self.label, f"timed out after {KUSTOMIZE_TIMEOUT}s") from e
        if self.proc.returncode != 0:
            detail = " ".join(ln.strip() for ln in err.splitlines() if ln.strip())
            detail = detail.removeprefix("error: ").removeprefix("Error: ")
            raise KustomizeFailed(self.label, (detail[:400] + " …" if len(detail) > 400 else detail)
                                  or f"exit {self.proc.returncode}")
        return _load_all(out)

    def cancel(self) -> None:
        self.proc.kill()
        self.proc.communicate()


def render(overlay: Path, label: str | None = None) -> list[dict]:
    """Objects rendered by ``kubectl kustomize overlay`` (no network: remote bases fail here)."""
    return Pending(overlay, label).result()


def render_changed(overlay: Path, folders: list[Path], texts: dict[Path, str], label: str) -> list[dict]:
    """Render ``overlay`` from a temporary copy of ``folders`` with ``texts`` written over it.

    Kustomize only reads files inside each kustomization's own folder (its load restrictor), and
    bases are other kustomization folders, so copying every folder of the graph is enough. The
    copy keeps the folders' positions relative to each other, so relative references still work.
    """
    with tempfile.TemporaryDirectory(prefix="imgforge-kustomize-") as tmp:
        mirror = _mirror(Path(tmp), [(overlay, folders, texts)])
        return render(mirror(overlay), label)


def render_many(jobs: list[tuple[Path, list[Path], dict[Path, str]]]) -> list[list[dict]]:
    """Render many overlays (each ``(overlay, folders, texts)``) with ONE kustomize run.

    Each overlay is wrapped in a kustomization that stamps its objects with a private annotation;
    the result is split on it and the annotation removed again. Raises ``GitopsError`` whenever
    the batch cannot be built (e.g. two overlays render the same object): callers fall back.
    """
    if not jobs:
        return []
    with tempfile.TemporaryDirectory(prefix="imgforge-kustomize-") as tmp:
        mirror = _mirror(Path(tmp), jobs)
        batch = Path(tmp) / "imgforge-batch"
        for i, (overlay, _, _) in enumerate(jobs):
            wrap = batch / str(i)
            wrap.mkdir(parents=True)
            (wrap / "kustomization.yaml").write_text(
                f"resources:\n  - {os.path.relpath(mirror(overlay), wrap)}\n"
                f"commonAnnotations:\n  {BATCH_ANNOTATION}: '{i}'\n", encoding="utf-8")
        (batch / "kustomization.yaml").write_text(
            "resources:\n" + "".join(f"  - '{i}'\n" for i in range(len(jobs))), encoding="utf-8")
        objects = render(batch, f"{len(jobs)} overlays (batch)")
    out: list[list[dict]] = [[] for _ in jobs]
    for obj in objects:
        index = _strip_batch_annotation(obj)
        if index is None:
            raise GitopsError("batch render lost an object's overlay")
        out[int(index)].append(obj)
    return out


BATCH_ANNOTATION = "imgforge.invalid/batch-index"


def _strip_batch_annotation(node: Any) -> str | None:
    """Remove the batch annotation everywhere kustomize put it; returns its value."""
    found = None
    if isinstance(node, dict):
        notes = node.get("annotations")
        if isinstance(notes, dict) and BATCH_ANNOTATION in notes:
            found = notes.pop(BATCH_ANNOTATION)
            if not notes:
                del node["annotations"]
        for value in list(node.values()):
            found = _strip_batch_annotation(value) or found
    elif isinstance(node, list):
        for value in node:
            found = _strip_batch_annotation(value) or found
    return found


def _mirror(tmp: Path, jobs: list[tuple[Path, list[Path], dict[Path, str]]]):
    """Copy the jobs' folders under ``tmp`` (relative layout kept); returns path → mirrored path."""
    paths = [p.resolve() for overlay, folders, texts in jobs for p in [overlay, *folders, *texts]]
    common = Path(os.path.commonpath([str(p) for p in paths]))
    folders = {f.resolve() for overlay, fs, _ in jobs for f in [overlay, *fs]}
    root = tmp / "tree"
    for folder in _outermost(sorted(folders)):
        shutil.copytree(folder, root / folder.relative_to(common), symlinks=True, copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns(".git"), dirs_exist_ok=True)
    for _, _, texts in jobs:
        for path, text in texts.items():
            dest = root / path.resolve().relative_to(common)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)  # never write through a hard link into the user's repo
            dest.write_text(text, encoding="utf-8")
    return lambda p: root / Path(p).resolve().relative_to(common)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link (kustomize only reads the mirror); copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _outermost(folders: list[Path]) -> list[Path]:
    out: list[Path] = []
    for f in folders:
        if not any(f.is_relative_to(o) for o in out):
            out.append(f)
    return out


@dataclass
class Expectation:
    """What the rendered Deployment must carry after the change."""

    deployment: str
    container: str
    image: str
    port: int
    old_port: int | None
    pod_security: dict[str, Any] = field(default_factory=dict)
    container_security: dict[str, Any] = field(default_factory=dict)
    tmp_empty_dir: bool = False


def find_deployment(objects: list[dict], name: str) -> dict | None:
    return next((o for o in objects if o.get("kind") == "Deployment"
                 and (o.get("metadata") or {}).get("name") == name), None)


def containers_of(deployment: dict) -> list[dict]:
    return ((((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []


def check(before: list[dict], after: list[dict], want: Expectation) -> list[str]:
    """Reasons the ``after`` render is not what was planned (empty when the proof holds)."""
    deploy = find_deployment(after, want.deployment)
    if deploy is None:
        return [f"Deployment {want.deployment} is missing from the rendered output"]
    container = next((c for c in containers_of(deploy) if c.get("name") == want.container), None)
    if container is None:
        return [f"container {want.container} is missing from Deployment {want.deployment}"]
    reasons: list[str] = []
    if container.get("image") != want.image:
        reasons.append(f"image is {container.get('image')!r}, expected {want.image!r}")
    pod = deploy["spec"]["template"]["spec"]
    reasons += _subset("pod securityContext", pod.get("securityContext") or {}, want.pod_security)
    reasons += _subset("container securityContext", container.get("securityContext") or {},
                       want.container_security)
    if want.tmp_empty_dir and not has_tmp_empty_dir(pod, container):
        reasons.append("no emptyDir volume mounted at /tmp")
    ports = [p.get("containerPort") for p in container.get("ports") or []]
    if ports.count(want.port) != 1:
        reasons.append(f"container ports are {ports}, expected exactly one {want.port}")
    if want.old_port is not None and want.old_port != want.port and want.old_port in ports:
        reasons.append(f"old port {want.old_port} is still declared (ports {ports})")
    names = [p.get("name") for p in container.get("ports") or [] if p.get("name")]
    if len(names) != len(set(names)):
        reasons.append(f"duplicate port names {names}")
    for probe, port in probe_ports(container).items():
        if isinstance(port, int) and want.old_port is not None and port == want.old_port != want.port:
            reasons.append(f"{probe} still points at port {port}")
    old = find_deployment(before, want.deployment)
    others_before = [o for o in before if o is not old]
    others_after = [o for o in after if o is not deploy]
    if others_before != others_after:
        changed = sorted({_ident(o) for o in others_after if o not in others_before}
                         | {_ident(o) for o in others_before if o not in others_after})
        reasons.append(f"other objects changed: {', '.join(changed)}")
    return reasons


def wanted_security(uid: int, gid: int, read_only_root: bool, level: str) -> tuple[dict, dict, bool]:
    """(pod securityContext, container securityContext, /tmp emptyDir?) for a level; see docs/gitops.md."""
    pod: dict[str, Any] = {"runAsUser": uid, "runAsGroup": gid}
    ctr: dict[str, Any] = {}
    if level == "restricted":
        pod |= {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        ctr = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        if read_only_root:
            ctr["readOnlyRootFilesystem"] = True
    return pod, ctr, level == "restricted" and read_only_root


def security_delta(pod: dict, container: dict, want_pod: dict, want_ctr: dict, want_tmp: bool,
                    name: str) -> tuple[dict, list[str]]:
    """The strategic-merge fragment of ``spec.template.spec`` still missing, and its description."""
    notes: list[str] = []
    have_pod = pod.get("securityContext") or {}
    have_ctr = container.get("securityContext") or {}
    pod_missing = _missing(have_pod, want_pod, "pod", notes)
    # A container-level value overrides the pod's: a stray runAsUser: 0 there would undo it all.
    override = {k: v for k, v in want_pod.items() if k in have_ctr and k.startswith("runAs")}
    ctr_missing = _missing(have_ctr, {**override, **want_ctr}, "container", notes)
    if "capabilities" in ctr_missing and "ALL" in ((have_ctr.get("capabilities") or {}).get("drop") or []):
        del ctr_missing["capabilities"]
        notes = [n for n in notes if "capabilities" not in n]
    fragment: dict[str, Any] = {}
    item: dict[str, Any] = {"name": name}
    if pod_missing:
        fragment["securityContext"] = pod_missing
    if ctr_missing:
        item["securityContext"] = ctr_missing
    if want_tmp and not has_tmp_empty_dir(pod, container):
        taken = {v.get("name") for v in pod.get("volumes") or []}
        volume = "tmp" if "tmp" not in taken else "imgforge-tmp"
        item["volumeMounts"] = Keyed("mountPath", [{"name": volume, "mountPath": "/tmp"}])
        fragment["volumes"] = Keyed("name", [{"name": volume, "emptyDir": {"sizeLimit": TMP_SIZE}}])
        notes.append(f"emptyDir {volume} ({TMP_SIZE}) mounted at /tmp")
    if len(item) > 1:
        fragment["containers"] = Keyed("name", [item])
    return fragment, notes


def _missing(have: dict, want: dict, where: str, notes: list[str]) -> dict:
    out = {}
    for key, value in want.items():
        current = have.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            if all(current.get(k) == v for k, v in value.items()):
                continue
        elif current == value and type(current) is type(value):
            continue
        out[key] = value
        shown = _show(value)
        notes.append(f"{where} {key}: {_show(current)} → {shown}" if current is not None else f"{where} {key}: {shown}")
    return out


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _subset(what: str, have: dict, want: dict) -> list[str]:
    out = []
    for key, value in want.items():
        if isinstance(value, dict) and isinstance(have.get(key), dict):
            out += _subset(f"{what}.{key}", have[key], value)
        elif have.get(key) != value:
            out.append(f"{what}.{key} is {have.get(key)!r}, expected {value!r}")
    return out


def has_tmp_empty_dir(pod: dict, container: dict) -> bool:
    mount = next((m for m in container.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"), None)
    if mount is None:
        return False
    volume = next((v for v in pod.get("volumes") or [] if v.get("name") == mount.get("name")), None)
    return volume is not None and "emptyDir" in volume


PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
PROBE_HANDLERS = ("httpGet", "tcpSocket", "grpc")


def probe_ports(container: dict) -> dict[str, Any]:
    """``{"livenessProbe.httpGet": 80, ...}`` for every probe that names a port."""
    out = {}
    for probe in PROBES:
        for handler in PROBE_HANDLERS:
            port = ((container.get(probe) or {}).get(handler) or {}).get("port")
            if port is not None:
                out[f"{probe}.{handler}"] = port
    return out


def _ident(obj: dict) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
