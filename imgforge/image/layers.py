"""Streaming one layer blob as tar members, verified and capped, never whole in memory.

The stream is stacked as: the source's blob → :class:`VerifyingReader` (exact size and digest
of the descriptor) → a decompressor chosen by the stream's magic bytes (gzip, zstd, or none, as
Docker and containerd do; the media type alone is not trusted) → :class:`_Unpacked` (the
``diff_id`` hash, the pass-wide :class:`Budget` of unpacked bytes and members, and a window that
caps how much tarfile may read for one member's headers) → :mod:`tarfile` in stream mode.

:meth:`LayerReader.finish` drains what is left, so the digest and ``diff_id`` are checked even
when the caller stopped early; a layer whose check fails raises :class:`ImageInvalid` there.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import tarfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any, Self, cast

from imgforge.errors import ImageInvalid, ImageUnsupported, LimitExceeded
from imgforge.image.digest import VerifyingReader
from imgforge.image.limits import Limits
from imgforge.image.model import Descriptor
from imgforge.image.source import ImageSource

try:  # zstd layers (OCI +zstd): optional until the zstandard package is a declared dependency
    import zstandard
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None  # type: ignore[assignment]

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_TAR_BUFFER = 256 * 1024  # tarfile skips and reads ahead in steps of this size
_SLACK = 2 * _TAR_BUFFER  # so a member's window must allow for that read-ahead
_CHUNK = 1024 * 1024


class Budget:
    """What one pass over an image's layers may still consume; shared by its layers."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.unpacked_left = limits.max_unpacked_bytes
        self.entries_left = limits.max_entries

    def charge_bytes(self, n: int, where: str) -> None:
        self.unpacked_left -= n
        if self.unpacked_left < 0:
            raise LimitExceeded(where, "unpacked layer bytes", "max_unpacked_bytes", self.limits.max_unpacked_bytes)

    def charge_entry(self, where: str) -> None:
        self.entries_left -= 1
        if self.entries_left < 0:
            raise LimitExceeded(where, "tar entries", "max_entries", self.limits.max_entries)


class _Unpacked(io.RawIOBase):
    """The decompressed tar stream: hashed for the diff_id, charged to the budget, windowed."""

    def __init__(self, raw: IO[bytes], diff_id: str | None, budget: Budget, where: str):
        super().__init__()
        self._verify = VerifyingReader(raw, digest=diff_id, size=None, where=f"{where} (uncompressed)")
        self._budget = budget
        self._where = where
        self._window: int | None = None

    def readable(self) -> bool:
        return True

    def window(self, allowed: int | None) -> None:
        """Allow at most ``allowed`` more bytes until the next call (None: no window)."""
        self._window = allowed

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        n = self._verify.readinto(buffer)
        self._budget.charge_bytes(n, self._where)
        if self._window is not None:
            self._window -= n
            if self._window < 0:
                raise LimitExceeded(
                    self._where, "a tar member's headers", "max_header_bytes", self._budget.limits.max_header_bytes
                )
        return n

    def finish(self) -> None:
        self._window = None
        while self.read(_CHUNK):
            pass
        self._verify.finish()


class LayerReader:
    """One layer of an image, opened for one sequential pass over its tar members."""

    def __init__(self, source: ImageSource, descriptor: Descriptor, diff_id: str, index: int, budget: Budget):
        self.where = f"{source.describe()}: layer {index} ({descriptor.digest[:19]})"
        self._limits = budget.limits
        if descriptor.size > self._limits.max_layer_bytes:
            raise LimitExceeded(
                self.where, f"declared size {descriptor.size}", "max_layer_bytes", self._limits.max_layer_bytes
            )
        self._blob = VerifyingReader(
            source.open_blob(descriptor.digest), digest=descriptor.digest, size=descriptor.size, where=self.where
        )
        try:
            buffered = io.BufferedReader(self._blob, _CHUNK)
            plain = _decompressor(buffered, self.where)
            # An uncompressed layer's blob digest is its diff_id: hashing it twice would prove nothing more.
            same = plain is buffered and diff_id == descriptor.digest
            self._plain = _Unpacked(plain, None if same else diff_id, budget, self.where)
            self._budget = budget
            self._header_cap = self._limits.max_header_bytes + _SLACK
            self._plain.window(self._header_cap)  # tarfile.open reads the first member's headers
            self._tar = tarfile.open(  # noqa: SIM115 (the layer reader owns it; closed in __exit__)
                fileobj=self._plain, mode="r|", bufsize=_TAR_BUFFER
            )
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            self._blob.close()
            raise ImageInvalid(f"{self.where}: not a tar stream ({e})") from e
        except BaseException:
            self._blob.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._blob.close()

    def members(self) -> Iterator[tuple[int, tarfile.TarInfo]]:
        """``(ordinal, member)`` in stream order; a member's data is readable until the next one."""
        ordinal = 0
        while True:
            info = self._call(self._tar.next)
            if info is None:
                return
            self._budget.charge_entry(self.where)
            if info.size > self._budget.unpacked_left:
                raise LimitExceeded(
                    f"{self.where}: {info.name[:80]!r}",
                    f"declared size {info.size}",
                    "max_unpacked_bytes",
                    self._limits.max_unpacked_bytes,
                )
            self._plain.window(_padded(info.size) + self._header_cap)
            # Stream mode keeps every TarInfo in .members otherwise (500k entries ≈ 250 MiB); we
            # never look back, and extractfile() needs no earlier member for a regular file.
            self._tar.members.clear()  # type: ignore[attr-defined]
            yield ordinal, info
            ordinal += 1

    def open_member(self, info: tarfile.TarInfo) -> IO[bytes]:
        """The data of the member just yielded by :meth:`members` (regular files only)."""
        stream = self._call(lambda: self._tar.extractfile(info))
        if stream is None:
            raise ImageInvalid(f"{self.where}: {info.name!r} has no data")
        return io.BufferedReader(_Guarded(stream, self.where), _CHUNK)

    def finish(self) -> None:
        """Read to the end and verify the blob digest, its size and the diff_id."""
        self._call(self._plain.finish)
        self._blob.finish()

    def _call(self, fn: Callable[[], Any]) -> Any:
        with _stream_errors(self.where):
            return fn()


class _Guarded(io.RawIOBase):
    """A member's data stream whose decompression and tar errors come out as ImageInvalid."""

    def __init__(self, raw: IO[bytes], where: str):
        super().__init__()
        self._raw = raw
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        with _stream_errors(self._where):
            data = self._raw.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def _stream_errors(where: str) -> Iterator[None]:
    """Turn what tarfile and the decompressors raise on a corrupt stream into ImageInvalid."""
    try:
        yield
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ImageInvalid(f"{where}: broken layer stream ({e})") from e
    except Exception as e:
        if zstandard is not None and isinstance(e, zstandard.ZstdError):
            raise ImageInvalid(f"{where}: broken zstd stream ({e})") from e
        raise


def _decompressor(stream: io.BufferedReader[Any], where: str) -> IO[bytes]:
    magic = stream.peek(4)[:4]
    if magic.startswith(_GZIP_MAGIC):
        return cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
    if magic == _ZSTD_MAGIC:
        if zstandard is None:
            raise ImageUnsupported(f"{where}: zstd-compressed layer, and the zstandard package is not installed")
        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        return reader
    return stream


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
