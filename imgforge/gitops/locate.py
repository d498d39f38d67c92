"""Find a site's app overlay and every source line that shapes its Deployment container.

Kustomize builds a Deployment in layers: the resource files of the innermost base, then each
kustomization's patches, then its ``images:`` transformer, then the same for the overlay above.
A tag bump must land in the layer that decides the tag, or it is silently overridden. So instead
of grepping for ``image:`` we walk the kustomization graph from the overlay, list the layers in
the order kustomize applies them, and replay them: the last layer that set the tag is where the
new tag goes. Which Deployment and container to follow is decided on the *rendered* overlay
(the container whose image repository is the site's), so a placeholder image in the base or a
rename by ``images:`` does not mislead us.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from imgforge.errors import AmbiguousContainer, GitopsError, NotFound, UnknownApp
from imgforge.gitops.kustomize import GRAVEYARD, KUSTOMIZATION_FILES
from imgforge.gitops.patch import YamlFile, parse
from imgforge.gitops.policy import containers_of
from imgforge.image_ref import ImageRef

_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/|gitlab\.com/)")
_DEPLOYMENT = re.compile(r"^kind:\s*['\"]?Deployment\b", re.M)
_CONTAINER_PATH = re.compile(r"^/spec/template/spec/containers/(\d+)/(image|ports/(\d+)/containerPort)$")


@dataclass
class Node:
    """One kustomization in the graph; ``layers`` are its effects in kustomize's order."""

    dir: Path
    file: YamlFile
    doc: CommentedMap
    editable: bool
    children: list[Node] = field(default_factory=list)
    resources: list[YamlFile] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    patches: list[tuple[Any, YamlFile | None, Any]] = field(default_factory=list)  # (doc, file, target)


@dataclass
class Layer:
    """A place that may set the container's image, ports or probes.

    kind: ``resource`` (a Deployment document), ``smp`` (strategic-merge patch),
    ``json6902`` (one op of a JSON patch) or ``images`` (a kustomization ``images:`` entry).
    """

    kind: str
    file: YamlFile | None
    node: Any  # the container mapping, the JSON op, or the images entry
    editable: bool
    kustomization: Node
    doc: Any = None  # the whole document (resource / smp)


@dataclass
class Graph:
    repo: Path
    overlay: Path
    root: Node
    nodes: list[Node]


def is_editable(repo: Path, path: Path) -> bool:
    """Inside the repo, outside the graveyard, and never a SOPS-encrypted file."""
    path = path.resolve()
    if not path.is_relative_to(repo.resolve()) or path.name.endswith((".enc.yaml", ".enc.yml")):
        return False
    return GRAVEYARD not in path.relative_to(repo.resolve()).parts


def rel(repo: Path, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(repo.resolve()))
    except ValueError:
        return str(path)


def overlay_dir(overlay_root: str, app: str, repo: Path) -> Path:
    """``<repo>/<overlay_root>/<app>``; an overlay_root naming the app folder itself also works."""
    if not repo.is_dir():
        raise GitopsError(f"--repo {repo}: not a directory")
    root = repo / overlay_root
    for candidate in (root / app, root if root.name == app else None):
        if candidate is not None and _kustomization_file(candidate):
            return candidate
    known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    close = difflib.get_close_matches(app, known, n=1)
    hint = (
        f"; did you mean '{close[0]}'?" if close else ("" if known else f" ({overlay_root} does not exist in the repo)")
    )
    raise UnknownApp(f"unknown app '{app}': no kustomization in {overlay_root}/{app}{hint}")


def _kustomization_file(folder: Path) -> Path | None:
    return next((folder / n for n in KUSTOMIZATION_FILES if (folder / n).is_file()), None)


