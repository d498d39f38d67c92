"""Files read out of an image through a container that is created and never started.

The engine's archive endpoint (``GET /containers/{id}/archive``) hands out a path of the
container's merged file system as a tar stream: exactly what nginx would see, for the cost of the
files asked for. A ``docker save`` through ``imgforge.image`` would read every layer of the base
too (hundreds of MB, verified digest by digest) to learn the same few files; that reader is for
images that are not in an engine.

Everything here is hostile input: an image built elsewhere can hold any name, link or size. The
tar is read as a stream (never extracted, never a file on the host), file bytes are hashed as
they pass, and every limit is a refusal with a reason rather than a long wait.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import docker
import docker.errors

from imgforge._fs import shown
from imgforge._stream import ChunkStream
from imgforge.errors import DockerError

MAX_ENTRIES = 1_000_000  # names under the web root; each costs a little memory
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WebFile:
    """What one path under the web root is: a file (bytes hashed) or something else (``detail``)."""

    kind: str  # "file" or "other"
    sha256: str = ""
    size: int = 0
    detail: str = ""  # for "other": what it is ("a symlink to /etc", "a FIFO")


def read_file(client: docker.DockerClient, container: str, path: str, max_bytes: int) -> bytes | None:
    """The regular file at ``path`` of the container, None when there is none.

    A link or any other kind of file at ``path``, or one larger than ``max_bytes``, is a
    ``ValueError`` saying so (the caller words it for its file).
    """
    with _archive(client, container, path) as tar:
        if tar is None:
            return None
        member = tar.next()
        if member is None:
            return None
        if not member.isreg():
            raise ValueError(f"{path} is {_kind(member)}, not a regular file")
        if member.size > max_bytes:
            raise ValueError(f"{path} holds {member.size} bytes, more than the {max_bytes} allowed")
        handle = tar.extractfile(member)
        return handle.read() if handle is not None else b""


def web_root(client: docker.DockerClient, container: str, root: str) -> dict[str, WebFile] | str:
    """Every path under ``root`` that is not a folder -> what it is; or why ``root`` cannot be read."""
    found: dict[str, WebFile] = {}
    with _archive(client, container, root) as tar:
        if tar is None:
            return f"{root} is not in the image"
        top = posixpath.basename(root.rstrip("/"))
        for count, member in enumerate(tar, 1):
            if count > MAX_ENTRIES:
                return f"{root} holds more than {MAX_ENTRIES} entries"
            name = member.name.rstrip("/")
            if name == top:
                if not member.isdir():
                    return f"{root} is {_kind(member)}, not a folder"
                continue
            rel = name.removeprefix(top + "/")
            if member.isdir():
                continue
            if member.isreg():
                found[rel] = _hashed(tar, member)
            elif member.islnk() and (target := found.get(member.linkname.removeprefix(top + "/"))):
                found[rel] = target  # a hard link: the same bytes under a second name
            else:
                found[rel] = WebFile("other", detail=_kind(member))
    return found


@contextlib.contextmanager
def _archive(client: docker.DockerClient, container: str, path: str) -> Iterator[tarfile.TarFile | None]:
    """The tar stream of ``path`` in the container, None when the path is absent."""
    try:
        chunks, _ = client.api.get_archive(container, path, chunk_size=_CHUNK)
    except docker.errors.NotFound:
        yield None
        return
    except docker.errors.APIError as e:
        raise DockerError(f"cannot read {path} out of the image: {e.explanation or e}") from e
    stream: IO[bytes] = io.BufferedReader(ChunkStream(iter(chunks)), _CHUNK)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            yield tar
    except tarfile.TarError as e:
        raise DockerError(f"the engine sent no readable archive of {path}: {e}") from e


def _hashed(tar: tarfile.TarFile, member: tarfile.TarInfo) -> WebFile:
    h = hashlib.sha256()
    handle = tar.extractfile(member)
    size = 0
    if handle is not None:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    return WebFile("file", h.hexdigest(), size)


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symlink to {shown(member.linkname)}"
    if member.islnk():
        return f"a hard link to {shown('/' + member.linkname)}"
    kinds = {tarfile.FIFOTYPE: "a FIFO", tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device"}
    return kinds.get(member.type, "a folder" if member.isdir() else "not a regular file")
