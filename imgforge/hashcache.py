"""sha256 of content files, remembered by (size, mtime_ns, inode) like git's index does.

A warm ``imgforge build --all`` must decide "nothing changed" without reading every photo of every
site again; a file whose size, mtime or inode changed is hashed anew. The cache is opened by whoever
runs the builds (the CLI opens ``HashCache.default()`` once for all sites and saves it at the end)
and handed to the build context; a library call never opens or writes one on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from imgforge._fs import atomic_write_text, open_for_reading
from imgforge.content import cache_dir

_MAX_ENTRIES = 200_000
_HEX = re.compile(r"[0-9a-f]{64}")


class HashCache:
    """Hashes remembered by stat stamp; ``path`` None keeps them in memory only (nothing is saved)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._entries: dict[str, list[Any]] = {}
        if path is not None:
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                loaded = {}
            self._entries = loaded if isinstance(loaded, dict) else {}
        self._dirty = False

    @classmethod
    def default(cls) -> HashCache:
        """The user's cache, ``$IMGFORGE_CACHE_DIR/file-hashes.json``."""
        return cls(cache_dir() / "file-hashes.json")

    def sha256(self, file: Path, st: os.stat_result | None = None) -> bytes:
        """The file's sha256; ``st`` is its stat from a listing, saving a second ``stat`` call.

        Raises ``OSError`` when the file cannot be read. Bytes read from a file that no longer
        matches ``st`` are hashed but never remembered under ``st``.
        """
        st = st or os.stat(file)
        key = os.fspath(file)
        stamp = _stamp(st)
        if (known := _remembered(self._entries.get(key), stamp)) is not None:
            return known
        h = hashlib.sha256()
        with open_for_reading(file) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
            unchanged = _stamp(os.fstat(fh.fileno())) == stamp
        if unchanged:
            self._entries[key] = [*stamp, h.hexdigest()]
            self._dirty = True
        return h.digest()

    def save(self) -> None:
        """Persist new hashes; a cache that cannot be written only costs speed, never correctness."""
        if not self._dirty or self.path is None:
            return
        if len(self._entries) > _MAX_ENTRIES:
            self._entries = dict(list(self._entries.items())[-_MAX_ENTRIES:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self._entries, separators=(",", ":")))
            self._dirty = False
        except OSError:
            pass


def _remembered(entry: object, stamp: list[int]) -> bytes | None:
    """The hash stored for exactly ``stamp``; a damaged entry counts as none (it is hashed anew)."""
    if not (isinstance(entry, list) and len(entry) == 4 and entry[:3] == stamp):
        return None
    return bytes.fromhex(entry[3]) if isinstance(entry[3], str) and _HEX.fullmatch(entry[3]) else None


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]
