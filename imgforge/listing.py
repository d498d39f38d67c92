"""The content folder's listing: which files an image serves, which are left out, and why.

The left-out rule (``is_hidden``) is applied to what a path is, not only to its name: a link is
judged by the file it reaches. Listing is also where a content folder's oddities become errors
naming the path (a FIFO, a dangling link, a name that is not UTF-8), so a page is never silently
missing from an image and a link never ships bytes the rule leaves out.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import NoReturn

from imgforge._fs import is_within, shown
from imgforge.config import Site
from imgforge.errors import ContentMissing

# Never served, whatever the site holds (nginx here runs no PHP: it would hand out the source).
HIDDEN_EXTENSIONS = (
    "php",
    "php[0-9]",
    "phtml",
    "phar",
    "inc",
    "asp",
    "aspx",
    "jsp",
    "cgi",
    "pl",
    "py",
    "rb",
    "sh",
    "env",
    "ini",
    "log",
    "sql",
    "sqlite",
    "db",
    "bak",
    "old",
    "orig",
    "swp",
    "psd",
    "key",
    "pem",
    "crt",
    "p12",
    "pfx",
    "htpasswd",
)
_HIDDEN = re.compile(rf"\.(?:{'|'.join(HIDDEN_EXTENSIONS)})$", re.IGNORECASE)


def is_hidden(rel: str) -> bool:
    """A content path that is never served and never copied into the image.

    Dotfiles and dot-folders (.git/, .env, .htaccess) and server-side source or secrets (.php
    mailers with SMTP passwords, keys, .psd originals): leaving them out of the image keeps their
    bytes away from anyone who pulls it; nginx's deny rules are the second line.
    """
    parts = rel.split("/")
    return any(p.startswith(".") for p in parts) or bool(_HIDDEN.search(parts[-1]))


def list_content(root: Path, site: Site) -> tuple[dict[str, os.stat_result], list[str]]:
    """The content folder's served files (with their stat) and the sorted paths left out.

    Left out: a hidden name (``is_hidden``), and any path that is a hidden file of the folder under
    another name: a symlink (its stat is its target's) or a hard link to one have the hidden
    file's device and inode. Symlinks are followed only inside the content folder: a link to a
    host file must never copy that file into an image. A hard link's other names outside the
    folder cannot be found; inside it they are all seen, and if one of them is hidden, all are.
    Anything else that cannot be served as it is (a FIFO, a dangling or looping link, a folder
    that cannot be listed, a name that is not UTF-8) is an error naming it.
    """
    real_root = Path(os.path.realpath(root))
    served: dict[str, os.stat_result] = {}
    hidden: set[str] = set()
    hidden_ids: set[tuple[int, int]] = set()

    def cannot_list(e: OSError) -> NoReturn:
        raise ContentMissing(f"{site.file}: content: cannot read folder {shown(e.filename)}: {e.strerror}") from e

    for dirpath, dirnames, filenames in os.walk(root, onerror=cannot_list):
        dirnames.sort()
        for d in dirnames:
            if os.path.islink(os.path.join(dirpath, d)):
                _check_inside(Path(dirpath, d), real_root, site)
                raise ContentMissing(
                    f"{site.file}: content: symlinked folder {shown(Path(dirpath, d))} is not supported"
                )
        for name in sorted(filenames):  # sorted: the first error is the same on every run
            path = Path(dirpath, name)
            rel = _relative(path, root, site)
            st, left_out = _examine(path, rel, real_root, site)
            if left_out:
                hidden.add(rel)
                if st is not None and stat.S_ISREG(st.st_mode):
                    hidden_ids.add((st.st_dev, st.st_ino))
            elif st is not None:
                served[rel] = st
    for rel, st in list(served.items()):
        if (st.st_dev, st.st_ino) in hidden_ids:  # page.html -> .env, or a hard link to config.php
            hidden.add(rel)
            del served[rel]
    if not served and not hidden:
        raise ContentMissing(f"{site.file}: content folder {root} holds no files")
    return served, sorted(hidden)


def _relative(path: Path, root: Path, site: Site) -> str:
    """``path`` relative to the content folder, with ``/``; a name that is not UTF-8 is refused.

    Such a name cannot be written into the image's tar as text, requested as a URL or shown as
    JSON; refusing it names the file (bytes escaped) so the author can rename it.
    """
    rel = path.relative_to(root).as_posix()
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise ContentMissing(
            f"{site.file}: content: file name {shown(path)} is not valid UTF-8; rename it "
            "(URLs and the image's file list need UTF-8)"
        ) from None
    return rel


def _examine(path: Path, rel: str, real_root: Path, site: Site) -> tuple[os.stat_result | None, bool]:
    """What ``path`` is (its stat, links followed) and whether its name leaves it out.

    The stat is None for a left-out path that is a symlink or cannot be read: it is never read,
    and a hidden link to a page must not make that page hidden. A served path that is not a
    readable regular file is ContentMissing.
    """
    left_out = is_hidden(rel)
    link = False
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            link = True
            _check_inside(path, real_root, site)
            if left_out:
                return None, True
            st = os.stat(path)
    except OSError as e:
        if left_out:
            return None, True
        what = "is a dangling symlink" if link and isinstance(e, FileNotFoundError) else "cannot be read"
        raise ContentMissing(f"{site.file}: content: {shown(path)} {what}: {e.strerror}") from e
    if not left_out and not stat.S_ISREG(st.st_mode):
        raise ContentMissing(f"{site.file}: content: {shown(path)} is {_kind(st.st_mode)}, not a regular file")
    return st, left_out


def _check_inside(path: Path, real_root: Path, site: Site) -> None:
    """ContentMissing when the link's final target is outside the content folder."""
    target = Path(os.path.realpath(path))
    if not is_within(target, real_root):
        raise ContentMissing(f"{site.file}: content: {shown(path)} links outside the content folder ({shown(target)})")


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISDIR: "a folder",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a file")
