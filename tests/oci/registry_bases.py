"""Bases in the test registry, made from the local nginx base without an engine.

``moved`` is the same base one release later: its layers plus one small layer (``/etc/base-release``)
and a config that lists it: what a base image's patch release looks like to a consumer. ``as_arm64``
relabels a manifest's config as linux/arm64 while keeping the amd64 layers: it proves the index and
per-platform plumbing (one manifest per platform, one push), not that the image runs on arm64.
"""

from __future__ import annotations

import copy
import json

from imgforge.image import mediatypes as mt
from imgforge.oci import store
from imgforge.oci.base import resolve_base
from imgforge.oci.layer import LayerEntry, constant, write_layer
from imgforge.registry import RegistryClient
from tests.conftest import NGINX_BASE


def local_base() -> dict:
    """The local nginx base's manifest (its blobs copied into the store)."""
    return resolve_base(NGINX_BASE).platforms[0].manifest


def _config(manifest: dict) -> dict:
    return json.loads(store.read_blob(manifest["config"]["digest"]))


def _with_config(manifest: dict, config: dict) -> dict:
    data = store.canonical_json(config)
    out = copy.deepcopy(manifest)
    out["config"] = {"mediaType": mt.OCI_CONFIG, "digest": store.put_bytes(data), "size": len(data)}
    return out


def moved(manifest: dict, release: str = "2") -> dict:
    body = f"base release {release}\n".encode()
    layer = write_layer(
        [LayerEntry("etc/base-release", "file", 0o644, len(body), read=constant(body))], 0, store.blob_dir()
    )
    config = _config(manifest)
    config["rootfs"]["diff_ids"].append(layer.diff_id)
    config.setdefault("history", []).append({"created_by": f"base release {release}"})
    out = _with_config(manifest, config)
    out["layers"].append({"mediaType": f"{mt.OCI_LAYER}+gzip", "digest": layer.digest, "size": layer.size})
    return out


def as_arm64(manifest: dict) -> dict:
    config = _config(manifest)
    config["architecture"], config["variant"] = "arm64", "v8"
    return _with_config(manifest, config)


def put_manifest(host: str, repo: str, ref: str, manifest: dict) -> str:
    """Upload the manifest's blobs from the store, then the manifest as ``repo:ref``; its digest."""
    with RegistryClient(host) as client:
        for desc in [manifest["config"], *manifest["layers"]]:
            with store.blob_path(desc["digest"]).open("rb") as fh:
                client.upload_blob(repo, desc["digest"], desc["size"], fh)
        return client.put_manifest(repo, ref, store.canonical_json(manifest), mt.OCI_MANIFEST)


def put_index(host: str, repo: str, tag: str, platforms: list[tuple[str, str, dict]]) -> str:
    """An OCI index over (architecture, variant, manifest) entries, each manifest pushed by digest."""
    entries = []
    for arch, variant, manifest in platforms:
        digest = put_manifest(host, repo, f"sha256:{_digest(manifest)}", manifest)
        platform = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
        data = store.canonical_json(manifest)
        entries.append({"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(data), "platform": platform})
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    with RegistryClient(host) as client:
        return client.put_manifest(repo, tag, store.canonical_json(index), mt.OCI_INDEX)


def _digest(manifest: dict) -> str:
    import hashlib

    return hashlib.sha256(store.canonical_json(manifest)).hexdigest()
