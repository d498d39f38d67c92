"""The layers imgforge puts on a base: a hardening layer (per base), the config layer and the content layer.

They hold exactly what the docker builder's Dockerfile steps leave behind, so both builders give
images with the same files, modes and owners:

- **harden** (depends on the base, cached per base manifest and runtime user): what the
  Dockerfile's ``RUN find …`` changes, worked out by reading the base's file tree: setuid/setgid
  bits stripped, ``o-w`` on world-writable folders but ``/tmp``, files of the runtime UID or GID
  handed to 0:0, and whiteouts for the stock site folders and the web root;
- **config**: ``nginx.conf``, ``/etc/nginx/imgforge/``, the entrypoint (the only executable);
- **content**: the web root and the content manifest (one file changed → only this layer changes).

The config and content layers do not depend on the base or its architecture: a rebase or another
platform reuses them byte for byte.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from imgforge.build_context import CONTENT_DIR, MANIFEST_FILE, Context
from imgforge.content_manifest import IMAGE_PATH as MANIFEST_PATH
from imgforge.image.fs import EntryType
from imgforge.oci import store
from imgforge.oci.layer import Blob, LayerEntry, constant, whiteout, write_layer

ENTRYPOINT = "/usr/local/bin/imgforge-entrypoint"
# Context file -> image path (the Dockerfile's COPY lines); the Dockerfile itself is not copied.
PLACES = {
    "nginx.conf": "etc/nginx/nginx.conf",
    "imgforge/site.conf": "etc/nginx/imgforge/site.conf",
    "imgforge/headers.conf": "etc/nginx/imgforge/headers.conf",
    "imgforge-entrypoint": ENTRYPOINT.lstrip("/"),
}
OWN_FOLDERS = ("etc/nginx/imgforge",)
REMOVED = ("/etc/nginx/conf.d", "/etc/nginx/http.d", "/etc/nginx/sites-enabled")


def _folders(paths: list[str], stop: str) -> list[LayerEntry]:
    """Folder entries (0755, root) for the parents of ``paths`` below ``stop`` (inclusive)."""
    found: set[str] = set()
    for p in paths:
        for parent in PurePosixPath(p).parents:
            text = str(parent)
            if text == "." or not (text == stop or text.startswith(stop + "/")):
                continue
            found.add(text)
    return [LayerEntry(f, "dir", 0o755) for f in sorted(found)]


def _cached(kind: str, entries: list[LayerEntry], hashes: dict[str, str], mtime: int) -> Blob:
    """The layer of ``entries``, from ``layers.json`` when these exact entries were written before.

    The key is every entry's path, kind, mode, owner, size and sha256 (content hashes come from the
    hash cache, so a hit reads no content byte) plus the mtime: a hit is the blob a fresh write
    would give, byte for byte. This is what makes ``base update`` a rebase: only the base's own
    layers and the hardening layer change, the config and content blobs are reused as they are.
    """
    h = hashlib.sha256(f"{kind}\0{mtime}\0".encode())
    for e in sorted(entries, key=lambda e: e.path):
        h.update(f"{e.path}\0{e.kind}\0{e.mode:o}\0{e.uid}:{e.gid}\0{e.size}\0{hashes.get(e.path, '')}\0".encode())
    key = h.hexdigest()
    path = store.oci_root() / "layers.json"
    try:
        known = json.loads(path.read_bytes())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(hit := known.get(key), dict) and store.has_blob(hit.get("digest", "")):
        return Blob(hit["digest"], hit["size"], hit["diff_id"])
    blob = write_layer(entries, mtime, store.blob_dir())
    known = known if isinstance(known, dict) else {}
    known[key] = {"digest": blob.digest, "size": blob.size, "diff_id": blob.diff_id}
    store.write_json(path, known)
    return blob


def config_layer(context: Context, mtime: int) -> Blob:
    entries = []
    hashes = {}
    for entry in context.entries():
        if entry.name in PLACES and entry.data is not None:
            data = entry.data
            entries.append(LayerEntry(PLACES[entry.name], "file", entry.mode, len(data), read=constant(data)))
            hashes[PLACES[entry.name]] = hashlib.sha256(data).hexdigest()
    entries += [LayerEntry(f, "dir", 0o755) for f in OWN_FOLDERS]
    return _cached("config", entries, hashes, mtime)


def content_layer(context: Context, mtime: int) -> Blob:
    root = context.content_root.strip("/")
    entries: list[LayerEntry] = []
    hashes: dict[str, str] = {}
    served = context.served()
    for entry in context.entries():
        if entry.name == MANIFEST_FILE and entry.data is not None:
            data = entry.data
            entries.append(LayerEntry(MANIFEST_PATH.lstrip("/"), "file", 0o644, len(data), read=constant(data)))
            hashes[MANIFEST_PATH.lstrip("/")] = hashlib.sha256(data).hexdigest()
        elif entry.rel is not None and entry.name.startswith(CONTENT_DIR + "/"):
            rel = entry.rel
            hashes[f"{root}/{rel}"] = served[rel].sha256
            entries.append(
                LayerEntry(
                    f"{root}/{rel}", "file", 0o644, entry.size, read=functools.partial(context.content_bytes, rel)
                )
            )
    folders = _folders([e.path for e in entries if e.path.startswith(root + "/")], root)
    manifest_dir = str(PurePosixPath(MANIFEST_PATH.lstrip("/")).parent)
    entries += [*folders, LayerEntry(manifest_dir, "dir", 0o755)]
    if not any(f.path == root for f in folders):
        entries.append(LayerEntry(root, "dir", 0o755))
    return _cached("content", entries, hashes, mtime)


def harden_layer(manifest_digest: str, uid: int, gid: int, content_root: str) -> Blob:
    """The hardening layer for one base manifest (cached: ``harden.json`` in the store).

    Its entries carry mtime 0: they come from the base, not from the site's source, so every site
    with the same base and runtime user shares the one layer (a rebase of ten sites makes it once).
    """
    key = f"{manifest_digest} {uid}:{gid} {content_root}"
    known = _known()
    if (hit := known.get(key)) and store.has_blob(hit["digest"]):
        return Blob(hit["digest"], hit["size"], hit["diff_id"])
    blob = write_layer(_harden_entries(manifest_digest, uid, gid, content_root), 0, store.blob_dir())
    known[key] = {"digest": blob.digest, "size": blob.size, "diff_id": blob.diff_id}
    store.write_json(store.oci_root() / "harden.json", known)
    return blob


def _known() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((store.oci_root() / "harden.json").read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _harden_entries(manifest_digest: str, uid: int, gid: int, content_root: str) -> Iterator[LayerEntry]:
    from imgforge.image import read_fs, resolve
    from imgforge.oci.base import store_source

    fs = read_fs(resolve(store_source(), manifest_digest))
    changed: list[tuple[str, EntryType, int, int, int, str]] = []
    for e in fs:
        if e.path == "/" or e.type not in (EntryType.FILE, EntryType.HARDLINK, EntryType.DIR, EntryType.SYMLINK):
            continue
        mode, owner = e.mode, (e.uid, e.gid)
        if e.is_regular and mode & 0o6000:
            mode &= ~0o6000
        if e.is_dir and mode & 0o002 and e.path != "/tmp":
            mode &= ~0o002
        if e.uid == uid or e.gid == gid:
            owner = (0, 0)
        if (mode, owner) != (e.mode, (e.uid, e.gid)):
            changed.append((e.path, e.type, mode, owner[0], owner[1], e.link_target))
    removed = [p for p in (*REMOVED, content_root) if fs.get(p) is not None]
    under = tuple(p + "/" for p in removed)
    files = [c[0] for c in changed if c[1] in (EntryType.FILE, EntryType.HARDLINK) and not c[0].startswith(under)]
    data = fs.read_files(files) if files else {}
    for path, kind, mode, u, g, link in changed:
        if path in removed or path.startswith(under):
            continue
        rel = path.lstrip("/")
        if kind is EntryType.DIR:
            yield LayerEntry(rel, "dir", mode, uid=u, gid=g)
        elif kind is EntryType.SYMLINK:
            yield LayerEntry(rel, "symlink", 0o777, link=link, uid=u, gid=g)
        else:
            body = data[path]
            yield LayerEntry(rel, "file", mode, len(body), read=constant(body), uid=u, gid=g)
    for path in removed:
        yield whiteout(path)
