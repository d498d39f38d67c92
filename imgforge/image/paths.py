"""Paths inside an image: the only place a tar member name becomes a path, and where escapes stop.

A layer is hostile input, and its member names are too: ``../../etc/passwd``, ``/etc/passwd``,
``a/../../b``. Names are read the way Docker's and containerd's appliers read them: cleaned,
made relative to the image root (a leading ``/`` is the image's root, not the host's), and
refused when they climb above the root (Docker reports the same entry as a "breakout"). The
result is always an absolute image path (``/etc/nginx/nginx.conf``; ``/`` for the root) with no
``.``, ``..`` or empty component, so nothing built from it can point outside the view.
"""

from __future__ import annotations

import posixpath

from imgforge.errors import ImageInvalid, ImageRefused, LimitExceeded
from imgforge.image.limits import Limits

NAME_MAX = 255  # bytes in one path component, as on Linux


def member_path(name: str, where: str, limits: Limits) -> str:
    """The image path of a tar member (or hard-link target) ``name``; refuse escapes and oddities."""
    if "\x00" in name:
        raise ImageInvalid(f"{where}: entry name {name!r} contains NUL")
    if len(name.encode("utf-8", "surrogateescape")) > limits.max_path_bytes:
        raise LimitExceeded(f"{where}: entry {name[:60]!r}…", "path length", "max_path_bytes", limits.max_path_bytes)
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ImageRefused(f"{where}: entry {name!r} climbs out of the image root")
            parts.pop()
            continue
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise ImageInvalid(f"{where}: entry {name[:60]!r}…: a path component is over {NAME_MAX} bytes")
        parts.append(part)
    return "/" + "/".join(parts)


def normalize(path: str) -> str:
    """A caller's image path (``etc/x``, ``/etc/./x/``) in the canonical absolute form; ``..`` stops at root."""
    clean = posixpath.normpath("/" + path)
    return "/" + clean.lstrip("/")


def parent_of(path: str) -> str:
    return posixpath.dirname(path) if path != "/" else "/"


def join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


def is_within(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")
