"""``imgforge build --builder oci``: a site's image assembled from its base and three layers, no engine.

The base is pinned by digest (``base.resolve_base``), the layers are deterministic (``layers``),
and the config is the base's config with what the Dockerfile would set: ``User``, ``ExposedPorts``,
``Env`` (``LISTEN_PORT``), ``Entrypoint``/``Cmd``, ``StopSignal``, the same labels plus
``org.opencontainers.image.base.digest``, and one history entry per layer. Every time in it is the
source's time (``SOURCE_DATE_EPOCH``, else the commit time of the content's HEAD, else 0), so the same inputs
give the same manifest digest anywhere. The result is an OCI layout in the cache
(``store.site_layout``); ``transfer`` pushes it or loads it into an engine.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgforge import _git
from imgforge.build_context import Context
from imgforge.config import Catalog, Site
from imgforge.content_manifest import ContentManifest
from imgforge.errors import GitError
from imgforge.hashcache import HashCache
from imgforge.image import mediatypes as mt
from imgforge.oci import store
from imgforge.oci.base import BaseImage, PlatformBase, fetch_layers, resolve_base
from imgforge.oci.layer import Blob
from imgforge.oci.layers import ENTRYPOINT, config_layer, content_layer, harden_layer
from imgforge.render import prepare

BUILDER = "imgforge-oci/1"  # part of the inputs digest: a change to how layers are written rebuilds
INPUTS_LABEL = "io.imgforge.inputs-digest"
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
REF_NAME = "org.opencontainers.image.ref.name"
_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": f"{mt.OCI_LAYER}+gzip",
    "application/vnd.docker.image.rootfs.diff.tar": mt.OCI_LAYER,
}


@dataclass(frozen=True)
class OciBuildResult:
    """What ``build --builder oci`` made (or found unchanged) and where the layout is."""

    site: str
    image: str
    id: str  # the config digest of the host's platform: the image ID ``docker load`` gives
    digest: str  # the manifest's (or index's) digest: what the registry will pin
    skipped: bool
    inputs_digest: str
    manifest: ContentManifest
    base_name: str
    base_digest: str
    platforms: tuple[str, ...] = field(default=())

    @property
    def manifest_digest(self) -> str:
        return self.manifest.digest

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "image": self.image,
            "id": self.id,
            "skipped": self.skipped,
            "inputs_digest": self.inputs_digest,
            "manifest_digest": self.manifest_digest,
            "builder": "oci",
            "digest": self.digest,
            "base": {"name": self.base_name, "digest": self.base_digest},
            "platforms": list(self.platforms),
        }


class BaseLookup:
    """Bases pinned once per run: ``build --all`` asks each base's registry or engine once."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, tuple[str, ...]], BaseImage] = {}

    def get(self, reference: str, platforms: Sequence[str]) -> BaseImage:
        key = (reference, tuple(platforms))
        if key not in self._found:
            self._found[key] = resolve_base(reference, platforms)
        return self._found[key]


def source_time(context: Context) -> int:
    """``SOURCE_DATE_EPOCH``, else the commit time of the content's commit, else 0 (1970).

    A git source's commit is asked of its mirror in the cache (the export beside it is no
    repository); a local folder's is the HEAD commit of the repository holding it, when there is
    one. HEAD's own time, not the last commit that touched the folder: that one needs history a
    shallow clone (CI's depth 1 or 20) does not have, so the digest would depend on clone depth.
    """
    if (fixed := os.environ.get("SOURCE_DATE_EPOCH", "").strip()).isdigit():
        return int(fixed)
    content = context.content
    try:
        if content.fetched_revision:
            export = next((p for p in content.path.parents if p.name == content.fetched_revision), None)
            if export is None:
                return 0
            mirror = export.parent.with_suffix(".git")
            text = _git.out("show", "-s", "--format=%ct", "--end-of-options", content.fetched_revision, cwd=mirror)
        else:
            text = _git.out("show", "-s", "--format=%ct", "HEAD", cwd=content.path)
    except GitError:
        return 0
    return int(text) if text.isdigit() else 0


