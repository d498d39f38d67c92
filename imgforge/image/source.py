"""Where image bytes come from: one small protocol, so the resolver and layer reader never care.

A source answers two questions: "the manifest (or index) called REFERENCE, please" and "a
stream of the blob with this digest". That is all a registry, an OCI layout on disk and a
``docker save`` archive have in common, and all the reader needs. Sources are *not* trusted:
:mod:`imgforge.image.resolve` and :mod:`imgforge.image.layers` verify every digest and size.

:class:`RegistrySource` adapts any registry client with ``get_manifest(name, reference, accept)
-> (bytes, media_type, digest)`` and ``open_blob(name, digest) -> stream``, which is the shape of
imgforge's registry client; the adapter adds nothing but the repository name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Protocol, runtime_checkable

from imgforge.errors import LimitExceeded


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest or index as a source served it. Nothing here is verified yet."""

    data: bytes
    media_type: str | None  # Content-Type, or the descriptor's media type; None when unknown
    digest: str | None  # the digest the source claims for it (a registry's Docker-Content-Digest)


@runtime_checkable
class ImageSource(Protocol):
    """Something that serves manifests by reference and blobs by digest.

    ``reference`` is a tag, a name the source knows, or a ``sha256:…`` digest; None means the
    image the source was opened for (a layout's ``index.json``, the saved engine image, the
    registry reference given to the adapter). ``max_bytes`` is the caller's cap: a source that
    can stop reading early should, and must never return more.
    """

    def describe(self) -> str:
        """A short name for messages: ``oci layout /srv/x``, ``docker engine image nginx:1``."""
        ...

    def get_manifest(self, reference: str | None, accept: Sequence[str], max_bytes: int) -> FetchedManifest: ...

    def open_blob(self, digest: str) -> IO[bytes]:
        """A readable stream of the blob; the caller closes it. Raises ImageNotFound if absent."""
        ...


class RegistryClientLike(Protocol):
    """The two calls of a registry client the reader needs (imgforge's client has both)."""

    def get_manifest(self, name: str, reference: str, accept: Sequence[str]) -> tuple[bytes, str, str]: ...

    def open_blob(self, name: str, digest: str) -> IO[bytes]: ...


class RegistrySource:
    """An :class:`ImageSource` over one repository of a registry client."""

    def __init__(self, client: RegistryClientLike, name: str, reference: str):
        self._client = client
        self._name = name
        self._reference = reference

    def describe(self) -> str:
        return f"registry repository {self._name}"

    def get_manifest(self, reference: str | None, accept: Sequence[str], max_bytes: int) -> FetchedManifest:
        data, media_type, digest = self._client.get_manifest(self._name, reference or self._reference, accept)
        if len(data) > max_bytes:
            raise LimitExceeded(
                f"{self.describe()}: manifest {reference or self._reference}",
                "document size",
                "max_manifest_bytes",
                max_bytes,
            )
        return FetchedManifest(data=data, media_type=media_type or None, digest=digest or None)

    def open_blob(self, digest: str) -> IO[bytes]:
        return self._client.open_blob(self._name, digest)
