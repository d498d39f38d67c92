"""Applying layers in order to build an :class:`~imgforge.image.fs.ImageFS`, as the OCI image spec says.

Per layer (image-spec ``layer.md``): whiteouts apply only to what lower layers left, "regardless
of the ordering in which the whiteout file was encountered", so a layer is read whole (metadata
only) and then applied as: opaque folders emptied (``.wh..wh..opq``), whited-out paths removed
(``.wh.<name>``, with everything under them), then its entries in tar order. An entry over an
existing path replaces it (and its subtree), except folder over folder, which only takes the new
attributes. ``.wh..wh.*`` names other than the opaque marker are AUFS bookkeeping and skipped,
as Docker does.

Paths are applied literally, as Docker's overlay2 driver does: a symlink in a lower layer is never
followed to place an entry, and an ancestor that is not a folder is replaced by an implicit one.
Hard links may point into the same or a lower layer; their target must exist in the view.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass, replace

from imgforge.errors import ImageInvalid, LimitExceeded
from imgforge.image.fs import DataRef, Entry, EntryType, ImageFS
from imgforge.image.layers import Budget, LayerReader
from imgforge.image.paths import join, member_path, parent_of
from imgforge.image.resolve import ResolvedImage

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_AUFS_META = ".wh..wh."

_TYPES = {
    tarfile.REGTYPE: EntryType.FILE,
    tarfile.AREGTYPE: EntryType.FILE,
    tarfile.CONTTYPE: EntryType.FILE,
    tarfile.GNUTYPE_SPARSE: EntryType.FILE,
    tarfile.DIRTYPE: EntryType.DIR,
    tarfile.SYMTYPE: EntryType.SYMLINK,
    tarfile.LNKTYPE: EntryType.HARDLINK,
    tarfile.CHRTYPE: EntryType.CHAR,
    tarfile.BLKTYPE: EntryType.BLOCK,
    tarfile.FIFOTYPE: EntryType.FIFO,
}


def read_fs(image: ResolvedImage, *, prefetch: Callable[[Entry], bool] | None = None) -> ImageFS:
    """Stream every layer of ``image`` once (verified, capped) and return its merged file tree.

    ``prefetch``: regular files it accepts (tested on each layer's entries, links not followed)
    keep their bytes from this pass, up to ``max_read_bytes`` in all, so reading them later
    needs no second pass (an audit's nginx configs, the SBOM's package database). Bytes that a
    later layer replaced or whited out are dropped.
    """
    view = _View()
    budget = Budget(image.limits)
    kept = _Prefetch(prefetch, image.limits.max_read_bytes)
    for index, (desc, diff_id) in enumerate(zip(image.manifest.layers, image.config.diff_ids, strict=True)):
        with LayerReader(image.source, desc, diff_id, index, budget) as layer:
            changes = _read_changes(layer, index, image, kept)
            layer.finish()  # verify the layer before any of it reaches the view
        view.apply(changes, index, layer.where)
    live = {e.data for e in view.entries.values() if e.data is not None}
    return ImageFS(image, view.entries, view.children, {k: v for k, v in kept.data.items() if k in live})


class _Prefetch:
    def __init__(self, accept: Callable[[Entry], bool] | None, cap: int):
        self.accept = accept
        self.left = cap
        self.cap = cap
        self.data: dict[DataRef, bytes] = {}

    def offer(self, entry: Entry, layer: LayerReader, info: tarfile.TarInfo) -> None:
        if self.accept is None or entry.data is None or not self.accept(entry):
            return
        self.left -= entry.size
        if self.left < 0:
            raise LimitExceeded(layer.where, "prefetched file bytes", "max_read_bytes", self.cap)
        with layer.open_member(info) as stream:
            self.data[entry.data] = stream.read()


@dataclass
class _Changes:
    opaque: list[str]
    removed: list[str]
    added: list[Entry]


def _read_changes(layer: LayerReader, index: int, image: ResolvedImage, kept: _Prefetch) -> _Changes:
    changes = _Changes([], [], [])
    for ordinal, info in layer.members():
        path = member_path(info.name, layer.where, image.limits)
        name = path.rsplit("/", 1)[1]
        if name == OPAQUE:
            changes.opaque.append(parent_of(path))
        elif name.startswith(_AUFS_META):
            continue
        elif name.startswith(WHITEOUT):
            target = name[len(WHITEOUT) :]
            if target in ("", ".", ".."):
                raise ImageInvalid(f"{layer.where}: whiteout {info.name!r} names no entry")
            changes.removed.append(join(parent_of(path), target))
        else:
            entry = _entry(info, path, index, ordinal, layer.where, image)
            kept.offer(entry, layer, info)
            changes.added.append(entry)
    return changes


def _entry(info: tarfile.TarInfo, path: str, layer: int, ordinal: int, where: str, image: ResolvedImage) -> Entry:
    kind = _TYPES.get(info.type)
    if kind is None:
        raise ImageInvalid(f"{where}: {info.name!r} has unsupported tar type {info.type!r}")
    if path == "/" and kind is not EntryType.DIR:
        raise ImageInvalid(f"{where}: the root entry is not a folder")
    target = ""
    if kind is EntryType.SYMLINK:
        if (
            "\x00" in info.linkname
            or len(info.linkname.encode("utf-8", "surrogateescape")) > image.limits.max_path_bytes
        ):
            raise LimitExceeded(
                f"{where}: {info.name[:60]!r}", "symlink target length", "max_path_bytes", image.limits.max_path_bytes
            )
        target = info.linkname
    elif kind is EntryType.HARDLINK:
        target = member_path(info.linkname, where, image.limits)
    xattrs = tuple(
        sorted((k[len("SCHILY.xattr.") :], v) for k, v in info.pax_headers.items() if k.startswith("SCHILY.xattr."))
    )
    return Entry(
        path=path,
        type=kind,
        mode=info.mode & 0o7777,
        uid=info.uid,
        gid=info.gid,
        size=info.size if kind is EntryType.FILE else 0,
        mtime=int(info.mtime),
        link_target=target,
        layer=layer,
        data=DataRef(layer, ordinal) if kind is EntryType.FILE else None,
        devmajor=info.devmajor,
        devminor=info.devminor,
        xattrs=xattrs,
    )


class _View:
    """The tree being built: entries by path and the children of each folder."""

    def __init__(self) -> None:
        root = Entry(path="/", type=EntryType.DIR, mode=0o755, uid=0, gid=0, size=0, mtime=0, implicit=True)
        self.entries: dict[str, Entry] = {"/": root}
        self.children: dict[str, set[str]] = {"/": set()}

    def apply(self, changes: _Changes, layer: int, where: str) -> None:
        for folder in changes.opaque:
            if folder in self.entries and self.entries[folder].is_dir:
                for child in list(self.children.get(folder, ())):
                    self._remove(child)
        for path in changes.removed:
            if path in self.entries and path != "/":
                self._remove(path)
        for entry in changes.added:
            self._add(entry, layer, where)

    def _add(self, entry: Entry, layer: int, where: str) -> None:
        if entry.type is EntryType.HARDLINK:
            entry = self._link(entry, where)
        self._parents(entry.path, layer)
        old = self.entries.get(entry.path)
        if old is not None and not (old.is_dir and entry.is_dir):
            self._remove(entry.path)
        self.entries[entry.path] = entry
        if entry.path != "/":
            self.children.setdefault(parent_of(entry.path), set()).add(entry.path)
        if entry.is_dir:
            self.children.setdefault(entry.path, set())

    def _link(self, entry: Entry, where: str) -> Entry:
        target = self.entries.get(entry.link_target)
        if target is None:
            raise ImageInvalid(f"{where}: hard link {entry.path} to {entry.link_target}, which does not exist")
        if target.is_dir:
            raise ImageInvalid(f"{where}: hard link {entry.path} to the folder {entry.link_target}")
        if target.type is EntryType.HARDLINK:
            target_path = target.link_target
        elif target.type is EntryType.FILE:
            target_path = target.path
        else:  # a hard link to a symlink, fifo or device is another name of that node
            return replace(target, path=entry.path, layer=entry.layer)
        # One inode: the link shows its target's bytes, mode and owner.
        return replace(
            target, path=entry.path, type=EntryType.HARDLINK, link_target=target_path, layer=entry.layer, implicit=False
        )

    def _parents(self, path: str, layer: int) -> None:
        missing: list[str] = []
        parent = parent_of(path)
        while parent != "/":
            found = self.entries.get(parent)
            if found is not None and found.is_dir:
                break
            if found is not None:
                self._remove(parent)  # a file or symlink where a folder must be: replaced
            missing.append(parent)
            parent = parent_of(parent)
        for folder in reversed(missing):
            self.entries[folder] = Entry(
                path=folder, type=EntryType.DIR, mode=0o755, uid=0, gid=0, size=0, mtime=0, layer=layer, implicit=True
            )
            self.children.setdefault(parent_of(folder), set()).add(folder)
            self.children.setdefault(folder, set())

    def _remove(self, path: str) -> None:
        stack = [path]
        while stack:
            current = stack.pop()
            self.entries.pop(current, None)
            stack.extend(self.children.pop(current, ()))
        self.children.get(parent_of(path), set()).discard(path)
