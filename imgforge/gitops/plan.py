"""The overlay change that deploys a site: tag, securityContext and port, planned and proven.

``plan`` works out the change without touching the repo and proves it by rendering the overlay
with ``kubectl kustomize`` before and after; ``apply`` writes exactly the planned texts, after
checking nobody changed the files in between. Renovate, Flux and Argo CD only move the tag; the
point here is that the securityContext and port the image was tested under move with it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgforge._fs import atomic_write_text
from imgforge.config import Catalog, Site, check_tag
from imgforge.errors import GitopsError, ProofFailed
from imgforge.gitops import kustomize, locate, policy
from imgforge.gitops.patch import Editor, Keyed, YamlFile, new_file_text
from imgforge.gitops.policy import LEVELS
from imgforge.image_ref import ImageRef

__all__ = ["LEVELS", "FileChange", "GitopsPlan", "apply", "current_tag", "current_tags", "plan", "plan_many"]

SECURITY_PATCH = ("deployment-patch.yaml", "deployment-security-patch.yaml")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
PORT_PATCH = "deployment-port-patch.yaml"


@dataclass
class FileChange:
    """One file's full text before and after; ``before == ""`` means imgforge creates the file."""

    path: Path  # relative to the repo
    before: str
    after: str

    @property
    def created(self) -> bool:
        return self.before == ""


@dataclass
class GitopsPlan:
    site: str
    app: str
    overlay: Path  # relative to the repo
    image: str
    old_tag: str | None
    new_tag: str
    changes: list[FileChange]
    diff: str
    security_changes: list[str]
    port_change: str | None
    noop: bool
    repo: Path = field(default_factory=Path)  # absolute work tree the paths are relative to
    digest: str | None = None  # pinned as tag@digest (--pin-digest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "app": self.app,
            "overlay": str(self.overlay),
            "image": self.image,
            "old_tag": self.old_tag,
            "new_tag": self.new_tag,
            "noop": self.noop,
            "files": [{"path": str(c.path), "created": c.created} for c in self.changes],
            "security_changes": self.security_changes,
            "port_change": self.port_change,
            "diff": self.diff,
            "repo": str(self.repo),
            "digest": self.digest,
        }


def _site(catalog: Catalog, site: Site | str) -> Site:
    return catalog.site(site) if isinstance(site, str) else site


def _overlay(catalog: Catalog, site: Site, repo: Path) -> Path:
    return locate.overlay_dir(site.gitops.overlay or catalog.settings.overlay_root, site.app, repo)


def _target(site: Site, objects: list[dict[str, Any]], where: str) -> locate.Target:
    return locate.find_target(
        objects, site.image, where, container=site.gitops.container, namespace=site.gitops.namespace, app=site.app
    )


def current_tag(catalog: Catalog, site: Site | str, repo: Path) -> str | None:
    """The tag the GitOps repo deploys now, read from the rendered overlay."""
    site = _site(catalog, site)
    repo = Path(repo).resolve()
    overlay = _overlay(catalog, site, repo)
    where = locate.rel(repo, overlay)
    return ImageRef.parse(_target(site, kustomize.render(overlay, where), where).image).tag


def current_tags(catalog: Catalog, sites: list[Site], repo: Path) -> dict[str, str | GitopsError | None]:
    """``current_tag`` of many sites with one kustomize run (per site when the batch cannot work);
    a site whose overlay cannot be read gets its error instead of a tag."""
    repo = Path(repo).resolve()
    out: dict[str, str | GitopsError | None] = {}
    found: list[tuple[Site, Path, str]] = []
    for site in sites:
        try:
            overlay = _overlay(catalog, site, repo)
        except GitopsError as e:
            out[site.name] = e
            continue
        found.append((site, overlay, locate.rel(repo, overlay)))
    try:
        rendered = kustomize.render_in_place([o for _, o, _ in found])
    except GitopsError:
        rendered = []
    for i, (site, overlay, where) in enumerate(found):
        try:
            objects = rendered[i] if rendered else kustomize.render(overlay, where)
            out[site.name] = ImageRef.parse(_target(site, objects, where).image).tag
        except GitopsError as e:
            out[site.name] = e
    return out


