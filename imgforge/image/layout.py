"""OCI image layouts, as a folder or inside a tar: ``oci-layout`` + ``index.json`` + ``blobs/<alg>/<hex>``.

The same reader serves three producers: the daemonless builder's output folder, ``skopeo copy
… oci:DIR`` / ``oci-archive:FILE``, and ``docker save`` of Docker ≥ 25 (an OCI layout in a tar).
A layout is a local file, yet it is still read as untrusted: blob paths are built only from
digests that passed the strict digest pattern, only regular files are opened (a FIFO or device
planted as a blob would hang or stream forever), and every blob is verified by the resolver and
the layer reader.

References: None is the layout's own ``index.json`` (refused when it names several different
images); a digest is any blob; a name matches the ``org.opencontainers.image.ref.name``
annotation (``latest``) or containerd's ``io.containerd.image.name`` (``docker.io/library/x:1``).
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass

from imgforge.errors import ImageInvalid, ImageNotFound, LimitExceeded
from imgforge.image import mediatypes as mt
from imgforge.image.digest import check_digest, is_digest, read_capped
from imgforge.image.limits import DEFAULT_LIMITS, Limits
from imgforge.image.model import Descriptor, Index, validate_json
from imgforge.image.source import FetchedManifest


@dataclass(frozen=True, config=ConfigDict(strict=True, extra="ignore"))
class _LayoutMarker:
    imageLayoutVersion: str


class BlobStore(Protocol):
    """Named files of a layout: a folder on disk or the members of a tar."""

    def describe(self) -> str: ...

    def open(self, name: str) -> IO[bytes]:
        """Open a regular file by its relative name; raise FileNotFoundError if absent."""
        ...


class DirectoryStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def describe(self) -> str:
        return f"oci layout {self.root}"

    def open(self, name: str) -> IO[bytes]:
        fd = os.open(self.root / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            if regular:
                os.set_blocking(fd, True)
                return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        raise ImageInvalid(f"{self.describe()}: {name} is not a regular file")


class TarStore:
    """Regular files of a tar on disk, by normalised member name.

    Links between members (``docker save`` links a repeated layer to its first copy) are resolved
    here, only ever to other members of the same tar, a few hops at most.
    """

    def __init__(self, tar: tarfile.TarFile, label: str, limits: Limits = DEFAULT_LIMITS):
        self._tar = tar
        self._label = label
        self._members: dict[str, tarfile.TarInfo] = {}
        for count, member in enumerate(tar):
            if count >= limits.max_entries:
                raise LimitExceeded(label, "archive members", "max_entries", limits.max_entries)
            if member.isfile() or member.issym() or member.islnk():
                self._members[_member_name(member.name)] = member

    def describe(self) -> str:
        return self._label

    def names(self) -> set[str]:
        return set(self._members)

    def member(self, name: str) -> tarfile.TarInfo:
        """The regular-file member ``name`` stands for, links followed; FileNotFoundError if none."""
        for _ in range(8):
            member = self._members.get(name)
            if member is None:
                raise FileNotFoundError(name)
            if member.isfile():
                return member
            base = os.path.dirname(name) if member.issym() else ""
            name = _member_name(os.path.join(base, member.linkname))
        raise ImageInvalid(f"{self._label}: {name}: too many links")

    def open(self, name: str) -> IO[bytes]:
        stream = self._tar.extractfile(self.member(name))
        if stream is None:
            raise ImageInvalid(f"{self._label}: {name} is not a regular file")
        return stream


def _member_name(name: str) -> str:
    return os.path.normpath("/" + name).lstrip("/")


class OciLayout:
    """An :class:`~imgforge.image.source.ImageSource` over an OCI image layout in a blob store."""

    def __init__(self, store: BlobStore, limits: Limits = DEFAULT_LIMITS):
        self._store = store
        self._limits = limits
        where = store.describe()
        version = validate_json(
            _LayoutMarker, self._read("oci-layout", 4096, "max_manifest_bytes"), f"{where}: oci-layout"
        )
        if version.imageLayoutVersion != "1.0.0":
            raise ImageInvalid(f"{where}: oci-layout: imageLayoutVersion {version.imageLayoutVersion!r} is not 1.0.0")
        self._index_bytes = self._read("index.json", limits.max_manifest_bytes, "max_manifest_bytes")
        self.index = validate_json(Index, self._index_bytes, f"{where}: index.json")

    @classmethod
    def open_dir(cls, path: Path, limits: Limits = DEFAULT_LIMITS) -> OciLayout:
        if not (Path(path) / "oci-layout").is_file():
            raise ImageNotFound(f"{path}: not an OCI image layout (no oci-layout file)")
        return cls(DirectoryStore(Path(path)), limits)

    def describe(self) -> str:
        return self._store.describe()

    def get_manifest(self, reference: str | None, accept: Sequence[str], max_bytes: int) -> FetchedManifest:
        if reference is None:
            names = {_ref_name(d) for d in self.index.manifests}
            if len(names) > 1:
                raise ImageNotFound(
                    f"{self.describe()}: holds several images "
                    f"({', '.join(sorted(n or '(unnamed)' for n in names))}); name one"
                )
            return FetchedManifest(self._index_bytes, None, None)
        if is_digest(reference):
            desc = next((d for d in self.index.manifests if d.digest == reference), None)
            data = self._read_blob(reference, max_bytes)
            return FetchedManifest(data, desc.media_type if desc else None, None)
        found = [d for d in self.index.manifests if reference in _names(d)]
        if not found:
            known = sorted(n for n in (_ref_name(d) for d in self.index.manifests) if n)
            raise ImageNotFound(
                f"{self.describe()}: no image named {reference!r} (names: {', '.join(known) or 'none'})"
            )
        if len({d.digest for d in found}) > 1:
            raise ImageNotFound(f"{self.describe()}: several images are named {reference!r}; use a digest")
        return FetchedManifest(self._read_blob(found[0].digest, max_bytes), found[0].media_type, found[0].digest)

    def open_blob(self, digest: str) -> IO[bytes]:
        check_digest(digest, f"{self.describe()}: blob")
        algorithm, hexpart = digest.split(":", 1)
        try:
            return self._store.open(f"blobs/{algorithm}/{hexpart}")
        except FileNotFoundError as e:
            raise ImageNotFound(f"{self.describe()}: blob {digest} is missing") from e

    def _read_blob(self, digest: str, max_bytes: int) -> bytes:
        with self.open_blob(digest) as stream:
            return read_capped(stream, max_bytes, f"{self.describe()}: manifest {digest}", "max_manifest_bytes")

    def _read(self, name: str, cap: int, limit_name: str) -> bytes:
        try:
            with self._store.open(name) as stream:
                return read_capped(stream, cap, f"{self.describe()}: {name}", limit_name)
        except FileNotFoundError as e:
            raise ImageNotFound(f"{self.describe()}: {name} is missing: not an OCI image layout") from e


def _ref_name(desc: Descriptor) -> str | None:
    for key in mt.REF_NAME_ANNOTATIONS:
        if key in desc.annotations:
            return desc.annotations[key]
    return None


def _names(desc: Descriptor) -> set[str]:
    return {desc.annotations[k] for k in mt.REF_NAME_ANNOTATIONS if k in desc.annotations}
