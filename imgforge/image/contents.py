"""Reading file contents out of an image view: a second, selective pass over its layers.

The first pass (:func:`~imgforge.image.read_fs`) kept metadata and, for each regular file, the
layer and tar member holding its bytes. Here only the layers holding wanted files are opened, in
order, and each is still read to its end so its digest and ``diff_id`` are verified again (the
source may be a registry that serves different bytes the second time).

:func:`extract` writes a subtree to the host. It builds the copy in a fresh staging folder next
to ``dest`` and swaps it in only after every layer verified; it never creates a symlink on the
host and opens every file with ``O_EXCL | O_NOFOLLOW`` from names that :mod:`.paths` already
cleaned, so a hostile image cannot make it write outside ``dest``. Symlinks inside the subtree
that lead to a regular file inside the subtree are written as copies of that file; any other link
(to a folder, dangling, or leading out of the subtree) is skipped and reported.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from imgforge._fs import replace_dir, staging_dir
from imgforge.errors import ImageInvalid, ImageNotFound, ImageRefused, LimitExceeded
from imgforge.image.fs import Entry
from imgforge.image.layers import Budget, LayerReader
from imgforge.image.paths import normalize

if TYPE_CHECKING:
    from imgforge.image.fs import ImageFS, Selection

_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ExtractResult:
    """What :func:`extract` wrote, and what it left out with the reason."""

    dest: Path
    files: int
    bytes: int
    skipped: tuple[tuple[str, str], ...] = field(default=())


def selected(fs: ImageFS, select: Selection) -> list[tuple[str, Entry]]:
    """``(path as asked, regular-file entry)`` pairs for a list of paths or an entry predicate."""
    if callable(select):
        return [(e.path, e) for e in fs if e.is_regular and select(e)]
    found: list[tuple[str, Entry]] = []
    for path in select:
        try:
            entry = fs.lookup(path)
        except (ImageRefused, ImageInvalid):  # a link loop leads to no file, like a dangling link
            continue
        if entry is not None and entry.is_regular:
            found.append((path, entry))  # keyed as asked: "/link/../x" is not "/x"
    return found


def open_files(fs: ImageFS, wanted: list[tuple[str, Entry]]) -> Iterator[tuple[str, Entry, IO[bytes]]]:
    """Stream the wanted files layer by layer (see :meth:`ImageFS.open_files`)."""
    image = fs.image
    by_layer: dict[int, dict[int, list[tuple[str, Entry]]]] = defaultdict(lambda: defaultdict(list))
    for path, entry in wanted:
        assert entry.data is not None
        if entry.data in fs.prefetched:  # read and verified by the first pass
            yield path, entry, io.BytesIO(fs.prefetched[entry.data])
        else:
            by_layer[entry.data.layer][entry.data.member].append((path, entry))
    budget = Budget(image.limits)
    for index in sorted(by_layer):
        members = by_layer[index]
        desc, diff_id = image.manifest.layers[index], image.config.diff_ids[index]
        with LayerReader(image.source, desc, diff_id, index, budget) as layer:
            left = len(members)
            for ordinal, info in layer.members():
                if ordinal not in members:
                    continue
                askers = members[ordinal]
                if info.size != askers[0][1].size or not info.isreg():
                    raise ImageInvalid(f"{layer.where}: member {ordinal} changed since the first read")
                stream = layer.open_member(info)
                if len(askers) == 1:
                    yield askers[0][0], askers[0][1], stream
                else:  # one member, several names (hard links): copied once, read by each
                    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as copy:
                        shutil.copyfileobj(stream, copy, _CHUNK)
                        for path, entry in askers:
                            copy.seek(0)
                            yield path, entry, cast(IO[bytes], copy)
                left -= 1
                if not left:
                    break
            layer.finish()


def read_files(fs: ImageFS, select: Selection, max_bytes: int | None) -> dict[str, bytes]:
    """The selected files' bytes, returned only after every layer read was verified."""
    cap = fs.image.limits.max_read_bytes if max_bytes is None else max_bytes
    wanted = selected(fs, select)
    _check_total(wanted, cap, fs, "max_read_bytes")
    found: dict[str, bytes] = {}
    for path, entry, stream in open_files(fs, wanted):
        data = stream.read()
        if len(data) != entry.size:
            raise ImageInvalid(f"{fs.image.describe()}: {entry.path}: {len(data)} bytes, its header says {entry.size}")
        found[path] = data
    return found


def extract(fs: ImageFS, top: str, dest: Path, max_bytes: int | None) -> ExtractResult:
    """Copy the subtree ``top`` (symlinks followed inside it) to ``dest``; ``dest`` is replaced whole."""
    where = fs.image.describe()
    root = fs.resolve(top)
    root_entry = fs.get(root)
    if root_entry is None or not root_entry.is_dir:
        raise ImageNotFound(f"{where}: {normalize(top)} is not a folder in the image")
    folders, files, skipped = _plan(fs, root)
    cap = fs.image.limits.max_extract_bytes if max_bytes is None else max_bytes
    _check_total(files, cap, fs, "max_extract_bytes")
    staging = staging_dir(dest)
    written = 0
    try:
        for folder in folders:
            os.mkdir(staging / folder, 0o755)
        for rel, entry, stream in open_files(fs, files):
            written += write_entry(staging / rel, stream, entry, where)
        replace_dir(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExtractResult(Path(dest), len(files), written, tuple(skipped))


def _plan(fs: ImageFS, root: str) -> tuple[list[str], list[tuple[str, Entry]], list[tuple[str, str]]]:
    folders: list[str] = []
    files: list[tuple[str, Entry]] = []
    skipped: list[tuple[str, str]] = []
    for entry in fs.walk(root):
        if entry.path == root:
            continue
        rel = entry.path[len(root) :].lstrip("/")
        if entry.is_dir:
            folders.append(rel)
        elif entry.is_regular:
            files.append((rel, entry))
        elif entry.is_symlink:
            reason, target = _follow(fs, entry.path, root)
            if target is None:
                skipped.append((entry.path, reason))
            else:
                files.append((rel, target))
        else:
            skipped.append((entry.path, f"a {entry.type.value} is not content"))
    return folders, files, skipped


def _follow(fs: ImageFS, path: str, root: str) -> tuple[str, Entry | None]:
    try:
        resolved = fs.resolve(path, within=root)
    except ImageRefused:
        return f"link leads outside {root}", None
    except ImageInvalid as e:
        return str(e), None
    target = fs.get(resolved)
    if target is None:
        return f"dangling link to {resolved}", None
    if not target.is_regular:
        return f"link to a {target.type.value} ({resolved})", None
    return "", target


def write_entry(path: Path, stream: IO[bytes], entry: Entry, where: str) -> int:
    """Write one regular file as a new file (never through a link), exactly as many bytes as its tar header says."""
    mode = 0o755 if entry.mode & 0o111 else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(_CHUNK):
            written += len(chunk)
            if written > entry.size:
                raise ImageInvalid(f"{where}: {entry.path} has more bytes than its tar header says")
            out.write(chunk)
    if written != entry.size:
        raise ImageInvalid(f"{where}: {entry.path}: {written} bytes, its tar header says {entry.size}")
    return written


def _check_total(wanted: list[tuple[str, Entry]], cap: int, fs: ImageFS, limit_name: str) -> None:
    total = sum(entry.size for _, entry in wanted)
    if total > cap:
        raise LimitExceeded(fs.image.describe(), f"{total} bytes of selected files", limit_name, cap)