class _Files:
    """One editor per touched file, plus files to create."""

    def __init__(self, repo: Path):
        self.repo = repo
        self.editors: dict[Path, Editor] = {}
        self.created: dict[Path, str] = {}

    def editor(self, yf: YamlFile) -> Editor:
        return self.editors.setdefault(yf.path.resolve(), Editor(yf))

    def texts(self) -> dict[Path, tuple[str, str]]:
        out = {p: (e.file.text, e.result()) for p, e in self.editors.items() if e.changed}
        out.update({p: ("", t) for p, t in self.created.items()})
        return {p: ba for p, ba in out.items() if ba[0] != ba[1]}


@dataclass
class _Work:
    """A site's plan in progress: inputs checked, overlay found, graph parsed."""

    site: Site
    level: str
    new_tag: str
    repo: Path
    overlay: Path
    where: str
    graph: locate.Graph
    digest: str | None = None
    texts: dict[Path, tuple[str, str]] = field(default_factory=dict)
    want: policy.Expectation | None = None
    summary: tuple[str, str | None, list[str], str | None] = ("", None, [], None)  # image, old tag, security, port

    @property
    def folders(self) -> list[Path]:
        return [n.dir for n in self.graph.nodes]

    @property
    def after_texts(self) -> dict[Path, str]:
        return {p: a for p, (_, a) in self.texts.items()}


def _prepare(
    catalog: Catalog,
    site: Site | str,
    repo: Path,
    tag: str | None,
    level: str,
    started: list[kustomize.Pending] | None = None,
    digest: str | None = None,
) -> _Work:
    """Check the inputs, find the overlay, parse its graph (``started`` receives a background render)."""
    site = _site(catalog, site)
    policy.check_level(level)
    new_tag = check_tag(tag or site.tag)
    if digest is not None and not _DIGEST.fullmatch(digest):
        raise GitopsError(f"digest to pin: expected sha256:<64 lowercase hex>, got {digest[:80]!r}")
    repo = Path(repo).resolve()
    overlay = _overlay(catalog, site, repo)
    where = locate.rel(repo, overlay)
    if started is not None:  # render while we parse: the two take about as long
        started.append(kustomize.Pending(overlay, where))
    try:
        graph = locate.load_graph(repo, overlay)
    except BaseException:
        for pending in started or []:
            pending.cancel()
        raise
    return _Work(site, level, new_tag, repo, overlay, where, graph, digest)


def _draft(work: _Work, before: list[dict[str, Any]]) -> None:
    """Work out the file texts from the rendered ``before`` (fills work.texts/want/summary)."""
    site, new_tag = work.site, work.new_tag
    target = _target(site, before, work.where)
    stack = locate.layers(work.graph, target.deployment, target.container, target.index)
    files = _Files(work.repo)
    running = ImageRef.parse(target.image)
    name, old_tag = running.name, running.tag
    image_name = name if running.same_repository(site.image) else site.image
    if old_tag != new_tag or image_name != name or running.digest != work.digest:
        _set_tag(files, stack, site, image_name, new_tag, work.where, work.digest)
    pod = target.rendered["spec"]["template"]["spec"]
    container = policy.containers_of(target.rendered)[target.index]
    want_pod, want_ctr, want_tmp = policy.wanted_security(site.uid, site.gid, site.read_only_root, work.level)
    pod_spec, security = policy.security_delta(pod, container, want_pod, want_ctr, want_tmp, target.container)
    port_change, old_port, port_ops = _port(files, stack, container, site.port, target, pod_spec)
    if pod_spec:
        _write_security(files, work.graph, stack, target.deployment, pod_spec)
    if port_ops:
        _write_json_patch(files, work.graph, target.deployment, port_ops)
    work.texts = files.texts()
    work.want = policy.Expectation(
        target.deployment,
        target.container,
        f"{image_name}:{new_tag}" + (f"@{work.digest}" if work.digest else ""),
        site.port,
        old_port,
        want_pod,
        want_ctr,
        want_tmp,
    )
    work.summary = (image_name, old_tag, security, port_change)


