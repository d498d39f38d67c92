"""An oci build's way out: into a Docker engine (``docker load``), through ``nginx -t``, to a registry.

- ``load``: the host platform's image as a ``docker save`` archive of the legacy format (the one
  Docker 20.10 writes and every ``docker load`` reads), streamed to the engine; its image ID is the
  config digest, so the verify record of ``imgforge test`` is keyed exactly as for a docker build.
- ``config_test``: ``nginx -t`` as the runtime user, read-only root and a tmpfs ``/tmp``, the same
  command the Dockerfile runs at build time; a broken config fails with nginx's own message.
- ``push``: every blob HEADed first, base layers mounted from the base's repository when it is on
  the same registry, the rest uploaded; then the platform manifests by digest and the top one by
  tag, and the registry's digest for the tag must be the layout's.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from imgforge._stream import ChunkStream
from imgforge.config import Site
from imgforge.errors import BuildFailed, DigestMismatch, DockerError, NotFound
from imgforge.image import mediatypes as mt
from imgforge.image.platform import host_platform
from imgforge.image_ref import ImageRef
from imgforge.oci import store
from imgforge.oci.assemble import BASE_NAME, REF_NAME


@dataclass(frozen=True)
class PushReport:
    digest: str
    uploaded: list[str]  # blobs sent
    mounted: list[str]  # blobs linked from the base's repository
    present: list[str]  # blobs the repository already held
    bytes_uploaded: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "uploaded": len(self.uploaded),
            "mounted": len(self.mounted),
            "present": len(self.present),
            "bytes_uploaded": self.bytes_uploaded,
        }


def layout_top(site: Site) -> dict[str, Any]:
    """The layout's descriptor for the site's current tag, or NotFound (build it first)."""
    index = store.read_index(store.site_layout(site.name)) or {}
    for desc in index.get("manifests", []):
        if (desc.get("annotations") or {}).get(REF_NAME) == site.tag:
            return dict(desc)
    raise NotFound(f"no oci build of {site.reference} in the cache: run `imgforge build {site.name} --builder oci`")


def platform_manifests(top: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(descriptor, manifest) of every platform the top descriptor stands for."""
    descs = [top]
    if top["mediaType"] == mt.OCI_INDEX:
        descs = json.loads(store.read_blob(top["digest"]))["manifests"]
    return [(d, json.loads(store.read_blob(d["digest"]))) for d in descs]


def _host_manifest(top: dict[str, Any]) -> dict[str, Any]:
    found = platform_manifests(top)
    host = host_platform()
    for desc, manifest in found:
        if (desc.get("platform") or {}).get("architecture") == host.architecture:
            return manifest
    return found[0][1]


