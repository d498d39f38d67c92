"""Pod Security policy for a site's Deployment, and the proof that a render carries it.

What ``imgforge test`` ran the image under (numeric user and group, non-root, no privilege
escalation, all capabilities dropped, RuntimeDefault seccomp, a read-only root with an emptyDir at
``/tmp``, one container port) is what the overlay must give the Deployment. This module says which
settings a level wants, what is missing from a rendered pod, and whether a rendered "after" holds
exactly the planned change; it reads rendered objects only and never runs kustomize.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imgforge.errors import GitopsError, UsageError
from imgforge.gitops.patch import Keyed

TMP_SIZE = "16Mi"
LEVELS = ("minimal", "restricted")


def check_level(level: str) -> str:
    """The one check of a securityContext level (``--level``): UsageError naming the choices."""
    if level not in LEVELS:
        raise UsageError(f"--level: expected one of {', '.join(LEVELS)}, got {level!r}")
    return level


class ProofFailed(GitopsError):
    def __init__(self, app: str, reasons: list[str]):
        super().__init__(
            f"{app}: the patched overlay does not render as planned, nothing written: " + "; ".join(reasons)
        )
        self.reasons = reasons


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


def find_deployment(objects: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next(
        (o for o in objects if o.get("kind") == "Deployment" and (o.get("metadata") or {}).get("name") == name), None
    )


def containers_of(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return ((((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []


def check(before: list[dict[str, Any]], after: list[dict[str, Any]], want: Expectation) -> list[str]:
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
    reasons += _subset("container securityContext", container.get("securityContext") or {}, want.container_security)
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
        changed = sorted(
            {_ident(o) for o in others_after if o not in others_before}
            | {_ident(o) for o in others_before if o not in others_after}
        )
        reasons.append(f"other objects changed: {', '.join(changed)}")
    return reasons


def wanted_security(
    uid: int, gid: int, read_only_root: bool, level: str
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(pod securityContext, container securityContext, /tmp emptyDir?) for a level; see docs/gitops.md."""
    pod: dict[str, Any] = {"runAsUser": uid, "runAsGroup": gid}
    ctr: dict[str, Any] = {}
    if level == "restricted":
        pod |= {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        ctr = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        if read_only_root:
            ctr["readOnlyRootFilesystem"] = True
    return pod, ctr, level == "restricted" and read_only_root


def security_delta(
    pod: dict[str, Any],
    container: dict[str, Any],
    want_pod: dict[str, Any],
    want_ctr: dict[str, Any],
    want_tmp: bool,
    name: str,
) -> tuple[dict[str, Any], list[str]]:
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


def _missing(have: dict[str, Any], want: dict[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
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


def _subset(what: str, have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    out = []
    for key, value in want.items():
        if isinstance(value, dict) and isinstance(have.get(key), dict):
            out += _subset(f"{what}.{key}", have[key], value)
        elif have.get(key) != value:
            out.append(f"{what}.{key} is {have.get(key)!r}, expected {value!r}")
    return out


def has_tmp_empty_dir(pod: dict[str, Any], container: dict[str, Any]) -> bool:
    mount = next((m for m in container.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"), None)
    if mount is None:
        return False
    volume = next((v for v in pod.get("volumes") or [] if v.get("name") == mount.get("name")), None)
    return volume is not None and "emptyDir" in volume


PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
PROBE_HANDLERS = ("httpGet", "tcpSocket", "grpc")


def probe_ports(container: dict[str, Any]) -> dict[str, Any]:
    """``{"livenessProbe.httpGet": 80, ...}`` for every probe that names a port."""
    out = {}
    for probe in PROBES:
        for handler in PROBE_HANDLERS:
            port = ((container.get(probe) or {}).get(handler) or {}).get("port")
            if port is not None:
                out[f"{probe}.{handler}"] = port
    return out


def _ident(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
