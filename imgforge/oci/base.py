"""The base image of an oci build, pinned by digest and copied into the store.

A base whose reference names a registry host (``cr.example.com/x:1``, ``127.0.0.1:5000/x``) is read
from that registry with imgforge's client; any other reference (``imgforge/nginx-debian:bookworm``,
``nginxinc/nginx-unprivileged:1.27``) is looked up in the local engine first, because Docker Hub is
out of reach on many of the machines this runs on, and from Docker Hub only when the engine lacks
it. A local base is saved once (``docker save``) and kept as an OCI manifest of its uncompressed
layers; its digest, the digest of that manifest, is remembered by image ID so the next build asks
the engine one ``inspect`` and nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from imgforge.errors import ImageInvalid, ImageNotFound, PlatformNotFound
from imgforge.image import mediatypes as mt
from imgforge.image.limits import declared_size, layer_count
from imgforge.image.platform import Platform, matches
from imgforge.image.source import FetchedManifest
from imgforge.image_ref import DOCKER_HUB, ImageRef
from imgforge.oci import store


@dataclass(frozen=True)
class PlatformBase:
    """One platform's manifest of the base: its descriptor fields, the documents, the layers."""

    digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    platform: Platform

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.manifest["layers"])


@dataclass(frozen=True)
class BaseImage:
    """``reference`` pinned to ``digest`` (an index's digest when the base is multi-platform)."""

    reference: str
    digest: str
    platforms: tuple[PlatformBase, ...]
    is_index: bool = False
    registry: str | None = None  # where the base lives, for cross-repository mounts
    repository: str | None = None
    available: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        """The reference without a digest: the ``org.opencontainers.image.base.name`` label."""
        ref = ImageRef.parse(self.reference)
        return str(ref.with_digest(None))


def is_registry_reference(reference: str) -> bool:
    return ImageRef.parse(reference).registry != DOCKER_HUB


def resolve_base(reference: str, platforms: Sequence[str] = ()) -> BaseImage:
    """Pin ``reference`` and copy what the build needs (configs; layers of local bases) into the store.

    ``platforms`` (``linux/arm64`` …) selects manifests of a multi-platform base; empty takes all.
    """
    if not is_registry_reference(reference):
        from imgforge.engine import docker_client

        ref = ImageRef.parse(reference)
        name = str(ref.with_digest(None))
        try:
            docker_client().api.inspect_image(name)  # type: ignore[no-untyped-call]
        except Exception:  # noqa: BLE001 (no engine, or not there: try its registry below)
            pass
        else:
            found = _from_engine(name, platforms)
            if ref.digest and ref.digest != found.digest:
                raise ImageNotFound(
                    f"base {reference} is pinned to {ref.digest}, but the engine's {name} is {found.digest}: "
                    "run `imgforge base update` to move the pin"
                )
            return found
    return _from_registry(reference, platforms)


def _wanted(platforms: Sequence[str]) -> list[Platform]:
    return [Platform.parse(p).normalized() for p in platforms]


def _keep(have: Platform, wanted: list[Platform]) -> bool:
    return not wanted or any(matches(w, have.normalized(), exact_variant=bool(w.variant)) for w in wanted)


def _platform_of(config: dict[str, Any]) -> Platform:
    return Platform(
        os=str(config.get("os", "")),
        architecture=str(config.get("architecture", "")),
        variant=config.get("variant", ""),
    )


def _from_engine(reference: str, platforms: Sequence[str]) -> BaseImage:
    from imgforge.engine import docker_client
    from imgforge.image import DockerEngineSource, resolve

    image_id = docker_client().api.inspect_image(reference)["Id"]  # type: ignore[no-untyped-call]
    known = _local_digests()
    digest = known.get(image_id)
    if digest is None or not store.has_blob(digest):
        with DockerEngineSource(reference) as source:
            image = resolve(source)
            for desc in (image.manifest.config, *image.manifest.layers):
                with source.open_blob(desc.digest) as stream:
                    store.put_stream(stream, desc.digest)
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": image.config_digest, "size": image.manifest.config.size},
            "layers": [{"mediaType": mt.OCI_LAYER, "digest": d.digest, "size": d.size} for d in image.manifest.layers],
        }
        digest = store.put_bytes(store.canonical_json(manifest))
        known[image_id] = digest
        store.put_local_digests(known)
    manifest = json.loads(store.read_blob(digest))
    config = json.loads(store.read_blob(manifest["config"]["digest"]))
    platform = _platform_of(config)
    if not _keep(platform, _wanted(platforms)):
        raise PlatformNotFound(f"docker engine image {reference}", ", ".join(platforms), [str(platform)])
    return BaseImage(reference, digest, (PlatformBase(digest, manifest, config, platform),), available=(str(platform),))