def build_site_oci(
    catalog: Catalog,
    site: Site,
    *,
    force: bool = False,
    platforms: Sequence[str] = (),
    cache: HashCache | None = None,
    lookup: BaseLookup | None = None,
    on_event: Callable[[str], None] | None = None,
    base: BaseImage | None = None,
    folder: Path | None = None,
) -> OciBuildResult:
    """Assemble ``site`` as an OCI layout; reuse the layout when its inputs digest is unchanged.

    ``base`` overrides the catalog's base (``base update`` rebases onto a given pin); ``folder``
    puts the layout elsewhere than the site's own (``rebuild --verify`` keeps the site's intact).
    """
    say = on_event or (lambda _text: None)
    context = prepare(catalog, site, cache)
    base = base or (lookup or BaseLookup()).get(context.base_image, platforms)
    mtime = source_time(context)
    inputs = _inputs_digest(context, base, mtime, _label_inputs(catalog, site, context))
    folder = folder or store.site_layout(site.name)
    if not force and (found := _unchanged(folder, site, inputs)) is not None:
        say(f"inputs unchanged ({inputs[:19]}…): reusing {found['digest'][:19]}")
        return _result(site, context, base, inputs, found, skipped=True)
    created = dt.datetime.fromtimestamp(mtime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = _labels(catalog, site, context, base, inputs, created)
    conf, content = config_layer(context, mtime), content_layer(context, mtime)
    manifests: list[dict[str, Any]] = []
    blobs: list[str] = []
    for plat in base.platforms:
        fetch_layers(base, plat)
        harden = harden_layer(plat.digest, site.uid, site.gid, context.content_root)
        desc, used = _assemble(site, plat, base, (harden, conf, content), labels, created)
        manifests.append(desc)
        blobs += used
    top = {**_top(manifests, base), "annotations": {REF_NAME: site.tag, INPUTS_LABEL: inputs}}
    blobs.append(top["digest"])
    store.write_layout(folder, {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [top]}, blobs)
    say(f"assembled {site.reference} {top['digest']}")
    return _result(site, context, base, inputs, top, skipped=False)


def _label_inputs(catalog: Catalog, site: Site, context: Context) -> str:
    """What the labels hold beyond the context's files: a layout built of the same files at another
    revision (a copy of the content, a new commit) or for another site must not be reused."""
    fields = (site.name, site.tag, site.description or "", catalog.settings.vendor or "")
    return "\0".join((*fields, context.content.revision or "", context.content.source or ""))


def _inputs_digest(context: Context, base: BaseImage, mtime: int, labels: str) -> str:
    platforms = ",".join(str(p.platform) + "@" + p.digest for p in base.platforms)
    text = f"{BUILDER}\0{context.digest()}\0{base.digest}\0{platforms}\0{mtime}\0{labels}"
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def _unchanged(folder: Any, site: Site, inputs: str) -> dict[str, Any] | None:
    index = store.read_index(folder)
    for desc in (index or {}).get("manifests", []):
        notes = desc.get("annotations") or {}
        if notes.get(INPUTS_LABEL) == inputs and notes.get(REF_NAME) == site.tag and store.has_blob(desc["digest"]):
            return dict(desc)
    return None


def _labels(
    catalog: Catalog, site: Site, context: Context, base: BaseImage, inputs: str, created: str
) -> dict[str, str]:
    """The Dockerfile's LABEL step, value for value, plus the base's digest."""
    labels = {
        "org.opencontainers.image.title": site.name,
        "org.opencontainers.image.description": site.description or f"{site.name} static site",
        "org.opencontainers.image.version": site.tag,
        BASE_NAME: context.base_image,
        BASE_DIGEST: base.digest,
    }
    if catalog.settings.vendor:
        labels["org.opencontainers.image.vendor"] = catalog.settings.vendor
    labels |= {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.revision": context.content.revision or "unknown",
        "org.opencontainers.image.source": context.content.source,
        "io.imgforge.site": site.name,
        INPUTS_LABEL: inputs,
        "io.imgforge.manifest-digest": context.manifest().digest,
    }
    return labels


def _assemble(
    site: Site,
    plat: PlatformBase,
    base: BaseImage,
    layers: tuple[Blob, Blob, Blob],
    labels: dict[str, str],
    created: str,
) -> tuple[dict[str, Any], list[str]]:
    """One platform's config and manifest in the store; its descriptor and every blob it uses."""
    config = image_config(plat.config, site, layers, labels, created)
    config_bytes = store.canonical_json(config)
    config_digest = store.put_bytes(config_bytes)
    base_layers = [
        {"mediaType": _LAYER_TYPES.get(d["mediaType"], d["mediaType"]), "digest": d["digest"], "size": d["size"]}
        for d in plat.layers
    ]
    ours = [{"mediaType": f"{mt.OCI_LAYER}+gzip", "digest": b.digest, "size": b.size} for b in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": base_layers + ours,
        "annotations": {BASE_NAME: labels[BASE_NAME], BASE_DIGEST: base.digest},
    }
    data = store.canonical_json(manifest)
    digest = store.put_bytes(data)
    platform = {"os": plat.platform.os, "architecture": plat.platform.architecture}
    if plat.platform.variant:
        platform["variant"] = plat.platform.variant
    desc = {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(data), "platform": platform}
    return desc, [digest, config_digest, *(d["digest"] for d in base_layers + ours)]


def image_config(
    base_config: dict[str, Any], site: Site, layers: tuple[Blob, ...], labels: dict[str, str], created: str
) -> dict[str, Any]:
    """The base's config with the Dockerfile's settings applied (kept apart: ``rebase`` reuses it)."""
    config = copy.deepcopy(base_config)
    for key in ("container", "container_config", "docker_version", "id", "parent"):
        config.pop(key, None)
    run = config.setdefault("config", {}) or {}
    config["config"] = run
    run["User"] = f"{site.uid}:{site.gid}"
    run["ExposedPorts"] = {**(run.get("ExposedPorts") or {}), f"{site.port}/tcp": {}}
    env = [e for e in run.get("Env") or [] if not e.startswith("LISTEN_PORT=")]
    run["Env"] = [*env, f"LISTEN_PORT={site.port}"]
    run["Entrypoint"] = [ENTRYPOINT]
    run["Cmd"] = ["nginx", "-e", "stderr"]
    run["StopSignal"] = "SIGQUIT"
    run["Labels"] = {**(run.get("Labels") or {}), **labels}
    config["created"] = created
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(b.diff_id for b in layers)]
    steps = (
        "harden the base: strip setuid/setgid, no world-writable folders but /tmp, runtime user owns nothing, "
        "no stock site config",
        "COPY nginx.conf, /etc/nginx/imgforge/, /usr/local/bin/imgforge-entrypoint",
        "COPY the content to the web root and /etc/imgforge/manifest.json",
    )
    history = list(config.get("history") or [])
    history += [{"created": created, "created_by": f"imgforge oci: {text}"} for text in steps]
    history.append(
        {
            "created": created,
            "created_by": f"imgforge oci: USER {site.uid}:{site.gid}, EXPOSE {site.port}, ENV LISTEN_PORT, "
            f"STOPSIGNAL SIGQUIT, ENTRYPOINT {ENTRYPOINT}, LABEL",
            "empty_layer": True,
        }
    )
    config["history"] = history
    return config


