"""Content taken from a container image: ``[source] image = "REF"`` with ``content_dir = "/in/image"``.

The fleet's root images hold exactly the web root production serves, so a site can be hardened
from its running image before anyone knows its git URL. The folder is read with the image reader
(no engine run): from the registry first, from the local engine where no registry holds the image.
It is written once per image digest into the cache (``images/<digest>/<folder>``) and then treated
like any other content folder: ``listing`` applies the same left-out rules, ``build_context`` the
same hashing.

Links are resolved inside the folder only. A symlink or hard link to a file inside it becomes a
hard link on the host, so the listing sees one file under two names and leaves both out when
either name is left out (``page.html -> .env``), exactly as for a folder on disk; a link that leads
out of the folder, dangles, loops or names a folder is an error naming it, as for a folder on disk.
No symlink and no special file is ever created on the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from imgforge._fs import replace_dir, staging_dir
from imgforge.config import Catalog, Site
from imgforge.content import Content, cache_dir
from imgforge.errors import (
    ContentMissing,
    ImageInvalid,
    ImageNotFound,
    ImageRefused,
    LimitExceeded,
    RegistryUnavailable,
    RepositoryNotFound,
)
from imgforge.image import DockerEngineSource, Entry, EntryType, ImageFS, ResolvedImage, read_fs, resolve
from imgforge.image.contents import open_files, write_entry
from imgforge.image.paths import is_within, normalize
from imgforge.image_ref import ImageRef


def resolve_image(catalog: Catalog, site: Site) -> Content:
    """The site's content folder, read from its source image (cached per image digest)."""
    del catalog  # the same signature as content.resolve: an image source needs no catalog folder
    src = site.source
    assert src is not None and src.image is not None
    ref = ImageRef.parse(src.image)
    if ref.digest and (cached := _cached(ref.digest, src.content_dir)) is not None:
        return Content(cached, fetched_revision=ref.digest, image=_pinned(ref, ref.digest))
    with _open(src.image, site) as (image, engine):
        identity = image.config_digest if engine else (ref.digest or image.digest)
        label = f"{src.image} (local engine image {image.config_digest})" if engine else _pinned(ref, identity)
        folder = _cached(identity, src.content_dir)
        if folder is None:
            folder = _extract(read_fs(image), src.content_dir, _place(identity, src.content_dir), site)
    return Content(folder, fetched_revision=identity, image=label)


def _pinned(ref: ImageRef, digest: str) -> str:
    return str(ref.with_tag(None).with_digest(digest))


def _place(digest: str, content_dir: str) -> Path:
    algo, _, hexdigest = digest.partition(":")
    folder = hashlib.sha256(normalize(content_dir).encode()).hexdigest()[:16]
    return cache_dir() / "images" / f"{algo}-{hexdigest}" / folder


def _cached(digest: str, content_dir: str) -> Path | None:
    place = _place(digest, content_dir)
    return place if place.is_dir() else None


@contextlib.contextmanager
def _open(reference: str, site: Site) -> Iterator[tuple[ResolvedImage, bool]]:
    """``(image, from_engine)``: the registry's copy, else the local engine's; the source stays open."""
    from imgforge.audit.image_source import registry_image

    where = f"{site.file}: source.image {reference}"
    with contextlib.ExitStack() as stack:
        try:
            image, engine = stack.enter_context(registry_image(reference)), False
        except (ImageNotFound, RepositoryNotFound, RegistryUnavailable) as registry_failed:
            # Only "not there" and "no answer" send us to the engine: a refusal (credentials) or
            # bad bytes from the registry are errors of their own, never a reason to take other bytes.
            try:
                source = stack.enter_context(DockerEngineSource(reference))
            except ImageNotFound:
                if isinstance(registry_failed, ImageNotFound):
                    raise ContentMissing(f"{where}: not in its registry nor in the local engine") from registry_failed
                raise registry_failed from None
            image, engine = resolve(source), True
        yield image, engine


