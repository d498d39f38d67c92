"""Helpers of the image tests: a writer for hand-made OCI layouts and tar builders.

Hand-made layouts carry what the engine cannot build (hostile layers, index shapes); the interop
proofs use layouts and archives written by skopeo and the engine instead.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

OWNER = {"io.imgforge.owner": "h6-tests"}

# --- hand-made layouts ------------------------------------------------------------------------


def tar_of(*members: tuple[Any, ...], pad: bytes = b"") -> bytes:
    """A tar from ``("file", name, data[, mode, uid, gid])``, ``("dir", name[, mode])``,
    ``("symlink", name, target)``, ``("hardlink", name, target)``, ``("raw", TarInfo, data)``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, *rest in members:
            if kind == "raw":
                tar.addfile(name, io.BytesIO(rest[0]) if rest[0] is not None else None)
                continue
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            data = None
            if kind == "file":
                data = rest[0]
                info.size = len(data)
                extras = list(rest[1:])
                info.mode, info.uid, info.gid = extras + [0o644, 0, 0][len(extras) :]
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, rest[0] if rest else 0o755
            elif kind == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, rest[0], 0o777
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, rest[0]
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue() + pad


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class LayoutWriter:
    """Writes an OCI image layout by the spec (image-layout.md), one blob at a time."""

    def __init__(self, root: Path):
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(self, data: bytes) -> tuple[str, int]:
        digest = sha(data)
        (self.root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return digest, len(data)

    def image(
        self,
        layer_tars: list[bytes],
        *,
        compress: str = "gzip",
        config: dict | None = None,
        arch: str = "amd64",
        variant: str = "",
        diff_ids: list[str] | None = None,
        layer_media_type: str | None = None,
    ) -> dict:
        """Blobs of one image; returns the manifest's descriptor (without platform)."""
        layers = []
        for tar in layer_tars:
            blob = gzip.compress(tar, mtime=0) if compress == "gzip" else tar
            digest, size = self.blob(blob)
            media = layer_media_type or (
                "application/vnd.oci.image.layer.v1.tar+gzip"
                if compress == "gzip"
                else "application/vnd.oci.image.layer.v1.tar"
            )
            layers.append({"mediaType": media, "digest": digest, "size": size})
        doc = {
            "architecture": arch,
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": diff_ids if diff_ids is not None else [sha(t) for t in layer_tars],
            },
            "config": {"User": "101:101", "ExposedPorts": {"8080/tcp": {}}, "StopSignal": "SIGQUIT"},
            **({"variant": variant} if variant else {}),
            **(config or {}),
        }
        config_digest, config_size = self.blob(json.dumps(doc).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": layers,
        }
        digest, size = self.blob(json.dumps(manifest).encode())
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size}

    def image_of_blob(
        self,
        blob: bytes,
        *,
        media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip",
        diff_id: str | None = None,
    ) -> dict:
        """An image whose one layer is ``blob`` as given (hostile, truncated, compressed elsewhere)."""
        digest, size = self.blob(blob)
        doc = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id or digest]}}
        config_digest, config_size = self.blob(json.dumps(doc).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [{"mediaType": media_type, "digest": digest, "size": size}],
        }
        digest, size = self.blob(json.dumps(manifest).encode())
        desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size}
        self.index([desc])
        return desc

    def index(self, manifests: list[dict], *, as_blob: bool = False) -> dict:
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
        data = json.dumps(doc).encode()
        if as_blob:
            digest, size = self.blob(data)
            return {"mediaType": doc["mediaType"], "digest": digest, "size": size}
        (self.root / "index.json").write_bytes(data)
        return doc


def single(writer: LayoutWriter, *tars: bytes, **kw: Any) -> LayoutWriter:
    """A layout whose index.json names one image made of ``tars``, tagged ``latest``."""
    desc = writer.image(list(tars), **kw)
    writer.index([{**desc, "annotations": {"org.opencontainers.image.ref.name": "latest"}}])
    return writer


# --- comparing views --------------------------------------------------------------------------

_TAR_KIND = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.LNKTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}


def view_of(fs: Any, skip: Any = lambda path: False) -> dict[str, tuple]:
    """``path -> (kind, mode, uid, gid, size, symlink target, mtime)``; a hard link counts as a file
    (as ``find -type f`` and ``stat`` see it), folders without mtime (the engine touches them)."""
    out = {}
    for e in fs:
        if e.path == "/" or skip(e.path):
            continue
        kind = "file" if e.is_regular else e.type.value
        out[e.path] = (
            kind,
            e.mode,
            e.uid,
            e.gid,
            e.size if kind == "file" else 0,
            e.link_target if kind == "symlink" else "",
            None if kind == "dir" else e.mtime,
        )
    return out


def links_of(fs: Any, skip: Any = lambda path: False) -> set[frozenset[str]]:
    """Groups of paths that are one inode (hard links), as sets."""
    groups: dict[Any, set[str]] = {}
    for e in fs:
        if e.is_regular and not skip(e.path):
            groups.setdefault(e.data, set()).add(e.path)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def export_view(tar_path: Path, skip: Any) -> tuple[dict[str, tuple], set[frozenset[str]], dict[str, str]]:
    """The same shapes read from a ``docker export`` tar with plain tarfile, plus sha256 of every file."""
    view: dict[str, tuple] = {}
    links: dict[str, set[str]] = {}
    hashes: dict[str, str] = {}
    with tarfile.open(tar_path) as tar:
        members = {("/" + m.name.strip("/")): m for m in tar}
        for path, m in members.items():
            if path == "/" or skip(path):
                continue
            kind = _TAR_KIND[m.type]
            size = m.size
            if m.type == tarfile.LNKTYPE:
                target = "/" + m.linkname.strip("/")
                links.setdefault(target, {target}).add(path)
                size = members[target].size
            if kind == "file":
                source = members["/" + m.linkname.strip("/")] if m.type == tarfile.LNKTYPE else m
                hashes[path] = hashlib.sha256(tar.extractfile(source).read()).hexdigest()
            view[path] = (
                kind,
                m.mode & 0o7777,
                m.uid,
                m.gid,
                size if kind == "file" else 0,
                m.linkname if kind == "symlink" else "",
                None if kind == "dir" else int(m.mtime),
            )
    return view, {frozenset(g) for g in links.values()}, hashes
