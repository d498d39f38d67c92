"""``imgforge rebuild --verify REF``: build again from the catalog and source, compare with the registry.

Reproducible builds make a pushed image checkable: the same inputs give the same manifest digest.
When the digests differ, the report says where: which platform, which layer (by position and by
what imgforge puts there), and the first file whose path, mode, owner, size or bytes differ, read
from both layer tars (the registry's streamed through the verifying registry client).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from imgforge.config import Catalog, Site
from imgforge.errors import ImageInvalid, NotFound
from imgforge.image import mediatypes as mt
from imgforge.image.limits import declared_size, layer_count
from imgforge.image_ref import ImageRef
from imgforge.oci import store
from imgforge.oci.assemble import build_site_oci

OUR_LAYERS = ("harden", "config", "content")
MAX_LAYER_BYTES = 16 << 30


@dataclass(frozen=True)
class RebuildReport:
    reference: str
    site: str
    rebuilt: str
    registry: str
    differences: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return self.rebuilt == self.registry

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "site": self.site,
            "rebuilt": self.rebuilt,
            "registry": self.registry,
            "same": self.same,
            "differences": self.differences,
        }


def site_of(catalog: Catalog, reference: str) -> Site:
    """The catalog site whose image repository ``reference`` names, as the catalog has it.

    The reference's tag is not the site's: CI pushes a build of the catalog's tag under other tags
    (``push --tag candidate-<sha>``), and the image's version label holds the catalog's tag, so a
    rebuild at the reference's tag could never match. The tag or digest only says what to fetch.
    """
    ref = ImageRef.parse(reference)
    for site in catalog.sites.values():
        if ImageRef.parse(site.image).same_repository(ref):
            return site
    raise NotFound(f"no catalog site has image repository {ref.name}")


def registry_reference(site: Site, reference: str) -> str:
    """What to ask the registry for: the reference's digest, else its tag, else the catalog's tag."""
    ref = ImageRef.parse(reference)
    return ref.digest or ref.tag or site.tag


def rebuild_verify(catalog: Catalog, reference: str) -> RebuildReport:
    from imgforge.registry.client import RegistryClient, Repository

    site = site_of(catalog, reference)
    built = build_site_oci(catalog, site, force=True, folder=store.oci_root() / "rebuild" / site.name)
    repo = Repository.parse(site.image)
    with RegistryClient(repo.registry) as client:
        data, _, remote = client.get_manifest(repo.name, registry_reference(site, reference), mt.ACCEPT)
        report = RebuildReport(reference, site.name, built.digest, remote)
        if report.same:
            return report
        differences = _differences(client, repo.name, store.read_blob(built.digest), data)
    return RebuildReport(reference, site.name, built.digest, remote, differences)


def _manifests(client: Any, name: str, data: bytes, local: bool) -> dict[str, dict[str, Any]]:
    doc = json.loads(data)
    if doc.get("mediaType") not in mt.INDEX_TYPES:
        return {"": doc}
    out = {}
    for desc in doc.get("manifests", []):
        plat = desc.get("platform") or {}
        key = "/".join(filter(None, [plat.get("os"), plat.get("architecture"), plat.get("variant")]))
        blob = store.read_blob(desc["digest"]) if local else client.get_manifest(name, desc["digest"])[0]
        out[key] = json.loads(blob)
    return out


def _differences(client: Any, name: str, mine: bytes, theirs: bytes) -> list[str]:
    ours, remote = _manifests(client, name, mine, True), _manifests(client, name, theirs, False)
    if set(ours) != set(remote):
        return [f"platforms differ: rebuilt {sorted(ours)}, registry {sorted(remote)}"]
    found = []
    for key in sorted(ours):
        where = f"{key}: " if key else ""
        a, b = ours[key]["layers"], layer_count(f"{name} in the registry", remote[key]["layers"])
        if len(a) != len(b):
            found.append(f"{where}{len(a)} layers rebuilt, {len(b)} in the registry")
            continue
        for i, (la, lb) in enumerate(zip(a, b, strict=True)):
            if la["digest"] == lb["digest"]:
                continue
            back = len(a) - i
            what = OUR_LAYERS[-back] if back <= len(OUR_LAYERS) else "base"
            detail = _file_difference(client, name, la, lb)
            found.append(f"{where}layer {i} ({what}) differs: {detail}")
        if not found and ours[key]["config"]["digest"] != remote[key]["config"]["digest"]:
            found.append(f"{where}config differs: {_config_difference(client, name, ours[key], remote[key])}")
    return found


def _config_difference(client: Any, name: str, mine: dict[str, Any], theirs: dict[str, Any]) -> str:
    a = json.loads(store.read_blob(mine["config"]["digest"]))
    size = declared_size(f"{name} in the registry", theirs["config"], "max_config_bytes")
    with client.open_blob(name, theirs["config"]["digest"], size) as fh:
        b = json.loads(fh.read())
    ra, rb = a.get("config") or {}, b.get("config") or {}
    for key in sorted(set(ra) | set(rb)):
        if ra.get(key) != rb.get(key):
            if key == "Labels":
                la, lb = ra.get(key) or {}, rb.get(key) or {}
                label = next(k for k in sorted(set(la) | set(lb)) if la.get(k) != lb.get(k))
                return f"label {label}: rebuilt {la.get(label)!r}, registry {lb.get(label)!r}"
            return f"{key}: rebuilt {ra.get(key)!r}, registry {rb.get(key)!r}"
    other = next((k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)), "?")
    return f"{other} differs"


def _members(stream: IO[bytes]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Every member's metadata and sha256, at most ``MAX_LAYER_BYTES`` unpacked (a registry's
    layer may be a gzip bomb whose digest the same registry vouches for)."""
    total = 0
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for info in tar:
            total += info.size
            if total > MAX_LAYER_BYTES:
                raise ImageInvalid(f"a layer unpacks to more than {MAX_LAYER_BYTES >> 30} GiB; not comparing it")
            sha = ""
            if info.isfile():
                data = tar.extractfile(info)
                h = hashlib.sha256()
                while data is not None and (chunk := data.read(1 << 20)):
                    h.update(chunk)
                sha = h.hexdigest()[:12]
            name = "/" + info.name.removeprefix("./").strip("/")
            yield name, (oct(info.mode), info.uid, info.gid, info.size, info.linkname, sha, info.mtime)


def _file_difference(client: Any, name: str, mine: dict[str, Any], theirs: dict[str, Any]) -> str:
    size = declared_size(f"{name} in the registry", theirs, "max_layer_bytes")
    try:
        with store.blob_path(mine["digest"]).open("rb") as fh:
            a = dict(_members(fh))
        with client.open_blob(name, theirs["digest"], size) as fh:
            b = dict(_members(fh))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ImageInvalid(f"layer {theirs['digest']} of {name}: not a readable tar ({e})") from e
    found = []
    fields = ("mode", "uid", "gid", "size", "link", "sha256", "mtime")
    for path in sorted(set(a) | set(b)):
        if path not in b:
            found.append(f"{path} (only in the rebuild)")
        elif path not in a:
            found.append(f"{path} (only in the registry's image)")
        elif a[path] != b[path]:
            what = [f for f, x, y in zip(fields, a[path], b[path], strict=True) if x != y]
            found.append(f"{path} ({', '.join(what)})")
    if not found:
        return "same files, other bytes (tar or compression)"
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return f"file{'s' if len(found) > 1 else ''} {', '.join(found[:5])}{more}"