def _extract(fs: ImageFS, top: str, dest: Path, site: Site) -> Path:
    """Write the folder ``top`` of the image to ``dest`` (staged, swapped in whole)."""
    where = f"{site.file}: source.image"
    try:
        root = fs.resolve(top)
    except (ImageInvalid, ImageRefused) as e:
        raise ContentMissing(f"{where}: {top}: {e}") from e
    root_entry = fs.get(root)
    if root_entry is None or not root_entry.is_dir:
        raise ContentMissing(f"{where}: {fs.image.describe()} has no folder {top}")
    folders, files, links = _plan(fs, root, where)
    total, cap = sum(entry.size for _, entry in files), fs.image.limits.max_extract_bytes
    if total > cap:
        what = f"{where}: {fs.image.describe()}: {top}"
        raise LimitExceeded(what, f"{total} bytes of files", "max_extract_bytes", cap)
    staging = staging_dir(dest)
    try:
        for rel in folders:
            os.mkdir(staging / rel, 0o755)
        for rel, entry, stream in open_files(fs, files):
            _write(staging / rel, stream, entry, where)
        for rel, target in links:
            os.link(staging / target, staging / rel, follow_symlinks=False)
        if dest.is_dir():  # another run wrote the same digest meanwhile: it stays, in use as it may be
            shutil.rmtree(staging, ignore_errors=True)
        else:
            replace_dir(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _plan(fs: ImageFS, root: str, where: str) -> tuple[list[str], list[tuple[str, Entry]], list[tuple[str, str]]]:
    """(folders, files to write, links as (name, file it is)), all relative to ``root``."""
    folders: list[str] = []
    files: list[tuple[str, Entry]] = []
    links: list[tuple[str, str]] = []

    def rel(path: str) -> str:
        return path[len(root) :].lstrip("/")

    for entry in fs.walk(root):
        if entry.path == root:
            continue
        if entry.is_dir:
            folders.append(rel(entry.path))
        elif entry.type is EntryType.HARDLINK and is_within(entry.link_target, root):
            links.append((rel(entry.path), rel(entry.link_target)))
        elif entry.is_regular:  # a file, or a hard link to a file outside the folder: its bytes
            files.append((rel(entry.path), entry))
        elif entry.is_symlink:
            links.append((rel(entry.path), rel(_link_target(fs, entry.path, root, where))))
        else:
            raise ContentMissing(f"{where}: {entry.path} is a {entry.type.value}, not a regular file")
    return folders, files, _to_written(links, {r for r, _ in files}, root, where)


def _to_written(links: list[tuple[str, str]], written: set[str], root: str, where: str) -> list[tuple[str, str]]:
    """Each link pointed at the written file it finally is (a link may name another link)."""
    target_of = dict(links)
    out = []
    for name, first in links:
        seen, target = {name}, first
        while target not in written and target in target_of and target not in seen:
            seen.add(target)
            target = target_of[target]
        if target not in written:
            raise ContentMissing(f"{where}: {root}/{name} leads to no file of the folder")
        out.append((name, target))
    return out


def _link_target(fs: ImageFS, path: str, root: str, where: str) -> str:
    """The regular file inside ``root`` the symlink ``path`` leads to; ContentMissing otherwise."""
    try:
        target = fs.resolve(path, within=root)
    except ImageRefused:
        raise ContentMissing(f"{where}: {path} links outside the content folder {root}") from None
    except ImageInvalid as e:
        raise ContentMissing(f"{where}: {path}: {e}") from e
    entry = fs.get(target)
    if entry is None:
        raise ContentMissing(f"{where}: {path} is a dangling symlink (to {target})")
    if entry.is_dir:
        raise ContentMissing(f"{where}: symlinked folder {path} is not supported")
    if entry.is_symlink or not entry.is_regular:
        raise ContentMissing(f"{where}: {path} leads to a {entry.type.value}, not a regular file")
    return target


def _write(path: Path, stream: IO[bytes], entry: Entry, where: str) -> None:
    """The reader's writer; a short or long file is content that cannot be taken (exit 4), not an image error."""
    try:
        write_entry(path, stream, entry, where)
    except ImageInvalid as e:
        raise ContentMissing(str(e)) from e
