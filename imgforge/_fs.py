"""File writes that never leave half a file or half a folder behind, and paths shown exactly.

Every path a message names goes through ``shown``: quoted whole, with control characters and
bytes that are not UTF-8 escaped, so an error stays one line and names the file as it is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` quoted for a one-line message: undecodable bytes as ``\\xe9``, ``\\n`` escaped."""
    out = []
    for ch in os.fspath(path):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\" or not ch.isprintable():
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def is_within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or below it (both real paths: no ``..`` or links left in them)."""
    return path == folder or folder in path.parents


def open_for_reading(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a file that should be regular without ever blocking.

    A FIFO or device swapped in for a content file would otherwise hang ``open`` until a writer
    comes; with O_NONBLOCK it opens at once and the caller's ``fstat`` check refuses it.
    """
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb")


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a sibling temp file and rename, keeping the old file's mode."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(staged: Path, dest: Path) -> None:
    """Swap a fully written ``staged`` folder in for ``dest`` (two renames, old copy removed last).

    The old copy waits in a fresh ``.<name>.old-*`` folder beside ``dest``; should the second
    rename fail, it goes back where it was. Callers decide whether ``dest`` may be replaced.
    """
    dest = Path(dest)
    if not dest.exists():
        os.replace(staged, dest)
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    try:
        os.replace(dest, holder / dest.name)
        try:
            os.replace(staged, dest)
        except BaseException:
            os.replace(holder / dest.name, dest)
            raise
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def staging_dir(dest: Path) -> Path:
    """A new empty folder beside ``dest`` (same filesystem, so ``replace_dir`` is a rename)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))