def _finish(work: _Work, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> GitopsPlan:
    if work.texts:
        if work.want is None:  # _draft sets texts and want together; texts without a proof never pass
            raise GitopsError(f"{work.site.app}: a change was drafted without its proof")
        if reasons := policy.check(before, after, work.want):
            raise ProofFailed(work.site.app, reasons)
    changes = [FileChange(Path(locate.rel(work.repo, p)), b, a) for p, (b, a) in sorted(work.texts.items())]
    image_name, old_tag, security, port_change = work.summary
    return GitopsPlan(
        work.site.name,
        work.site.app,
        Path(work.where),
        image_name,
        old_tag,
        work.new_tag,
        changes,
        _diff(changes),
        security,
        port_change,
        not changes,
        work.repo,
        work.digest,
    )


def _render_after(work: _Work) -> list[dict[str, Any]]:
    return kustomize.render_changed(work.overlay, work.folders, work.after_texts, f"{work.where} (patched copy)")


def plan(
    catalog: Catalog,
    site: Site | str,
    repo: Path,
    *,
    tag: str | None = None,
    level: str = "restricted",
    digest: str | None = None,
) -> GitopsPlan:
    """Work out (and prove) the change that deploys ``site`` at ``tag``; writes nothing.

    ``digest`` pins it: ``tag@digest`` (kustomize ``images:`` ``newTag`` and ``digest``, or the
    image string), so the cluster runs exactly the reviewed bytes; the proof checks the rendered
    reference. Without it a pin left by an earlier run is dropped (image strings) or refused.
    """
    started: list[kustomize.Pending] = []
    work = _prepare(catalog, site, repo, tag, level, started, digest)
    before = started[0].result()
    _draft(work, before)
    return _finish(work, before, _render_after(work) if work.texts else before)


def plan_many(
    catalog: Catalog,
    sites: list[Site | str],
    repo: Path,
    *,
    level: str = "restricted",
    tags: dict[str, str] | None = None,
    digests: dict[str, str] | None = None,
) -> list[GitopsPlan]:
    """``plan`` for many sites with two kustomize runs in all instead of two per site.

    Starting kubectl dominates a small overlay's render, so the overlays are rendered together
    (each wrapped so its objects can be told apart). When that cannot work (two apps render the
    same object, two plans edit one shared file, a render fails and its site must be named), it
    falls back to rendering per site, so results and errors are exactly those of ``plan``.
    """
    names = [s.name if isinstance(s, Site) else s for s in sites]
    works = [
        _prepare(catalog, s, repo, (tags or {}).get(n), level, digest=(digests or {}).get(n))
        for s, n in zip(sites, names, strict=True)
    ]
    try:
        befores = kustomize.render_many([(w.overlay, w.folders, {}) for w in works])
    except GitopsError:
        befores = [kustomize.render(w.overlay, w.where) for w in works]
    for work, before in zip(works, befores, strict=True):
        _draft(work, before)
    changed = [w for w in works if w.texts]
    paths = [p for w in changed for p in w.texts]
    afters: list[list[dict[str, Any]]] | None = None
    if changed and len(paths) == len(set(paths)):
        try:
            afters = kustomize.render_many([(w.overlay, w.folders, w.after_texts) for w in changed])
        except GitopsError:
            afters = None
    if afters is None:
        afters = [_render_after(w) for w in changed]
    by_work = {id(w): a for w, a in zip(changed, afters, strict=True)}
    return [_finish(w, b, by_work.get(id(w), b)) for w, b in zip(works, befores, strict=True)]


def _set_tag(
    files: _Files, stack: list[locate.Layer], site: Site, name: str, new_tag: str, where: str, digest: str | None
) -> None:
    spot = locate.tag_site(stack)
    if spot is None:
        raise GitopsError(f"{where}: cannot find where the image of {site.app} is set")
    layer = spot.layer
    if layer.file is None or not layer.editable:
        what = layer.file.rel if layer.file else "an inline patch"
        raise GitopsError(
            f"{what}: the tag is set here, which imgforge does not edit "
            "(outside the repo, in zz-graveyard, encrypted or inline)"
        )
    editor = files.editor(layer.file)
    if spot.key == "newTag":
        if layer.node.get("digest") and digest is None:
            raise GitopsError(
                f"{layer.file.rel}: images: {spot.name} is pinned by digest; move tag and digest "
                "together with --pin-digest"
            )
        if "newTag" in layer.node:
            editor.set_scalar(layer.node, "newTag", new_tag)
        else:
            editor.insert_keys(layer.node, {"newTag": new_tag})
        if digest is not None and "digest" in layer.node:
            editor.set_scalar(layer.node, "digest", digest)
        elif digest is not None:
            editor.insert_keys(layer.node, {"digest": digest})
    else:
        keep = spot.name if ImageRef.parse(spot.name).same_repository(name) else name
        editor.set_scalar(layer.node, spot.key, f"{keep}:{new_tag}" + (f"@{digest}" if digest else ""))


def _port(
    files: _Files,
    stack: list[locate.Layer],
    container: dict[str, Any],
    new: int,
    target: locate.Target,
    pod_spec: dict[str, Any],
) -> tuple[str | None, int | None, list[dict[str, Any]]]:
    """Move the HTTP port where it is defined; returns (description, old port, JSON6902 ops)."""
    ports = container.get("ports") or []
    numbers = [p.get("containerPort") for p in ports]
    if not ports:
        item = _container_item(pod_spec, target.container)
        item["ports"] = Keyed("containerPort", [{"containerPort": new, "name": "http"}])
        return f"none → {new}", None, []
    if numbers.count(new) == 1 and 80 not in numbers:
        return None, new, []
    old = next((n for n in numbers if n == 80), None)
    if old is None:
        named = [p.get("containerPort") for p in ports if p.get("name") == "http"]
        old = numbers[0] if len(ports) == 1 else (named[0] if len(named) == 1 else None)
    if old is None or new in numbers:
        raise GitopsError(
            f"Deployment {target.deployment} container {target.container} declares ports "
            f"{numbers}; cannot tell which one to move to {new}"
        )
    sources = _port_sources(stack, old)
    editable = [(layer.file, parent, key) for layer, parent, key in sources if layer.editable and layer.file]
    if sources and len(editable) == len(sources):
        for file, parent, key in editable:
            files.editor(file).set_scalar(parent, key, new)
        return f"{old} → {new}", old, []
    base = f"/spec/template/spec/containers/{target.index}"
    ops = [
        {"op": "replace", "path": f"{base}/ports/{j}/containerPort", "value": new}
        for j, n in enumerate(numbers)
        if n == old
    ]
    for probe, value in policy.probe_ports(container).items():
        if value == old:
            ops.append({"op": "replace", "path": f"{base}/{probe.replace('.', '/')}/port", "value": new})
    return f"{old} → {new}", old, ops


def _port_sources(stack: list[locate.Layer], old: int) -> list[tuple[locate.Layer, Any, Any]]:
    """Every (layer, parent, key) holding ``old`` as a containerPort or numeric probe port."""
    out = []
    for layer in stack:
        node = layer.node
        if layer.kind == "json6902":
            path = str(node.get("path", ""))
            if (path.endswith("/containerPort") or "/port" in path) and node.get("value") == old:
                out.append((layer, node, "value"))
            continue
        if layer.kind not in ("resource", "smp") or node is None:
            continue
        for port in node.get("ports") or []:
            if isinstance(port, dict) and port.get("containerPort") == old:
                out.append((layer, port, "containerPort"))
        for probe in policy.PROBES:
            for handler in policy.PROBE_HANDLERS:
                spec = (node.get(probe) or {}).get(handler) if isinstance(node.get(probe), dict) else None
                if isinstance(spec, dict) and spec.get("port") == old and not isinstance(spec.get("port"), bool):
                    out.append((layer, spec, "port"))
    return out


def _container_item(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    if "containers" not in pod_spec:
        pod_spec["containers"] = Keyed("name", [{"name": name}])
    item: dict[str, Any] = pod_spec["containers"].items[0]
    return item


def _write_security(
    files: _Files, graph: locate.Graph, stack: list[locate.Layer], deployment: str, pod_spec: dict[str, Any]
) -> None:
    """Into the overlay's own patch of the Deployment, else the editable base, else a new patch."""
    overlay_smp = [
        la
        for la in stack
        if la.kind == "smp" and la.kustomization is graph.root and la.editable and la.file is not None
    ]
    resource = [la for la in stack if la.kind == "resource" and la.editable]
    spots = [la for la in (overlay_smp or resource) if la.file is not None]
    if spots and spots[-1].file is not None:
        files.editor(spots[-1].file).merge(spots[-1].doc, {"spec": {"template": {"spec": pod_spec}}})
        return
    name = next((n for n in SECURITY_PATCH if not (graph.overlay / n).exists()), None)
    if name is None:
        raise GitopsError(
            f"{locate.rel(graph.repo, graph.overlay)}: {' and '.join(SECURITY_PATCH)} exist but "
            f"do not patch Deployment {deployment}; add the securityContext by hand"
        )
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment},
        "spec": {"template": {"spec": pod_spec}},
    }
    _create(files, graph, name, doc, deployment)


