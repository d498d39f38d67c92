"""An image's file tree as comparable rows, read with imgforge's engine-free reader."""

from __future__ import annotations

import hashlib

from imgforge.image import DockerEngineSource, OciLayout, read_fs, resolve
from imgforge.image.fs import EntryType


def tree(image) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, size, link target, sha256 of a file's bytes)."""
    fs = read_fs(image)
    data = {}
    for path, _, stream in fs.open_files(lambda e: e.type is EntryType.FILE):
        h = hashlib.sha256()
        while chunk := stream.read(1 << 20):
            h.update(chunk)
        data[path] = h.hexdigest()
    return {
        e.path: (str(e.type), oct(e.mode), e.uid, e.gid, e.size, e.link_target, data.get(e.path, ""))
        for e in fs
        if e.path != "/"
    }


def engine_tree(reference: str) -> dict[str, tuple]:
    with DockerEngineSource(reference) as source:
        return tree(resolve(source))


def layout_tree(folder, reference: str | None = None) -> dict[str, tuple]:
    return tree(resolve(OciLayout.open_dir(folder), reference))