def _top(manifests: list[dict[str, Any]], base: BaseImage) -> dict[str, Any]:
    """The one manifest, or an index over several (always an index when the base is one)."""
    if len(manifests) == 1 and not base.is_index:
        return dict(manifests[0])
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    data = store.canonical_json(index)
    return {"mediaType": mt.OCI_INDEX, "digest": store.put_bytes(data), "size": len(data)}


def _result(
    site: Site, context: Context, base: BaseImage, inputs: str, top: dict[str, Any], *, skipped: bool
) -> OciBuildResult:
    import json

    from imgforge.image.platform import host_platform

    descs = [top]
    if top["mediaType"] == mt.OCI_INDEX:
        descs = json.loads(store.read_blob(top["digest"]))["manifests"]
    host = host_platform()
    chosen = next((d for d in descs if (d.get("platform") or {}).get("architecture") == host.architecture), descs[0])
    manifest = json.loads(store.read_blob(chosen["digest"]))
    platforms = tuple(
        "/".join(filter(None, [p.get("os"), p.get("architecture"), p.get("variant")]))
        for p in (d.get("platform") or {} for d in descs)
    )
    return OciBuildResult(
        site.name,
        site.reference,
        manifest["config"]["digest"],
        top["digest"],
        skipped,
        inputs,
        context.manifest(),
        context.base_image,
        base.digest,
        platforms,
    )
