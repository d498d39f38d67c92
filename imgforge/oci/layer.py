"""Deterministic layer tars: the same entries give the same bytes, on any machine, cache and day.

Every entry is written the same way: sorted by path, one tar format (PAX, as ``build_context``
writes the engine's context), owner 0:0 with no user or group names, a mode fixed by the caller,
one mtime for all (``SOURCE_DATE_EPOCH`` or the source commit's time), and gzip with mtime 0 and no
file name in its header. The uncompressed digest (the config's ``diff_id``) and the compressed one
(the manifest's layer digest) are computed while the bytes are written, in one pass.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

GZIP_LEVEL = 6  # part of the digest: changing it changes every layer imgforge ever wrote
WHITEOUT = ".wh."


@dataclass(frozen=True)
class LayerEntry:
    """One member: ``path`` without a leading slash; ``read`` gives a regular file's bytes."""

    path: str
    kind: str  # "file", "dir", "symlink", "whiteout"
    mode: int = 0o644
    size: int = 0
    read: Callable[[], Iterator[bytes]] | None = None
    link: str = ""
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Blob:
    """A blob in the store: compressed digest and size, and the tar's own digest (diff_id)."""

    digest: str
    size: int
    diff_id: str


def constant(data: bytes) -> Callable[[], Iterator[bytes]]:
    """A ``read`` for bytes already in memory."""
    return lambda: iter((data,))


def whiteout(path: str) -> LayerEntry:
    """The OCI whiteout that deletes ``path`` (and all below it) from the layers underneath."""
    parent, _, name = path.strip("/").rpartition("/")
    return LayerEntry(f"{parent}/{WHITEOUT}{name}" if parent else f"{WHITEOUT}{name}", "whiteout", 0o644)


def tar_members(entries: Iterable[LayerEntry], mtime: int) -> Iterator[bytes]:
    """The tar bytes of ``entries`` in path order (a folder sorts before what it holds)."""
    written = 0
    for entry in sorted(entries, key=lambda e: e.path.split("/")):
        info = tarfile.TarInfo(entry.path + ("/" if entry.kind == "dir" else ""))
        info.mode = entry.mode & 0o7777
        info.uid, info.gid = entry.uid, entry.gid
        info.uname = info.gname = ""
        info.mtime = mtime
        if entry.kind == "dir":
            info.type = tarfile.DIRTYPE
        elif entry.kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, entry.link
        elif entry.kind == "whiteout":
            info.type, info.size = tarfile.REGTYPE, 0
        else:
            info.type, info.size = tarfile.REGTYPE, entry.size
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        yield header
        written += len(header)
        if info.type == tarfile.REGTYPE and info.size:
            left = info.size
            for chunk in entry.read() if entry.read else ():
                left -= len(chunk)
                yield chunk
            if left != 0:
                raise ValueError(f"{entry.path}: {info.size - left} bytes read, {info.size} listed")
            pad = -info.size % tarfile.BLOCKSIZE
            yield b"\0" * pad
            written += info.size + pad
    end = b"\0" * (2 * tarfile.BLOCKSIZE)
    yield end + b"\0" * (-(written + len(end)) % tarfile.RECORDSIZE)


class _Counting:
    """The file object gzip writes to: counts and hashes the compressed bytes on their way out."""

    def __init__(self, out: IO[bytes]):
        self.out = out
        self.size = 0
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def write_layer(entries: Iterable[LayerEntry], mtime: int, blobs: Path) -> Blob:
    """Write the gzipped tar of ``entries`` into the blob folder ``blobs`` (sha256/<hex>)."""
    (blobs / "sha256").mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".layer-")
    try:
        with os.fdopen(fd, "wb") as raw:
            counted = _Counting(raw)
            tar_sha = hashlib.sha256()
            with gzip.GzipFile(filename="", mode="wb", fileobj=counted, compresslevel=GZIP_LEVEL, mtime=0) as gz:
                for chunk in tar_members(entries, mtime):
                    tar_sha.update(chunk)
                    gz.write(chunk)
        digest = f"sha256:{counted.sha.hexdigest()}"
        os.replace(tmp, blobs / "sha256" / digest[7:])
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Blob(digest, counted.size, f"sha256:{tar_sha.hexdigest()}")
