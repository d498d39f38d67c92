"""Bodies too large to hold: blob downloads and uploads, streamed in constant memory and verified.

Registry layers are often hundreds of MiB, so the funnel's whole-body answers (capped at a few
MiB) do not fit them. These two classes carry such bodies through :class:`imgforge._http.Client`
under the same rules, with three differences:

- **The bound is the size the caller expects** (a descriptor's ``size``), not a fixed cap: a
  declared ``Content-Length`` that differs is refused unread, a body that runs past it is refused
  at the first extra byte, and one that ends short is refused at its end.
- **The deadline scales with the size:** :func:`deadline_for` gives ``base + size / rate`` seconds
  (the base is the per-request deadline, the rate a floor the transfer must beat; see
  :data:`MIN_RATE`), still a total deadline enforced by the same watchdog.
- **The digest is verified as the bytes pass.** A download's last read, the one that would return
  ``b""``, raises instead when the size or digest is wrong. Until a read has returned ``b""`` the
  bytes already handed out are unverified: a caller must not act on them (write them where others
  read, parse them into decisions) before the end; spool to a private file and rename after the
  end, or feed a parser whose result is dropped on error. An upload hashes what it sends and holds
  back its last chunk when the data does not match the digest, so a registry never receives a
  complete body with the wrong content under our name.

Digests are ``sha256:<64 hex>`` or ``sha512:<128 hex>`` (the OCI image spec's registered
algorithms); the strict pattern also keeps a digest from acting as a path in a URL.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterator
from typing import IO

import requests

from imgforge._deadline import TransportError, Watchdog, translate

MiB = 1024 * 1024
MIN_RATE = 1 * MiB  # bytes per second a blob transfer must beat: its deadline is base + size / rate
CHUNK = 64 * 1024  # bytes read or sent at a time: what stays in memory per stream
_DIGEST = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")


def is_digest(text: str) -> bool:
    return bool(_DIGEST.fullmatch(text))


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def deadline_for(base: float, size: int, rate: float = MIN_RATE) -> float:
    """Seconds a transfer of ``size`` bytes may take in all: ``base`` plus ``size / rate``."""
    return base + size / rate


class Download(io.RawIOBase):
    """The body of one streamed answer: exactly ``size`` bytes whose digest is ``digest``.

    Reads return what arrived (never more than asked), hashed and counted. The read that reaches
    the end verifies size and digest and raises on a mismatch; a deadline that passes mid-body, a
    byte past ``size`` or a broken connection raises at once. Every failure is first made a
    :class:`TransportError`, then handed to ``errors`` so the caller's client can raise its own
    typed error; after a failure every read raises it again. :meth:`close` releases the connection
    and the watchdog (use the stream as a context manager).
    """

    def __init__(
        self,
        response: requests.Response,
        watch: Watchdog,
        *,
        size: int,
        digest: str,
        errors: Callable[[TransportError], Exception],
    ):
        super().__init__()
        self._response = response
        self._watch = watch
        self.size = size
        self.digest = digest
        self._errors = errors
        self._hash = hashlib.new(digest.split(":", 1)[0])
        self.count = 0
        self.verified = False
        self._failure: Exception | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._failure is not None:
            raise self._failure
        if self.verified:
            return 0
        view = memoryview(buffer).cast("B")
        try:
            data = self._response.raw.read(min(len(view), CHUNK), decode_content=False)
        except Exception as e:  # noqa: BLE001 - urllib3, http.client and socket errors: one translation
            raise self._fail(translate(e, self._watch)) from None
        if not data:
            self._end()
            return 0
        self.count += len(data)
        if self.count > self.size:
            raise self._fail(TransportError("too_large", f"served more than the {self.size} bytes expected", self.size))
        self._hash.update(data)
        view[: len(data)] = data
        return len(data)

    def _end(self) -> None:
        if self._watch.fired:  # a body cut by the watchdog can look like a short, complete one
            raise self._fail(TransportError("timeout", "the deadline passed", self._watch.seconds))
        if self.count != self.size:
            raise self._fail(TransportError("broken", f"the answer ended after {self.count} of {self.size} bytes"))
        got = f"{self.digest.split(':', 1)[0]}:{self._hash.hexdigest()}"
        if got != self.digest:
            raise self._fail(TransportError("digest", f"served content whose digest is {got}; not using it"))
        self.verified = True
        self._release()

    def _fail(self, error: TransportError) -> Exception:
        self._failure = self._errors(error)
        self._release()
        return self._failure

    def _release(self) -> None:
        self._response.close()
        self._watch.stop()

    def close(self) -> None:
        if not self.closed:
            self._release()
        super().close()


class Upload:
    """A request body of exactly ``size`` bytes read from ``data`` (bytes or a binary stream),
    hashed as it goes out and checked against ``digest``.

    requests sends it with ``Content-Length: size`` (from ``len()``) in chunks of :data:`CHUNK`.
    Data that ends early, runs past ``size`` or has another digest raises TransportError before
    the last chunk is sent. It can be sent again (an auth challenge, a retry) when it is bytes or a
    seekable stream, which is rewound to where it stood at the start; another stream raises
    TransportError on a second pass (:meth:`rewind`, which the funnel calls before each send,
    so that error comes before any byte of the request).
    """

    def __init__(self, data: bytes | IO[bytes], size: int, digest: str):
        self._data = io.BytesIO(data) if isinstance(data, bytes) else data
        self.size = size
        self.digest = digest
        self._start = self._data.tell() if self._data.seekable() else None
        self._passes = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        hasher = hashlib.new(self.digest.split(":", 1)[0])
        if self.size == 0:
            self._check_end(hasher)
        while sent < self.size:
            chunk = self._data.read(min(CHUNK, self.size - sent))
            if not chunk:
                raise TransportError("data", f"the data to upload ended after {sent} of {self.size} bytes")
            sent += len(chunk)
            hasher.update(chunk)
            if sent == self.size:
                self._check_end(hasher)
            yield chunk

    def _check_end(self, hasher: hashlib._Hash) -> None:
        if self._data.read(1):
            raise TransportError("data", f"the data to upload is longer than {self.size} bytes")
        got = f"{self.digest.split(':', 1)[0]}:{hasher.hexdigest()}"
        if got != self.digest:
            raise TransportError("digest", f"the data to upload has digest {got}; not sending it")

    def rewind(self) -> None:
        """Called before each send: the first is free, a later one seeks back or raises."""
        self._passes += 1
        if self._passes == 1:
            return
        if self._start is None:
            raise TransportError(
                "data", "the data to upload is a stream that cannot be read twice; pass bytes or a file"
            )
        self._data.seek(self._start)


class ChunkStream(io.RawIOBase):
    """Chunks of a generator as a forward-only readable stream: for ``tarfile`` stream mode and for
    docker-py, which sends a file object as a request body."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]  # typeshed: Buffer
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n
