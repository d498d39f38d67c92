"""The file-system view of an image: every path with its metadata, and bytes fetched on demand.

An :class:`ImageFS` holds metadata only (what ``find / -xdev`` and ``stat`` would say in a
container of the image: type, mode with setuid/setgid/sticky bits, uid, gid, size, link target)
plus, for each regular file, where its bytes live (layer, tar member ordinal). File contents are
read by a second pass over just the layers that hold them (:mod:`imgforge.image.contents`), so a
1 GiB image never sits in memory and an audit that wants five config files reads five files.

Symlinks are recorded, never followed while the view is built; :meth:`ImageFS.resolve` follows
them on request with the semantics of a chroot at the image root (an absolute target starts at
the image root, ``..`` stops there), so no link can lead onto the host. Hard links are entries of
type ``hardlink`` that share their target's bytes, mode and owner, as one inode does.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple

from imgforge.errors import ImageInvalid, ImageNotFound, ImageRefused
from imgforge.image.paths import is_within, normalize

if TYPE_CHECKING:
    from imgforge.image.contents import ExtractResult
    from imgforge.image.resolve import ResolvedImage


class EntryType(enum.StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


class DataRef(NamedTuple):
    """Where a regular file's bytes are: the layer index and the member's ordinal in that layer's tar."""

    layer: int
    member: int


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # absolute image path, canonical: /etc/nginx/nginx.conf
    type: EntryType
    mode: int  # permission bits with setuid/setgid/sticky (& 0o7777), as stat's %a
    uid: int
    gid: int
    size: int  # bytes of a regular file or hard link's target; 0 otherwise
    mtime: int
    link_target: str = ""  # symlink: as written in the layer; hard link: the target's image path
    layer: int = -1  # index into manifest.layers of the layer that last wrote this entry
    data: DataRef | None = None  # regular files and hard links only
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, str], ...] = ()  # SCHILY.xattr.* PAX records, e.g. security.capability
    implicit: bool = False  # a parent folder no layer listed (made 0755 root:root, like Docker)

    @property
    def is_regular(self) -> bool:
        """A regular file, or a hard link to one (``find -type f`` lists both)."""
        return self.type in (EntryType.FILE, EntryType.HARDLINK)

    @property
    def is_dir(self) -> bool:
        return self.type is EntryType.DIR

    @property
    def is_symlink(self) -> bool:
        return self.type is EntryType.SYMLINK

    @property
    def setuid(self) -> bool:
        return bool(self.mode & 0o4000)

    @property
    def setgid(self) -> bool:
        return bool(self.mode & 0o2000)


Selection = Iterable[str] | Callable[[Entry], bool]


class ImageFS:
    """The merged file tree of one image (whiteouts applied), built by :func:`~imgforge.image.read_fs`."""

    def __init__(
        self,
        image: ResolvedImage,
        entries: dict[str, Entry],
        children: dict[str, set[str]],
        prefetched: dict[DataRef, bytes] | None = None,
    ):
        self.image = image
        self._entries = entries
        self._children = children
        self.prefetched: dict[DataRef, bytes] = prefetched or {}  # bytes kept by read_fs(prefetch=…)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and normalize(path) in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return self.walk("/")

    def get(self, path: str) -> Entry | None:
        """The entry at ``path`` itself (a symlink is returned as the symlink)."""
        return self._entries.get(normalize(path))

    def walk(self, top: str = "/") -> Iterator[Entry]:
        """``top`` and everything under it, depth first, names sorted; links not followed."""
        top = normalize(top)
        if top not in self._entries:
            return
        stack = [top]
        while stack:
            path = stack.pop()
            yield self._entries[path]
            stack.extend(sorted(self._children.get(path, ()), reverse=True))

    @property
    def total_size(self) -> int:
        """Bytes of all regular files, hard-linked bytes counted once (what ``du`` would say, roughly)."""
        return sum(e.size for e in self._entries.values() if e.type is EntryType.FILE)

    def resolve(self, path: str, *, within: str = "/") -> str:
        """Follow symlinks in ``path`` inside the image; the result must lie in ``within``.

        The result may not exist (a dangling link). Raises ImageInvalid on a link loop and
        ImageRefused when the result leaves ``within``.
        """
        hops_left = self.image.limits.max_symlink_hops
        done: list[str] = []
        todo = deque(p for p in path.split("/") if p)  # not normalised: ".." after a link is the link's
        while todo:
            part = todo.popleft()
            if part == "..":
                if done:
                    done.pop()
                continue
            if part == ".":
                continue
            here = "/" + "/".join([*done, part])
            entry = self._entries.get(here)
            if entry is None or entry.type is not EntryType.SYMLINK:
                done.append(part)
                continue
            hops_left -= 1
            if hops_left < 0:
                raise ImageInvalid(f"{self.image.describe()}: {path}: too many levels of symbolic links")
            if entry.link_target.startswith("/"):
                done = []
            todo.extendleft(reversed([p for p in entry.link_target.split("/") if p]))
        result = "/" + "/".join(done)
        if not is_within(result, normalize(within)):
            raise ImageRefused(f"{self.image.describe()}: {path} resolves to {result}, outside {normalize(within)}")
        return result

    def lookup(self, path: str) -> Entry | None:
        """The entry ``path`` leads to with every symlink followed (None if it leads nowhere)."""
        return self._entries.get(self.resolve(path))

    def open_files(self, select: Selection) -> Iterator[tuple[str, Entry, IO[bytes]]]:
        """Stream selected regular files: ``(path, entry, stream)``, each stream valid until the next.

        ``select``: image paths (symlinks followed inside the image; missing or non-regular
        paths are skipped) or a predicate over entries (not followed). Layers are verified as
        they end: a failing digest raises after some files were yielded, so act on what you
        read only once the iteration finished.
        """
        from imgforge.image.contents import open_files, selected

        return open_files(self, selected(self, select))

    def read_files(self, select: Selection, *, max_bytes: int | None = None) -> dict[str, bytes]:
        """The bytes of the selected regular files, keyed by the path as given (or the entry's path
        for a predicate); at most ``max_bytes`` in all (default ``max_read_bytes``)."""
        from imgforge.image.contents import read_files

        return read_files(self, select, max_bytes)

    def read_bytes(self, path: str) -> bytes:
        found = self.read_files([path])
        if not found:
            raise ImageNotFound(f"{self.image.describe()}: no regular file {normalize(path)}")
        return next(iter(found.values()))

    def extract(self, top: str, dest: Path, *, max_bytes: int | None = None) -> ExtractResult:
        """Write the subtree ``top`` to the folder ``dest`` (replaced whole); see :func:`contents.extract`."""
        from imgforge.image.contents import extract

        return extract(self, top, Path(dest), max_bytes)

    def children(self, path: str) -> list[str]:
        """Paths of the entries directly inside the folder ``path``, sorted."""
        return sorted(self._children.get(normalize(path), ()))
