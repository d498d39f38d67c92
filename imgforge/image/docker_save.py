"""Images of a local Docker engine, read from what ``docker save`` writes.

Two archive formats exist and both are read:

* the legacy one (every engine before Docker 25, including Debian's docker.io 20.10 on this
  project's machines): ``manifest.json`` naming ``<id>.json`` (the config) and ``<id>/layer.tar``
  (uncompressed layers). It has no manifest blob, so one is synthesised from it: an OCI manifest
  whose layer digests are the config's ``diff_ids`` (the layer tars are exactly those diffs, and
  each is verified against them as it streams) and whose config digest is the config file's name.
  Its digest is therefore *not* a registry digest; ``config_digest`` (the image ID) is the
  identity to use.
* Docker ≥ 25 writes an OCI image layout inside the tar (``oci-layout``, ``index.json``,
  ``blobs/``), read by :class:`~imgforge.image.layout.OciLayout`.

The engine streams the archive with members in no useful order, so it is spooled to a temporary
file (capped by ``max_archive_bytes``) and read with random access; close the source (or use it
as a context manager) to delete the file.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Self

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from imgforge.errors import DockerError, ImageInvalid, ImageNotFound, LimitExceeded
from imgforge.image import mediatypes as mt
from imgforge.image.config import parse_config
from imgforge.image.digest import check_digest, digest_of, read_capped
from imgforge.image.layout import OciLayout, TarStore
from imgforge.image.limits import DEFAULT_LIMITS, Limits
from imgforge.image.model import validate_json
from imgforge.image.source import FetchedManifest

_SPOOL_CHUNK = 1024 * 1024


@dataclass(frozen=True, kw_only=True, config=ConfigDict(strict=True, extra="ignore", populate_by_name=True))
class _SaveEntry:
    config: str = Field(validation_alias="Config")
    repo_tags: list[str] | None = Field(default=None, validation_alias="RepoTags")
    layers: list[str] = Field(validation_alias="Layers")


class DockerArchive:
    """An :class:`~imgforge.image.source.ImageSource` over a ``docker save`` tar on disk (either format)."""

    def __init__(self, path: Path, reference: str | None = None, limits: Limits = DEFAULT_LIMITS):
        self.path = Path(path)
        self._limits = limits
        try:
            self._tar = tarfile.open(self.path, "r:")  # noqa: SIM115 (held open for the source's life; close())
        except (OSError, tarfile.TarError) as e:
            raise ImageInvalid(f"{path}: not a docker save archive ({e})") from e
        try:
            self._store = TarStore(self._tar, f"docker archive {path}", limits)
            names = self._store.names()
            self._layout: OciLayout | None = None
            if {"oci-layout", "index.json"} <= names:
                self._layout = OciLayout(self._store, limits)
                self._reference = reference
            elif "manifest.json" in names:
                self._legacy(reference)
            else:
                raise ImageInvalid(  # noqa: TRY301 (the tar is closed on any failure, this one included)
                    f"{path}: neither an OCI layout nor a legacy docker save archive"
                )
        except BaseException:
            self._tar.close()
            raise

    @property
    def is_oci_layout(self) -> bool:
        return self._layout is not None

    def describe(self) -> str:
        return self._store.describe()

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_manifest(self, reference: str | None, accept: Sequence[str], max_bytes: int) -> FetchedManifest:
        if self._layout is not None:
            return self._layout.get_manifest(reference if reference is not None else self._reference, accept, max_bytes)
        if reference is not None and reference != self.manifest_digest:
            raise ImageNotFound(f"{self.describe()}: no manifest {reference}")
        return FetchedManifest(self._manifest, mt.OCI_MANIFEST, None)

    def open_blob(self, digest: str) -> IO[bytes]:
        if self._layout is not None:
            return self._layout.open_blob(digest)
        name = self._blobs.get(check_digest(digest, f"{self.describe()}: blob"))
        if name is None:
            raise ImageNotFound(f"{self.describe()}: blob {digest} is not in the archive")
        return self._store.open(name)

    def _legacy(self, reference: str | None) -> None:
        where = self.describe()
        with self._store.open("manifest.json") as f:
            raw = read_capped(f, self._limits.max_manifest_bytes, f"{where}: manifest.json", "max_manifest_bytes")
        entries = validate_json(list[_SaveEntry], raw, f"{where}: manifest.json")
        entry = _pick_entry(entries, reference, where)
        config_digest = check_digest(
            "sha256:" + os.path.basename(entry.config).removesuffix(".json"), f"{where}: manifest.json Config"
        )
        with self._store.open(_clean(entry.config)) as f:
            config_bytes = read_capped(f, self._limits.max_config_bytes, f"{where}: {entry.config}", "max_config_bytes")
        config = parse_config(config_bytes, f"{where}: {entry.config}")  # verified again by resolve()
        if len(config.diff_ids) != len(entry.layers):
            raise ImageInvalid(f"{where}: {len(entry.layers)} layers but {len(config.diff_ids)} diff_ids")
        self._blobs = {config_digest: _clean(entry.config)}
        layers: list[dict[str, Any]] = []
        for name, diff_id in zip(entry.layers, config.diff_ids, strict=True):
            try:
                size = self._store.member(_clean(name)).size
            except FileNotFoundError as e:
                raise ImageInvalid(f"{where}: layer {name} is missing") from e
            self._blobs[diff_id] = _clean(name)
            layers.append({"mediaType": mt.OCI_LAYER, "digest": diff_id, "size": size})
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.DOCKER_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": layers,
        }
        self._manifest = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        self.manifest_digest = digest_of(self._manifest)
        self.config_digest = config_digest


class DockerEngineSource:
    """An image of the local Docker engine, saved by its ID into a spooled, capped temporary archive."""

    def __init__(
        self, reference: str, *, client: Any = None, limits: Limits = DEFAULT_LIMITS, spool_dir: Path | None = None
    ):
        import docker.errors

        from imgforge.engine import docker_client

        client = client or docker_client()
        self.reference = reference
        try:
            info = client.api.inspect_image(reference)
        except docker.errors.ImageNotFound as e:
            raise ImageNotFound(f"docker engine: no image {reference!r}") from e
        except docker.errors.APIError as e:
            raise DockerError(f"docker engine: inspecting {reference!r} failed: {e.explanation}") from e
        except docker.errors.DockerException as e:
            raise DockerError(f"docker engine: inspecting {reference!r} failed: {e}") from e
        self.image_id: str = info["Id"]
        self.repo_digests: tuple[str, ...] = tuple(info.get("RepoDigests") or ())
        fd, name = tempfile.mkstemp(prefix="imgforge-save-", suffix=".tar", dir=spool_dir)
        self._spool = Path(name)
        self._cleanup = weakref.finalize(self, _unlink, self._spool)
        try:
            with os.fdopen(fd, "wb") as out:
                _spool(client, self.image_id, out, limits, reference)
            self._archive = DockerArchive(self._spool, None, limits)
        except BaseException:
            self._cleanup()
            raise
        if not self._archive.is_oci_layout and self._archive.config_digest != self.image_id:
            self.close()
            raise ImageInvalid(
                f"docker engine: saved {reference!r} has config {self._archive.config_digest}, "
                f"the engine says {self.image_id}"
            )

    @property
    def archive_format(self) -> str:
        """``docker-legacy`` (engines before 25) or ``oci-layout`` (Docker ≥ 25)."""
        return "oci-layout" if self._archive.is_oci_layout else "docker-legacy"

    def describe(self) -> str:
        return f"docker engine image {self.reference}"

    def get_manifest(self, reference: str | None, accept: Sequence[str], max_bytes: int) -> FetchedManifest:
        return self._archive.get_manifest(reference, accept, max_bytes)

    def open_blob(self, digest: str) -> IO[bytes]:
        return self._archive.open_blob(digest)

    def close(self) -> None:
        self._archive.close()
        self._cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _spool(client: Any, image_id: str, out: IO[bytes], limits: Limits, reference: str) -> None:
    import docker.errors
    import requests

    written = 0
    try:
        for chunk in client.api.get_image(image_id, chunk_size=_SPOOL_CHUNK):
            written += len(chunk)
            if written > limits.max_archive_bytes:
                raise LimitExceeded(
                    f"docker engine: saving {reference!r}",
                    "archive size",
                    "max_archive_bytes",
                    limits.max_archive_bytes,
                )
            out.write(chunk)
    except docker.errors.APIError as e:
        raise DockerError(f"docker engine: saving {reference!r} failed: {e.explanation}") from e
    except (docker.errors.DockerException, requests.RequestException) as e:
        raise DockerError(f"docker engine: saving {reference!r} failed: {e}") from e


def _pick_entry(entries: list[_SaveEntry], reference: str | None, where: str) -> _SaveEntry:
    if reference is None:
        if len(entries) != 1:
            raise ImageNotFound(f"{where}: holds {len(entries)} images; name one")
        return entries[0]
    wanted = {reference, f"{reference}:latest"}
    for entry in entries:
        if wanted & set(entry.repo_tags or ()):
            return entry
    raise ImageNotFound(f"{where}: no image tagged {reference!r}")


def _clean(name: str) -> str:
    return os.path.normpath("/" + name).lstrip("/")


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
