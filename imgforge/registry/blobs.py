"""Blob calls of the registry client: stream a blob down, check for one, upload or mount one.

Blobs are layers and configs, sometimes hundreds of MiB: they never sit in memory whole. A
download is a stream verified as it is read (:mod:`imgforge._stream`: exactly the expected size,
a deadline of ``timeout + size / min_rate``, the digest checked at the end, no credentials to the
storage host a registry redirects to). An upload is the spec's monolithic ``POST`` then ``PUT``
with the body streamed from the caller's bytes or file, hashed on the way out; a blob the
repository already holds (``HEAD``) is not sent again. Chunked ``PATCH`` uploads are not used:
they buy resuming a broken transfer, which this client does not do, and every registry takes the
monolithic form (the spec requires it).
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import IO, BinaryIO, Literal
from urllib.parse import quote, urljoin

from imgforge import _scrub
from imgforge._http import Upload
from imgforge._stream import CHUNK, deadline_for, is_digest
from imgforge.errors import RegistryError
from imgforge.registry.api import DigestMismatch, RegistryApi, path, pull_scope, push_scope

log = logging.getLogger("imgforge.registry")


def _blob_path(name: str, digest: str) -> str:
    if not is_digest(digest):
        raise ValueError(f"{digest[:80]!r} is not a sha256 or sha512 digest")
    return path(name, "blobs", digest)


class BlobCalls(RegistryApi):
    """``open_blob``, ``blob_exists``, ``upload_blob`` and ``mount_blob``."""

    def open_blob(self, name: str, digest: str, size: int | None = None) -> BinaryIO:
        """A stream of the blob ``digest`` of ``name``; close it (or use ``with``).

        ``size`` is what the caller's descriptor says; without it the answer's ``Content-Length``
        is the size (required, at most ``max_blob``). The stream gives at most that many bytes and
        its final read (the one returning ``b""``) verifies size and digest, raising
        DigestMismatch or RegistryError instead of ending when they are wrong. Bytes read before
        that are unverified: do not act on them until the end. Raises BlobNotFound for a 404.
        """
        r = self._stream(_blob_path(name, digest), repo=name, scope=pull_scope(name), digest=digest, size=size)
        if r.status == 404 or r.stream is None:
            raise self._missing(r, name, f"blob {digest}")
        return io.BufferedReader(r.stream, CHUNK)

    def blob_exists(self, name: str, digest: str) -> int | None:
        """The size of blob ``digest`` in ``name`` (``HEAD``), or None when it is not there."""
        r = self._request("HEAD", _blob_path(name, digest), repo=name, scope=pull_scope(name), allow=(200, 404))
        if r.status == 404:
            return None
        where = f"{self._where(name)} blob {digest}"
        claimed = r.headers.get("Docker-Content-Digest", "").strip()
        if claimed and claimed != digest and claimed.split(":", 1)[0] == digest.split(":", 1)[0]:
            raise DigestMismatch(f"{where}: the registry answered for {_scrub.sanitize(claimed, limit=80)}")
        length = r.headers.get("Content-Length", "").strip()
        if not length.isdigit():
            raise RegistryError(f"{where}: the registry answered HEAD without a valid Content-Length")
        return int(length)

    def upload_blob(self, name: str, digest: str, size: int, data: bytes | IO[bytes]) -> bool:
        """Make sure ``name`` holds blob ``digest``; True when it was sent, False when already there.

        ``data`` (bytes, or a binary stream positioned at the blob's start) must give exactly
        ``size`` bytes with that digest; otherwise nothing complete is sent and DigestMismatch or
        RegistryError is raised. A seekable stream can be sent again when the registry asks for
        credentials anew; another stream cannot (that is an error, not a silent retry).
        """
        have = self.blob_exists(name, digest)
        if have is not None:
            if have != size:
                raise RegistryError(f"{self._where(name)} holds blob {digest} with {have} bytes, not {size}")
            return False
        location = self._start_upload(name, {})
        if location is None:
            raise RegistryError(f"{self._where(name)} answered 201 to opening an upload session")
        self._finish_upload(name, location, digest, size, data)
        return True

    def mount_blob(
        self, name: str, digest: str, from_name: str, *, size: int | None = None, data: bytes | IO[bytes] | None = None
    ) -> Literal["mounted", "uploaded", "declined"]:
        """Mount blob ``digest`` from repository ``from_name`` of the same registry into ``name``.

        ``mounted``: the registry linked it (201), nothing was sent. When it declines (202, as
        the spec allows: no such blob there, no pull access, or no mounting at all), the upload
        session it opened is used to send ``data`` (``uploaded``) or, without data, cancelled
        (``declined``: upload it yourself). Needs pull on ``from_name`` and push on ``name``.
        """
        _blob_path(from_name, digest)  # both names checked before anything is sent
        scope = f"{push_scope(name)} {pull_scope(from_name)}"
        location = self._start_upload(name, {"mount": digest, "from": from_name}, scope=scope)
        if location is None:
            return "mounted"
        if data is None or size is None:
            self._cancel_upload(name, location)
            return "declined"
        self._finish_upload(name, location, digest, size, data)
        return "uploaded"

    def _start_upload(self, name: str, params: dict[str, str], *, scope: str = "") -> str | None:
        """POST an upload: the session's location (202), or None when a mount was done (201)."""
        r = self._request(
            "POST",
            path(name, "blobs", "uploads") + "/",
            repo=name,
            scope=scope or push_scope(name),
            params=params or None,
            allow=(201, 202),
        )
        if r.status == 201:
            claimed = r.headers.get("Docker-Content-Digest", "").strip()
            if claimed and claimed != params.get("mount"):
                raise DigestMismatch(
                    f"{self._where(name)}: mounted {_scrub.sanitize(claimed, limit=80)} for blob {params['mount']}"
                )
            return None
        location = r.headers.get("Location", "").strip()
        if not location:
            raise RegistryError(f"{self._where(name)} opened an upload session without a Location")
        return urljoin(r.url, location)

    def _finish_upload(self, name: str, location: str, digest: str, size: int, data: bytes | IO[bytes]) -> None:
        """PUT the whole blob to the session; cancel the session if that fails."""
        upload = Upload(data, size, digest)
        body = b"".join(upload) if size == 0 else upload  # checks the digest; empty would go chunked
        target = f"{location}{'&' if '?' in location else '?'}digest={quote(digest, safe=':')}"
        try:
            r = self._request(
                "PUT",
                target,
                repo=name,
                scope=push_scope(name),
                headers={"Content-Type": "application/octet-stream"},
                data=body,
                allow=(201,),
                deadline=deadline_for(self.timeout[1], size, self.min_rate),
                retry=False,  # the session may be gone after a failed PUT; the caller starts over
            )
        except RegistryError:
            self._cancel_upload(name, location)
            raise
        claimed = r.headers.get("Docker-Content-Digest", "").strip()
        if claimed and claimed != digest:
            raise DigestMismatch(f"{self._where(name)} stored blob {digest} as {_scrub.sanitize(claimed, limit=80)}")

    def _cancel_upload(self, name: str, location: str) -> None:
        """DELETE an upload session (the spec's courtesy; failures are ignored)."""
        with contextlib.suppress(RegistryError):
            self._request("DELETE", location, repo=name, scope=push_scope(name), allow=(204, 404), retry=False)
