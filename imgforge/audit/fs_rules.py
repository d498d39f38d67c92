"""The image audit's file-system rules, over the merged tree of an image (whiteouts applied).

IMG030–IMG033 and IMG035 look at the web root (names, text, owners and modes), IMG050–IMG052 at
the rest: world-writable paths outside /tmp, setuid/setgid files, package caches. Modes and owners
are the image's own (as ``stat`` in a container would show them), so nothing here is guessed from
instructions. A folder whose whole subtree breaks a rule is reported once, with a count, rather
than file by file: ``COPY --chown=nginx site/ /usr/share/nginx/html/`` is one finding, not 500.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from imgforge.audit.findings import Finding, finding
from imgforge.audit.webroot import MAX_SCANNED_FILE, check_name, credentials, is_hidden_dir, wants_text
from imgforge.image import Entry, EntryType, ImageFS

MAX_PER_RULE = 20  # beyond this, one more finding says how many were left out
MAX_SCANNED_BYTES = 64 * 1024 * 1024  # web-root text read for credentials, in all
_MASKED = ("/tmp", "/proc", "/sys", "/dev")  # mounted over at run time: what the image holds there never shows
_CONTENT = (EntryType.FILE, EntryType.HARDLINK, EntryType.DIR)
# Package manager caches and indexes: (folder, what it is, names inside that are not cache).
_CACHES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("/var/lib/apt/lists", "apt package lists", ("lock", "partial", "auxfiles")),
    ("/var/cache/apt", "apt package cache", ("lock", "partial")),
    ("/var/cache/apk", "apk package cache", ()),
    ("/var/cache/dnf", "dnf cache", ()),
    ("/var/cache/yum", "yum cache", ()),
    ("/root/.cache/pip", "pip cache", ()),
    ("/root/.npm/_cacache", "npm cache", ()),
    ("/usr/local/share/.cache/yarn", "yarn cache", ()),
)


@dataclass(frozen=True)
class Runtime:
    """Who the container runs as: the config's ``User`` with names looked up in the image."""

    user: str
    uid: int | None
    gid: int | None

    def can_write(self, entry: Entry) -> bool:
        if entry.type not in _CONTENT:
            return False
        if entry.mode & 0o002:
            return True
        if entry.uid == self.uid:
            return True  # its owner can chmod it whatever the mode says
        return self.gid is not None and entry.gid == self.gid and bool(entry.mode & 0o020)