def load_graph(repo: Path, overlay: Path) -> Graph:
    """Parse the overlay's kustomization and, recursively, its local bases and resource files."""
    nodes: list[Node] = []
    seen: dict[Path, Node] = {}

    def visit(folder: Path, chain: tuple[Path, ...]) -> Node:
        folder = folder.resolve()
        if folder in chain:
            raise GitopsError(f"{rel(repo, folder)}: kustomization cycle")
        if folder in seen:
            return seen[folder]
        kfile = _kustomization_file(folder)
        if kfile is None:
            raise GitopsError(f"{rel(repo, folder)}: no kustomization.yaml")
        yf = parse(kfile, rel(repo, kfile))
        doc = yf.docs[0] if yf.docs else None
        if not isinstance(doc, CommentedMap):
            raise GitopsError(f"{yf.rel}: expected a Kustomization mapping")
        node = Node(folder, yf, doc, is_editable(repo, kfile))
        seen[folder] = node
        for entry in (
            list(doc.get("resources") or []) + list(doc.get("bases") or []) + list(doc.get("components") or [])
        ):
            if not isinstance(entry, str):
                raise GitopsError(f"{yf.rel}: resources: expected paths, got {entry!r}")
            if _REMOTE.match(entry):
                node.remote.append(entry)
                continue
            target = folder / entry
            if target.is_dir():
                node.children.append(visit(target, (*chain, folder)))
            elif target.is_file():
                if not target.name.endswith((".enc.yaml", ".enc.yml")):
                    text = _read(target, repo)
                    if _DEPLOYMENT.search(text):  # only Deployments matter; parsing is the slow part
                        node.resources.append(parse(target, rel(repo, target), text))
            else:
                raise GitopsError(f"{yf.rel}: resources: {entry} does not exist")
        node.patches = _patch_files(repo, node)
        nodes.append(node)
        return node

    root = visit(overlay, ())
    return Graph(repo, overlay, root, nodes)


def _patch_files(repo: Path, node: Node) -> list[tuple[Any, YamlFile | None, Any]]:
    """(patch document, its file, target) in kustomize's order; parsing them reports bad YAML early."""
    out = []
    for entry in node.doc.get("patchesStrategicMerge") or []:
        out += _patch_docs(repo, node, entry, None)
    for key in ("patches", "patchesJson6902"):
        for entry in node.doc.get(key) or []:
            if not isinstance(entry, CommentedMap):
                raise GitopsError(f"{node.file.rel}: {key}: expected path/patch entries, got {entry!r}")
            target = entry.get("target")
            if isinstance(target, dict) and target.get("kind") not in (None, "Deployment"):
                continue  # a Service or HTTPRoute patch cannot shape the container
            out += _patch_docs(repo, node, entry.get("path") or entry.get("patch"), target)
    return out


def _patch_docs(repo: Path, node: Node, ref: Any, target: Any) -> list[tuple[Any, YamlFile | None, Any]]:
    if not isinstance(ref, str):
        raise GitopsError(f"{node.file.rel}: patches: an entry has neither path nor patch")
    if "\n" in ref or ref.lstrip().startswith(("{", "[", "-", "apiVersion")):
        yf = parse(node.file.path, f"{node.file.rel} (inline patch)", ref)
        return [(d, None, target) for d in yf.docs]
    path = node.dir / ref
    if not path.is_file():
        raise GitopsError(f"{node.file.rel}: patches: {ref} does not exist")
    yf = parse(path, rel(repo, path))
    return [(d, yf, target) for d in yf.docs]


