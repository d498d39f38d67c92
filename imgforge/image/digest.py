"""Content digests: the only thing that makes bytes from a registry, a layout or an engine trustworthy.

Every manifest, config and layer the reader uses is checked against the digest that named it:
small documents with :func:`verify_bytes` before they are parsed, layer blobs with
:class:`VerifyingReader` while they stream (the check fires when the stream ends, and a blob
longer than its descriptor's size is refused at the first extra byte, so a hostile source cannot
feed an endless stream). Only sha256 and sha512 exist in the OCI spec's registered algorithms;
the strict pattern also keeps a digest string from ever acting as a path (``sha256:../../x``).
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import IO

from imgforge.errors import ImageInvalid

DIGEST_PATTERN = r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$"
_DIGEST = re.compile(DIGEST_PATTERN)


def is_digest(text: str) -> bool:
    return bool(_DIGEST.match(text))


def check_digest(text: str, where: str) -> str:
    """Return ``text`` if it is a well-formed sha256/sha512 digest, else raise ImageInvalid."""
    if not is_digest(text):
        raise ImageInvalid(f"{where}: {text[:80]!r} is not a sha256 or sha512 digest")
    return text


def hasher_for(digest: str) -> hashlib._Hash:
    return hashlib.new(digest.split(":", 1)[0])


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify_bytes(data: bytes, digest: str, where: str, size: int | None = None) -> None:
    """Raise ImageInvalid unless ``data`` has the given digest (and size, when a descriptor gave one)."""
    check_digest(digest, where)
    if size is not None and len(data) != size:
        raise ImageInvalid(f"{where}: {len(data)} bytes served, the descriptor says {size}")
    h = hasher_for(digest)
    h.update(data)
    got = f"{digest.split(':', 1)[0]}:{h.hexdigest()}"
    if got != digest:
        raise ImageInvalid(f"{where}: content digest is {got}, expected {digest}")


def read_capped(stream: IO[bytes], cap: int, where: str, limit_name: str) -> bytes:
    """Read a whole small document, refusing it as soon as it passes ``cap`` bytes."""
    from imgforge.errors import LimitExceeded

    parts: list[bytes] = []
    total = 0
    while chunk := stream.read(cap + 1 - total):  # a network stream may return short reads
        parts.append(chunk)
        total += len(chunk)
        if total > cap:
            raise LimitExceeded(where, "document size", limit_name, cap)
    return b"".join(parts)


class VerifyingReader(io.RawIOBase):
    """A read-only stream that hashes and counts what passes through it.

    ``size``: refuse any byte past it and require exactly it at the end. ``digest``: require it
    at the end. The end is either the underlying EOF or :meth:`finish`, which drains the rest (a
    partly read blob is not verified, so callers always finish).
    """

    def __init__(self, raw: IO[bytes], *, digest: str | None, size: int | None, where: str):
        super().__init__()
        self._raw = raw
        self._digest = digest
        self._size = size
        self._where = where
        self._hash = hasher_for(digest) if digest else None
        self.count = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        if not data:
            self._check_end()
            return 0
        self.count += len(data)
        if self._size is not None and self.count > self._size:
            raise ImageInvalid(f"{self._where}: more bytes served than the descriptor's size {self._size}")
        if self._hash is not None:
            self._hash.update(data)
        view[: len(data)] = data
        return len(data)

    def finish(self, chunk: int = 1024 * 1024) -> None:
        """Drain what is left and verify size and digest."""
        while self.read(chunk):
            pass
        self._check_end()

    @property
    def hexdigest(self) -> str | None:
        return f"{self._digest.split(':', 1)[0]}:{self._hash.hexdigest()}" if self._digest and self._hash else None

    def _check_end(self) -> None:
        if self._verified:
            return
        if self._size is not None and self.count != self._size:
            raise ImageInvalid(f"{self._where}: {self.count} bytes served, the descriptor says {self._size}")
        if self._digest is not None and self.hexdigest != self._digest:
            raise ImageInvalid(f"{self._where}: content digest is {self.hexdigest}, expected {self._digest}")
        self._verified = True

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