def within(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


def webroot(fs: ImageFS, root: str, refused: Callable[[str], bool], runtime: Runtime | None) -> list[Finding]:
    """IMG030–IMG033 by name, IMG032 by content, IMG035 by owner and mode, for the folder ``root``."""
    out: list[Finding] = []
    texts: list[str] = []
    budget = MAX_SCANNED_BYTES
    for entry in _served(fs, root):
        rel = entry.path[len(root) :]
        uri = rel + ("/" if entry.is_dir else "")
        found = check_name(entry.path, root, uri, entry.is_dir, refused(uri))
        if found is not None:
            out.append(found)
        if entry.is_regular and wants_text(os.path.basename(entry.path), entry.size) and entry.size <= budget:
            budget -= entry.size
            texts.append(entry.path)
    for path, data in fs.read_files(texts, max_bytes=MAX_SCANNED_BYTES).items():
        out += credentials(data[:MAX_SCANNED_FILE].decode("utf-8", "replace"), path)
    if runtime is not None and runtime.uid is not None:
        who = f"{runtime.user} ({runtime.uid}:{runtime.gid if runtime.gid is not None else '?'})"

        def message(entry: Entry, count: int) -> str:
            what = "owned by" if entry.uid == runtime.uid else "writable by"
            more = f" and the {count - 1} entries under it" if count > 1 else ""
            return f"{entry.path}{more}: {what} the runtime user {who}; served files must be root's and read-only"

        out += _report("IMG035", fs, root, runtime.can_write, message)
    return out


def _served(fs: ImageFS, root: str) -> Iterator[Entry]:
    """The entries under ``root``; a dot-folder is one entry (its contents are not walked)."""
    stack = [root]
    while stack:
        path = stack.pop()
        for child in reversed(fs.children(path)):
            entry = fs.get(child)
            if entry is None:
                continue
            yield entry
            if entry.is_dir and not is_hidden_dir(os.path.basename(child)):
                stack.append(child)


def world_writable(fs: ImageFS, skip: list[str]) -> list[Finding]:
    """IMG050: files and folders anyone may write, outside /tmp (and the web roots: IMG035's)."""

    def bad(entry: Entry) -> bool:
        return (
            entry.type in _CONTENT
            and bool(entry.mode & 0o002)
            and not any(within(entry.path, top) for top in (*_MASKED, *skip))
        )

    def message(entry: Entry, count: int) -> str:
        more = f" and the {count - 1} entries under it" if count > 1 else ""
        return f"{entry.path}{more}: world-writable (mode {entry.mode:04o}); remove o+w (chmod o-w)"

    return _report("IMG050", fs, "/", bad, message)


def setuid(fs: ImageFS) -> list[Finding]:
    """IMG051: regular files with the setuid or setgid bit (a folder's setgid bit is harmless)."""

    def bad(entry: Entry) -> bool:
        return entry.is_regular and (entry.setuid or entry.setgid) and not within(entry.path, "/tmp")

    def message(entry: Entry, _count: int) -> str:
        bits = " and ".join(b for b, on in (("setuid", entry.setuid), ("setgid", entry.setgid)) if on)
        return f"{entry.path}: {bits} (mode {entry.mode:04o}); strip it (chmod a-s)"

    return _report("IMG051", fs, "/", bad, message, collapse=False)


def caches(fs: ImageFS) -> list[Finding]:
    """IMG052: one finding per package cache folder that still holds files."""
    out = []
    for top, what, keep in _CACHES:
        files = [
            e for e in fs.walk(top) if e.is_regular and not any(part in keep for part in e.path[len(top) :].split("/"))
        ]
        if files:
            size = sum(e.size for e in files)
            out.append(
                finding("IMG052", top, None, f"{what}: {len(files)} files, {size} bytes left in the image; remove them")
            )
    return out


def _report(
    rule: str,
    fs: ImageFS,
    top: str,
    bad: Callable[[Entry], bool],
    message: Callable[[Entry, int], str],
    collapse: bool = True,
) -> list[Finding]:
    hits = list(_collapsed(fs, top, bad) if collapse else ((e, 1) for e in fs.walk(top) if bad(e)))
    out = [finding(rule, entry.path, None, message(entry, count)) for entry, count in hits[:MAX_PER_RULE]]
    if len(hits) > MAX_PER_RULE:
        out.append(finding(rule, top, None, f"{len(hits) - MAX_PER_RULE} more paths like these under {top}"))
    return out


def _collapsed(fs: ImageFS, top: str, bad: Callable[[Entry], bool]) -> Iterator[tuple[Entry, int]]:
    """(entry, entries it stands for): a folder that is bad with everything under it stands for all."""
    whole: dict[str, int] = {}  # folder -> size of its subtree, for folders bad all the way down
    order = list(fs.walk(top))
    for entry in reversed(order):  # children before parents
        if not entry.is_dir or not bad(entry):
            continue
        total, ok = 1, True
        for child in fs.children(entry.path):
            sub = fs.get(child)
            if sub is None or sub.is_symlink:
                continue  # a link's own mode means nothing
            if sub.is_dir:
                ok = ok and child in whole
                total += whole.get(child, 0)
            else:
                ok = ok and bad(sub)
                total += 1
        if ok:
            whole[entry.path] = total
    skip: str | None = None
    for entry in order:
        if skip is not None and within(entry.path, skip):
            continue
        skip = None
        if entry.path in whole:
            skip = entry.path
            yield entry, whole[entry.path]
        elif bad(entry):
            yield entry, 1