def _read(path: Path, repo: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GitopsError(f"{rel(repo, path)}: cannot read: {e}") from e


def _targets(target: Any, doc: Any, deployment: str) -> bool:
    if isinstance(target, dict) and target:
        if target.get("kind") not in (None, "Deployment"):
            return False
        name = target.get("name")
        return name is None or name == deployment or bool(re.fullmatch(str(name), deployment))
    return (
        isinstance(doc, dict)
        and doc.get("kind") == "Deployment"
        and (doc.get("metadata") or {}).get("name") == deployment
    )


def _container(doc: Any, name: str) -> CommentedMap | None:
    try:
        containers = doc["spec"]["template"]["spec"]["containers"]
    except (KeyError, TypeError):
        return None
    if not isinstance(containers, CommentedSeq):
        return None
    return next((c for c in containers if isinstance(c, CommentedMap) and c.get("name") == name), None)


def layers(graph: Graph, deployment: str, container: str, index: int) -> list[Layer]:
    """Every place that shapes the container, in the order kustomize applies them."""

    def walk(node: Node) -> list[Layer]:
        out: list[Layer] = []
        for child in node.children:
            out += walk(child)
        for resource in node.resources:
            for doc in resource.docs:
                if _targets(None, doc, deployment):
                    editable = is_editable(graph.repo, resource.path)
                    out.append(Layer("resource", resource, _container(doc, container), editable, node, doc))
        for doc, yf, target in node.patches:
            if not _targets(target, doc, deployment):
                continue
            editable = yf is not None and is_editable(graph.repo, yf.path)
            if isinstance(doc, CommentedSeq):
                out += [
                    Layer("json6902", yf, op, editable, node, doc)
                    for op in doc
                    if isinstance(op, CommentedMap) and _op_container(op) in (None, index)
                ]
            elif isinstance(doc, CommentedMap):
                out.append(Layer("smp", yf, _container(doc, container), editable, node, doc))
        for entry in node.doc.get("images") or []:
            if isinstance(entry, CommentedMap):
                out.append(Layer("images", node.file, entry, node.editable, node))
        return out

    return walk(graph.root)


@dataclass
class Target:
    deployment: str
    container: str
    index: int  # position of the container in the rendered Deployment (for JSON6902 paths)
    rendered: dict[str, Any]  # the rendered Deployment
    image: str  # the rendered image reference


def find_target(
    objects: list[dict[str, Any]],
    image: str,
    where: str,
    *,
    container: str | None = None,
    namespace: str | None = None,
    app: str | None = None,
) -> Target:
    """The one Deployment container that runs ``image`` (or is named ``container``).

    Last resort, for an overlay still running another repository (a registry move): the
    container named like the app in the Deployment named like the app.
    """
    deployments = [
        o
        for o in objects
        if o.get("kind") == "Deployment"
        and (namespace is None or (o.get("metadata") or {}).get("namespace") in (None, namespace))
    ]

    def runs_image(c: dict[str, Any]) -> bool:
        return ImageRef.parse(str(c.get("image") or "")).same_repository(image)

    # by image (narrowed to the configured container name), else by the configured name alone
    found = [
        Target(d["metadata"]["name"], str(c.get("name") or ""), i, d, str(c.get("image")))
        for d in deployments
        for i, c in enumerate(containers_of(d))
        if (runs_image(c) and container in (None, c.get("name"))) or (container and c.get("name") == container)
    ]
    found = [t for t in found if runs_image({"image": t.image})] or found
    if not found and app is not None:
        found = [
            Target(d["metadata"]["name"], c["name"], i, d, str(c.get("image")))
            for d in deployments
            if d["metadata"]["name"] == app
            for i, c in enumerate(containers_of(d))
            if c.get("name") == app
        ]
    if not found:
        seen = [
            f"{d['metadata']['name']}/{c.get('name')}={c.get('image')}" for d in deployments for c in containers_of(d)
        ]
        raise NotFound(
            f"{where}: no Deployment container runs {image} (rendered containers: {', '.join(seen) or 'none'})"
        )
    if len(found) > 1:
        names = ", ".join(f"Deployment {t.deployment} container {t.container}" for t in found)
        raise AmbiguousContainer(
            f"{where}: {len(found)} containers could match {image}: {names}; "
            "set gitops.container in the site file to choose one"
        )
    return found[0]


@dataclass
class TagSite:
    """Where the effective tag is written: a layer and the key (``image`` or ``newTag``)."""

    layer: Layer
    key: str
    name: str  # image name at that layer (kept when rewriting an ``image:`` value)


def tag_site(stack: list[Layer]) -> TagSite | None:
    """Replay the layers; the last one that set the tag decides it (``None``: no layer did).

    An ``image:`` without a tag that a later ``images:`` entry renames gets its tag from that
    entry: ``newTag`` is added there rather than a tag glued onto a placeholder.
    """
    name: str | None = None
    site: TagSite | None = None
    untagged_renamed_by: Layer | None = None
    for layer in stack:
        if layer.kind in ("resource", "smp") and layer.node is not None and "image" in layer.node:
            name = ImageRef.parse(str(layer.node["image"])).name
            site, untagged_renamed_by = TagSite(layer, "image", name), None
        elif layer.kind == "json6902" and _op_image(layer.node):
            name = ImageRef.parse(str(layer.node.get("value"))).name
            site, untagged_renamed_by = TagSite(layer, "value", name), None
        elif layer.kind == "images" and name is not None and layer.node.get("name") == name:
            if layer.node.get("digest") and "newTag" not in layer.node:  # tag@digest is imgforge's own pin
                raise GitopsError(
                    f"{layer.file.rel if layer.file else 'an images: entry'}: images: {name} is pinned by digest; "
                    "remove the digest to let imgforge manage the tag"
                )
            name = str(layer.node.get("newName") or name)
            if "newTag" in layer.node:
                site, untagged_renamed_by = TagSite(layer, "newTag", name), None
            elif site is not None and site.key != "newTag" and ImageRef.parse(str(_value(site))).tag is None:
                untagged_renamed_by = layer
    if untagged_renamed_by is not None:
        return TagSite(untagged_renamed_by, "newTag", name or "")
    return site


def _value(site: TagSite) -> Any:
    return site.layer.node.get(site.key)


def _op_container(op: Any) -> int | None:
    m = re.match(r"^/spec/template/spec/containers/(\d+)/", str(op.get("path") or ""))
    return int(m.group(1)) if m else None


def _op_image(op: Any) -> bool:
    m = _CONTAINER_PATH.match(str(op.get("path") or ""))
    return bool(m and m.group(2) == "image" and op.get("op") in ("add", "replace"))