def _write_json_patch(files: _Files, graph: locate.Graph, deployment: str, ops: list[dict[str, Any]]) -> None:
    if (graph.overlay / PORT_PATCH).exists():
        raise GitopsError(
            f"{locate.rel(graph.repo, graph.overlay / PORT_PATCH)} exists but does not set the port; fix or remove it"
        )
    _create(files, graph, PORT_PATCH, ops, deployment)


def _create(files: _Files, graph: locate.Graph, name: str, data: Any, deployment: str) -> None:
    """Write a new overlay file in the kustomization's style and list it under ``patches:``."""
    kust = graph.root
    if not kust.editable:
        raise GitopsError(f"{kust.file.rel}: cannot be edited by imgforge")
    start = kust.file.text.startswith("---")
    files.created[(graph.overlay / name).resolve()] = new_file_text(data, kust.file.seq_offset, start)
    entry = {"path": name, "target": {"kind": "Deployment", "name": deployment}}
    editor = files.editor(kust.file)
    patches = kust.doc.get("patches")
    if "patches" not in kust.doc:
        editor.insert_keys(kust.doc, {"patches": [entry]})
    elif patches and not patches.fa.flow_style():
        editor.append_item(patches, entry)
    else:
        editor.replace_value(kust.doc, "patches", [*(patches or []), entry])


def _diff(changes: list[FileChange]) -> str:
    out: list[str] = []
    for c in changes:
        a = "/dev/null" if c.created else f"a/{c.path}"
        out += difflib.unified_diff(c.before.splitlines(True), c.after.splitlines(True), a, f"b/{c.path}")
    return "".join(out)


def apply(plan: GitopsPlan) -> list[Path]:
    """Write the planned files; refuse if any changed since ``plan``. All or nothing."""
    if plan.noop:
        return []
    for c in plan.changes:
        path = plan.repo / c.path
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != c.before:
            raise GitopsError(f"{c.path}: changed since the plan was made; run plan again")
    written: list[FileChange] = []
    try:
        for c in plan.changes:
            path = plan.repo / c.path
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, c.after)
            written.append(c)
    except OSError as e:
        for c in written:  # put back what was already written: the tree is as it was
            path = plan.repo / c.path
            path.unlink() if c.created else atomic_write_text(path, c.before)
        raise GitopsError(f"cannot write {plan.repo}: {e}") from e
    return [c.path for c in plan.changes]