def archive_stream(site: Site, top: dict[str, Any]) -> Iterator[bytes]:
    """The host platform's image as a legacy ``docker save`` tar, made as it is read."""
    manifest = _host_manifest(top)
    config_digest = manifest["config"]["digest"]
    layers = [f"{d['digest'].split(':', 1)[1]}.tar" for d in manifest["layers"]]
    entry: list[dict[str, Any]] = [
        {"Config": f"{config_digest.split(':', 1)[1]}.json", "RepoTags": [site.reference], "Layers": layers}
    ]
    members: list[tuple[str, bytes | None, str | None]] = [("manifest.json", json.dumps(entry).encode(), None)]
    members.append((entry[0]["Config"], store.read_blob(config_digest), None))
    seen = set()
    for name, desc in zip(layers, manifest["layers"], strict=True):
        if name not in seen:
            seen.add(name)
            members.append((name, None, desc["digest"]))
    for name, data, digest in members:
        info = tarfile.TarInfo(name)
        info.mode = 0o644
        path = store.blob_path(digest) if digest else None
        info.size = os.path.getsize(path) if path is not None else len(data or b"")
        yield info.tobuf(tarfile.GNU_FORMAT)
        if data is not None:
            yield data
        elif path is not None:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    yield chunk
        yield b"\0" * (-info.size % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def load(site: Site) -> str:
    """Load the site's oci build into the engine as ``image:tag``; returns its image ID."""
    import docker.errors

    from imgforge.engine import docker_client

    top = layout_top(site)
    client = docker_client()
    try:
        for _ in client.api.load_image(ChunkStream(archive_stream(site, top))):  # type: ignore[no-untyped-call]  # untyped in types-docker
            pass
        image_id: str = client.api.inspect_image(site.reference)["Id"]  # type: ignore[no-untyped-call]
    except docker.errors.APIError as e:
        raise DockerError(f"docker load of {site.reference}: {e.explanation or e}") from e
    expected = _host_manifest(top)["config"]["digest"]
    if image_id != expected:
        raise DigestMismatch(
            f"docker load of {site.reference} gave image {image_id}, the layout's config is {expected}"
        )
    return image_id


def config_test(site: Site, image: str) -> None:
    """``nginx -t`` in the image as the runtime user (read-only root, tmpfs /tmp, no capabilities)."""
    import docker.errors

    from imgforge.engine import docker_client
    from imgforge.verify.fleet import OWNER_LABEL

    client = docker_client()
    labels = {OWNER_LABEL: os.environ.get("IMGFORGE_OWNER") or "imgforge"}
    try:
        container = client.containers.create(
            image,
            ["nginx", "-e", "stderr", "-t", "-q"],
            user=f"{site.uid}:{site.gid}",
            read_only=True,
            tmpfs={"/tmp": "rw,size=16m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            network_disabled=True,
            labels=labels,
        )
    except docker.errors.APIError as e:
        raise DockerError(f"cannot create the nginx -t container of {image}: {e.explanation or e}") from e
    try:
        container.start()
        code = container.wait(timeout=60).get("StatusCode", 1)
        logs = container.logs().decode("utf-8", "replace").strip()
    except (docker.errors.APIError, OSError) as e:
        raise DockerError(f"nginx -t in {image}: {e}") from e
    finally:
        container.remove(force=True)
    if code != 0:
        lines = logs.splitlines() or [f"exit {code}"]
        raise BuildFailed(site.name, "nginx -t", lines[-1], lines[-30:])


def push(site: Site, tags: list[str], on_event: Callable[[str], None] | None = None) -> PushReport:
    """Upload the site's oci build as ``image:tag`` for each tag; returns what was sent."""
    from imgforge.registry.client import RegistryClient, Repository

    say = on_event or (lambda _t: None)
    top = layout_top(site)
    repo = Repository.parse(site.image)
    found = platform_manifests(top)
    base_repo = _mount_source(found, repo.registry)
    uploaded: list[str] = []
    mounted: list[str] = []
    present: list[str] = []
    sent = 0
    with RegistryClient(repo.registry) as client:
        done: set[str] = set()
        for _, manifest in found:
            for desc in [manifest["config"], *manifest["layers"]]:
                digest, size = desc["digest"], desc["size"]
                if digest in done:
                    continue
                done.add(digest)
                if client.blob_exists(repo.name, digest) is not None:
                    present.append(digest)
                    continue
                with store.blob_path(digest).open("rb") as fh:
                    if base_repo and base_repo != repo.name:
                        how = client.mount_blob(repo.name, digest, base_repo, size=size, data=fh)
                    else:
                        client.upload_blob(repo.name, digest, size, fh)
                        how = "uploaded"
                if how == "mounted":
                    mounted.append(digest)
                else:
                    uploaded.append(digest)
                    sent += size
                say(f"{how} {digest[:19]} ({size} bytes)")
        if top["mediaType"] == mt.OCI_INDEX:
            for desc, _ in found:
                client.put_manifest(repo.name, desc["digest"], store.read_blob(desc["digest"]), desc["mediaType"])
        data = store.read_blob(top["digest"])
        for tag in tags:
            client.put_manifest(repo.name, tag, data, top["mediaType"])
            remote = client.manifest_digest(repo.name, tag)
            if remote != top["digest"]:
                raise DigestMismatch(f"{site.image}:{tag}: registry has {remote}, the oci build is {top['digest']}")
            say(f"{site.image}:{tag}@{remote}")
    return PushReport(top["digest"], uploaded, mounted, present, sent)


def _mount_source(found: list[tuple[dict[str, Any], dict[str, Any]]], registry: str) -> str | None:
    """The base's repository when it lives on ``registry`` (its layers can be mounted from there)."""
    name = ((found[0][1].get("annotations") or {}).get(BASE_NAME)) if found else None
    if not name:
        return None
    ref = ImageRef.parse(name)
    return ref.path if ref.registry == registry else None
