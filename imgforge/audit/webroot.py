"""What must not be in a web root (IMG030–IMG033), judged by name and by content, for both audits.

The owner's web roots held PHP mailers with their SMTP passwords, ``.psd`` sources, ``Thumbs.db``
and editor folders; nginx here runs no PHP, so every one of those is handed out as it is. A
repo's web root is what its COPY lines put under the nginx root; an image's is the folder itself.
"""

from __future__ import annotations

import fnmatch
import os
import re

from imgforge.audit.findings import Finding, finding

SERVER_SIDE = frozenset(
    {
        ".php",
        ".php3",
        ".php4",
        ".php5",
        ".php7",
        ".phtml",
        ".phar",
        ".inc",
        ".py",
        ".pl",
        ".cgi",
        ".rb",
        ".asp",
        ".aspx",
        ".jsp",
        ".sh",
    }
)
_SECRET_NAMES = (
    "*.key",
    "*.pem",
    "*.p12",
    "*.pfx",
    "*.kdbx",
    "id_rsa*",
    "id_ed25519*",
    "id_ecdsa*",
    ".env",
    ".env.*",
    "*.env",
    ".htpasswd",
    ".git-credentials",
    ".npmrc",
    ".pgpass",
)
_JUNK_NAMES = (
    "thumbs.db",
    "desktop.ini",
    ".ds_store",
    "*.psd",
    "*.ai",
    "*.xcf",
    "*.sketch",
    "*.swp",
    "*.swo",
    "*~",
    "*.bak",
    "*.orig",
    "*.tmp",
)
_TEXT_EXTS = SERVER_SIDE | {".env", ".ini", ".conf", ".json", ".yml", ".yaml", ".js", ".txt", ".cfg"}
MAX_SCANNED_FILE = 512 * 1024  # credentials are looked for in text files up to this size
_CREDENTIAL = re.compile(
    r"""(\w*(?:pass(?:word|wd)?|pwd|secret|token|api_?key)\w*)['"]?\s*(?:[,:=]|=>)\s*"""
    r"""['"]([^'"\s$]{4,})['"]""",
    re.IGNORECASE,
)


def is_hidden_dir(name: str) -> bool:
    """A dot-folder (reported as one entry, not descended into); ``.well-known`` is content."""
    return name.startswith(".") and name != ".well-known"


def check_name(file: str, root: str, uri: str, is_dir: bool, refused: bool) -> Finding | None:
    """The finding for the web-root entry served at ``uri`` under ``root``, by its name.

    ``refused``: the nginx config answers 403/404 for it; it is still reported, as it still ships.
    """
    name = os.path.basename(uri.rstrip("/")).lower()
    ext = os.path.splitext(name)[1]
    where = f"in the image at {root}{uri}" + (" (nginx refuses to serve it)" if refused else "")
    if name == ".git" and is_dir:
        return finding("IMG031", file, None, f"git history {where}: exclude it")
    if not is_dir and any(fnmatch.fnmatch(name, p) for p in _SECRET_NAMES):
        return finding("IMG031", file, None, f"{where}: keep secrets out of the web root")
    if ext in SERVER_SIDE and not is_dir:
        served = "" if refused else ", served as plain text"
        return finding("IMG030", file, None, f"{ext} file {where}{served}: remove it or keep it out of the image")
    if any(fnmatch.fnmatch(name, p) for p in _JUNK_NAMES) or (name.startswith(".") and name != ".well-known"):
        return finding("IMG033", file, None, f"{where}: exclude it")
    return None


def wants_text(name: str, size: int) -> bool:
    """Whether a served file is scanned for credentials (text-like name, small enough)."""
    name = name.lower()
    return size <= MAX_SCANNED_FILE and (os.path.splitext(name)[1] in _TEXT_EXTS or name.startswith(".env"))


def credentials(text: str, file: str) -> list[Finding]:
    """IMG032 for literal credentials in a served file's text (at most five per file)."""
    return [
        finding("IMG032", file, n, f"{m.group(1)} with a literal value: rotate it and move it out of the image")
        for n, line in enumerate(text.splitlines(), start=1)
        if (m := _CREDENTIAL.search(line))
    ][:5]
