"""Where the oci builder keeps its bytes: one content-addressed blob folder and one OCI layout per site.

``$IMGFORGE_CACHE_DIR/oci/blobs/sha256/<hex>`` holds every blob once (base layers, imgforge's
layers, configs, manifests); ``$IMGFORGE_CACHE_DIR/oci/sites/<site>/`` is a complete OCI image
layout (``oci-layout``, ``index.json``, ``blobs/``) whose blobs are hard links into that folder, so
any OCI tool (skopeo, ``imgforge audit --image oci:PATH``) reads a site's image without copying.
Blobs are written to a temporary name and renamed: a crash never leaves a blob under its digest
with other bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from imgforge.content import cache_dir
from imgforge.image.digest import check_digest

LAYOUT_MARKER = b'{"imageLayoutVersion":"1.0.0"}'


def oci_root() -> Path:
    return cache_dir() / "oci"


def blob_dir() -> Path:
    return oci_root() / "blobs"


def blob_path(digest: str) -> Path:
    check_digest(digest, "oci store")
    algorithm, hexpart = digest.split(":", 1)
    return blob_dir() / algorithm / hexpart


def has_blob(digest: str) -> bool:
    return blob_path(digest).is_file()


def canonical_json(doc: Any) -> bytes:
    """The one spelling of a document imgforge writes: sorted keys, no spaces, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def put_bytes(data: bytes) -> str:
    """Store ``data``; returns its digest."""
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    path = blob_path(digest)
    if not path.is_file():
        _atomic(path, lambda out: out.write(data))
    return digest


def put_stream(stream: IO[bytes], digest: str) -> None:
    """Store a verified stream under ``digest`` (the caller's stream checks the digest as it ends)."""
    path = blob_path(digest)
    if path.is_file():
        return
    sha = hashlib.sha256()

    def copy(out: IO[bytes]) -> None:
        while chunk := stream.read(1 << 20):
            sha.update(chunk)
            out.write(chunk)

    _atomic(path, copy)
    if f"sha256:{sha.hexdigest()}" != digest:
        path.unlink(missing_ok=True)
        raise ValueError(f"blob {digest}: the bytes stored have digest sha256:{sha.hexdigest()}")


def read_blob(digest: str) -> bytes:
    return blob_path(digest).read_bytes()


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def site_layout(site: str) -> Path:
    return oci_root() / "sites" / site


def write_layout(folder: Path, index: dict[str, Any], digests: Iterable[str]) -> None:
    """Replace ``folder`` with an OCI layout holding ``index`` and the blobs ``digests`` (hard links)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        (staged / "blobs" / "sha256").mkdir(parents=True)
        for digest in sorted(set(digests)):
            target = staged / "blobs" / "sha256" / digest.split(":", 1)[1]
            try:
                os.link(blob_path(digest), target)
            except OSError:  # another file system, or links not allowed: a copy is the same bytes
                shutil.copyfile(blob_path(digest), target)
        (staged / "oci-layout").write_bytes(LAYOUT_MARKER)
        (staged / "index.json").write_bytes(canonical_json(index))
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.rename(folder, old)
        os.rename(staged, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def read_index(folder: Path) -> dict[str, Any] | None:
    """The layout's ``index.json``, or None when there is no layout (or it cannot be read)."""
    try:
        data = json.loads((folder / "index.json").read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def put_local_digests(known: dict[str, str]) -> None:
    """Remember the manifest digest of each local base by its image ID (``local-bases.json``)."""
    write_json(oci_root() / "local-bases.json", known)


def write_json(path: Path, doc: Any) -> None:
    """A small index file of the store, replaced whole (a reader never sees half of it)."""
    _atomic(path, lambda out: out.write(canonical_json(doc)))