def _local_digests() -> dict[str, str]:
    try:
        data = json.loads((store.oci_root() / "local-bases.json").read_bytes())
    except (OSError, ValueError):
        return {}
    return (
        {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}
    )


class _StoreSource:
    """The registry's documents, read once into the store (an ImageSource for the image reader)."""

    def describe(self) -> str:
        return "imgforge oci store"

    def get_manifest(self, reference: str | None, accept: Sequence[str], max_bytes: int) -> FetchedManifest:
        if reference is None:
            raise ImageNotFound("imgforge oci store: name a digest")
        return FetchedManifest(store.read_blob(reference), None, reference)

    def open_blob(self, digest: str) -> IO[bytes]:
        try:
            return store.blob_path(digest).open("rb")
        except FileNotFoundError as e:
            raise ImageNotFound(f"imgforge oci store: blob {digest} is missing") from e


def _from_registry(reference: str, platforms: Sequence[str]) -> BaseImage:
    try:
        return _read_registry(reference, platforms)
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # a registry's JSON is not trusted
        raise ImageInvalid(f"base {reference}: the registry served a malformed manifest or config ({e!r})") from e


def _read_registry(reference: str, platforms: Sequence[str]) -> BaseImage:
    from imgforge.registry.client import RegistryClient, Repository

    ref = ImageRef.parse(reference)
    repo = Repository.parse(ref.name)
    wanted = _wanted(platforms)
    with RegistryClient(repo.registry) as client:
        data, media_type, digest = client.get_manifest(repo.name, ref.digest or ref.tag or "latest", mt.ACCEPT)
        store.put_bytes(data)
        doc = json.loads(data)
        kind = doc.get("mediaType") or media_type
        chosen: list[PlatformBase] = []
        available: list[str] = []
        if kind in mt.INDEX_TYPES:
            for entry in doc.get("manifests", []):
                plat = entry.get("platform") or {}
                have = Platform(
                    os=str(plat.get("os") or ""),
                    architecture=str(plat.get("architecture") or ""),
                    variant=str(plat.get("variant") or ""),
                )
                if have.os == "unknown" or entry.get("annotations", {}).get(mt.ATTESTATION_ANNOTATION):
                    continue
                available.append(str(have))
                if _keep(have, wanted):
                    chosen.append(_platform_manifest(client, repo.name, entry["digest"]))
        else:
            one = _platform_manifest(client, repo.name, digest)
            available.append(str(one.platform))
            if _keep(one.platform, wanted):
                chosen.append(one)
    if not chosen:
        raise PlatformNotFound(f"registry {repo}", ", ".join(platforms), available)
    return BaseImage(
        reference,
        digest,
        tuple(chosen),
        is_index=kind in mt.INDEX_TYPES,
        registry=repo.registry,
        repository=repo.name,
        available=tuple(available),
    )


def _platform_manifest(client: Any, name: str, digest: str) -> PlatformBase:
    data, _, got = client.get_manifest(name, digest, (mt.OCI_MANIFEST, mt.DOCKER_MANIFEST))
    manifest = json.loads(data)
    where = f"base {client.registry}/{name}@{got}"
    size = declared_size(where, manifest["config"], "max_config_bytes")
    for layer in layer_count(where, manifest["layers"]):
        declared_size(where, layer, "max_layer_bytes")
    store.put_bytes(data)
    config_digest = manifest["config"]["digest"]
    if not store.has_blob(config_digest):
        with client.open_blob(name, config_digest, size) as stream:
            store.put_stream(stream, config_digest)
    config = json.loads(store.read_blob(config_digest))
    return PlatformBase(got, manifest, config, _platform_of(config))


def fetch_layers(base: BaseImage, plat: PlatformBase) -> None:
    """Copy the layers of one platform of a registry base into the store (local bases have them)."""
    if base.registry is None or base.repository is None:
        return
    from imgforge.registry.client import RegistryClient

    missing = [layer for layer in plat.layers if not store.has_blob(layer["digest"])]
    if not missing:
        return
    where = f"base {base.registry}/{base.repository}@{plat.digest}"
    sizes = [declared_size(where, layer, "max_layer_bytes") for layer in layer_count(where, missing)]
    with RegistryClient(base.registry) as client:
        for layer, size in zip(missing, sizes, strict=True):
            with client.open_blob(base.repository, layer["digest"], size) as stream:
                store.put_stream(stream, layer["digest"])


def store_source() -> _StoreSource:
    return _StoreSource()
