"""Manifest calls of the registry client: read, write and resolve manifests and indexes.

A manifest is small (the spec asks registries to accept 4 MiB; we read and send no more) and it
names everything else, so its bytes are checked before anyone uses them: fetched by digest, they
must hash to that digest; fetched by tag, they must hash to the ``Docker-Content-Digest`` the
registry sends with them (when it sends one). A stored manifest's digest is the sha256 of the
exact bytes we sent, and the registry's answer must agree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from imgforge import _http
from imgforge._http import Answer
from imgforge._stream import digest_of, is_digest
from imgforge.errors import RegistryError
from imgforge.registry.api import DigestMismatch, RegistryApi, path, pull_scope, push_scope

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_TYPES = (
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
)


def _algorithm(digest: str) -> str:
    return digest.split(":", 1)[0]


class ManifestCalls(RegistryApi):
    """``get_manifest``, ``put_manifest``, ``delete_manifest`` and ``manifest_digest``."""

    def get_manifest(self, name: str, reference: str, accept: Sequence[str] = MANIFEST_TYPES) -> tuple[bytes, str, str]:
        """``(bytes, media type, digest)`` of ``name:reference`` (a tag or a digest).

        At most ``max_manifest`` bytes. A digest reference is checked against the bytes; for a tag,
        a ``Docker-Content-Digest`` the registry sends must match them too. The digest returned is
        computed here (the reference's algorithm, else sha256). The media type is the answer's
        ``Content-Type`` without parameters ("" when absent). Raises ManifestNotFound (or
        RepositoryNotFound) for a 404, DigestMismatch for bytes that do not match.
        """
        data, media_type, digest, _ = self._fetch_manifest(name, reference, accept)
        return data, media_type, digest

    def _fetch_manifest(self, name: str, reference: str, accept: Sequence[str]) -> tuple[bytes, str, str, Answer]:
        r = self._request(
            "GET",
            path(name, "manifests", reference),
            repo=name,
            scope=pull_scope(name),
            headers={"Accept": ", ".join(accept)},
            allow=(200, 404),
            max_body=self.max_manifest,
        )
        if r.status == 404:
            raise self._missing(r, name, f"manifest {reference}")
        where = f"{self._where(name)} manifest {reference}"
        digest = digest_of(r.body, _algorithm(reference) if is_digest(reference) else "sha256")
        if is_digest(reference) and digest != reference:
            raise DigestMismatch(f"{where}: served content whose digest is {digest}; not using it")
        self._check_claim(r, r.body, where)
        media_type = r.headers.get("Content-Type", "").split(";", 1)[0].strip()
        return r.body, media_type, digest, r

    def put_manifest(self, name: str, reference: str, data: bytes, media_type: str) -> str:
        """Store ``data`` as ``name:reference`` (a tag, or the digest of ``data``); returns its digest.

        ``media_type`` becomes the ``Content-Type`` and must equal the document's own ``mediaType``
        when it has one (the spec requires it). Bytes over ``max_manifest`` are not sent. The
        registry's ``Docker-Content-Digest`` must equal the digest of the bytes sent.
        """
        digest, _ = self._put_manifest(name, reference, data, media_type)
        return digest

    def _put_manifest(
        self,
        name: str,
        reference: str,
        data: bytes,
        media_type: str,
        *,
        headers: dict[str, str] | None = None,
        allow: Sequence[int] = (201,),
    ) -> tuple[str, Answer]:
        target = path(name, "manifests", reference)
        where = f"{self._where(name)} manifest {reference}"
        if len(data) > self.max_manifest:
            raise RegistryError(
                f"{where}: {len(data)} bytes is above the limit of {_http.size_text(self.max_manifest)}; not sending it"
            )
        _check_media_type(data, media_type)
        digest = digest_of(data, _algorithm(reference) if is_digest(reference) else "sha256")
        if is_digest(reference) and digest != reference:
            raise ValueError(f"put_manifest: the data's digest is {digest}, not the reference {reference}")
        r = self._request(
            "PUT",
            target,
            repo=name,
            scope=push_scope(name),
            headers={**(headers or {}), "Content-Type": media_type},
            data=data,
            allow=allow,
        )
        if r.status in (200, 201, 202):
            self._check_claim(r, data, where, stored=True)
        return digest, r

    def delete_manifest(self, name: str, digest: str) -> None:
        """Delete the manifest ``digest`` and every tag on it (registries may refuse: 400/405)."""
        if not is_digest(digest):
            raise ValueError(f"delete_manifest takes a digest, not {digest[:80]!r}")
        r = self._request(
            "DELETE", path(name, "manifests", digest), repo=name, scope=f"repository:{name}:delete", allow=(202, 404)
        )
        if r.status == 404:
            raise self._missing(r, name, f"manifest {digest}")

    def manifest_digest(self, name: str, reference: str) -> str | None:
        """The registry's digest for ``name:reference`` (``sha256:...``), None if the tag is absent.

        Asked with HEAD: the ``Docker-Content-Digest`` header is the registry's word, unverified
        (there are no bytes to check). Without the header the manifest is fetched and hashed.
        """
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        target = path(name, "manifests", reference)
        r = self._request("HEAD", target, repo=name, scope=pull_scope(name), headers=headers, allow=(200, 404))
        if r.status == 404:
            return None
        digest = r.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        return self.get_manifest(name, reference)[2]

    def _check_claim(self, r: Answer, data: bytes, where: str, *, stored: bool = False) -> None:
        """A ``Docker-Content-Digest`` sent with ``data`` (or for it, ``stored``) must be its digest."""
        claimed = r.headers.get("Docker-Content-Digest", "").strip()
        if not claimed:
            return
        if not is_digest(claimed):
            raise DigestMismatch(f"{where}: the registry sent a Docker-Content-Digest that is not a digest")
        if digest_of(data, _algorithm(claimed)) != claimed:
            did = "stored it as" if stored else "claims"
            raise DigestMismatch(
                f"{where}: the registry {did} {claimed}, but the bytes are {digest_of(data, _algorithm(claimed))}"
            )


def _check_media_type(data: bytes, media_type: str) -> None:
    try:
        inner = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        raise ValueError("put_manifest: the data is not a JSON object") from None
    if inner is not None and inner != media_type:
        raise ValueError(f"put_manifest: Content-Type {media_type} but the document's mediaType is {inner}")
