"""Turn a catalog site into a complete Docker build context.

Templates are data: the same site settings, templates and content always give byte-identical
files (no timestamps, sorted walks, normalised modes), so the inputs digest that build uses to
skip unchanged images is computed from exactly what would be written.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shlex
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import jinja2

from imgforge._fs import is_within, open_for_reading, replace_dir, shown, staging_dir
from imgforge.config import Catalog, Site
from imgforge.content import Content, cache_dir, resolve
from imgforge.errors import ContentMissing, ImgforgeError, Refused, UsageError
from imgforge.hashcache import HashCache
from imgforge.listing import HIDDEN_EXTENSIONS, is_hidden, list_content  # noqa: F401  (re-exported: see below)

# The left-out rule (is_hidden, HIDDEN_EXTENSIONS) lives with the listing that applies it; verify and
# the templates use it from here.
CONTENT_ROOT = "/usr/share/nginx/html"
CONTENT_DIR = "html"  # where the content sits inside the build context

# Served with a one-year immutable Cache-Control.
ASSET_EXTENSIONS = (
    "css",
    "js",
    "mjs",
    "png",
    "jpe?g",
    "gif",
    "svg",
    "ico",
    "webp",
    "avif",
    "woff2?",
    "ttf",
    "otf",
    "eot",
    "mp4",
    "webm",
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "SAMEORIGIN",
}
# Rendered file -> template; the entrypoint is the only executable.
OUTPUTS = {
    "Dockerfile": "Dockerfile.j2",
    ".dockerignore": "dockerignore.j2",
    "nginx.conf": "nginx.conf.j2",
    "imgforge/site.conf": "site.conf.j2",
    "imgforge/headers.conf": "headers.conf.j2",
    "imgforge-entrypoint": "entrypoint.sh.j2",
}
EXECUTABLE = {"imgforge-entrypoint"}
# Written at the top of every folder render writes, and nowhere else: a folder holding it is a
# render that may be replaced whole. It is not part of the context the engine gets (the tar
# stream and the digest hold only ``files`` and ``html/``), and the Dockerfile never copies it.
MARKER = ".imgforge-render"
MARKER_TEXT = "This folder is a build context written by `imgforge render`; rendering again replaces it whole.\n"


class RenderError(ImgforgeError):
    pass


@dataclass(frozen=True)
class Rendered:
    """A site's build context in memory: generated text files plus the content folder to copy."""

    site: Site
    base_image: str
    files: dict[str, str]
    content: Content
    content_files: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # left out of the image (listing.list_content)
    listed: dict[str, os.stat_result] = field(default_factory=dict)  # served file -> its stat at listing

    def digest(self) -> str:
        """sha256 over every path, mode and byte the context would hold, plus the base reference."""
        cache = HashCache()
        h = hashlib.sha256()
        h.update(f"base\0{self.base_image}\0".encode())
        for name in sorted(self.files):
            h.update(f"{name}\0{0o755 if name in EXECUTABLE else 0o644}\0".encode())
            h.update(hashlib.sha256(self.files[name].encode()).digest())
        for rel in self.content_files:
            h.update(f"{CONTENT_DIR}/{rel}\0".encode())
            try:
                h.update(cache.sha256(self.content.path / rel, self.listed.get(rel)))
            except OSError as e:
                raise self._unreadable(rel, e) from e
        cache.save()
        return h.hexdigest()

    def content_bytes(self, rel: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of content file ``rel``: exactly the file that was listed, or ContentMissing.

        The digest was computed from the listing; a file replaced, grown, shrunk or rewritten
        since (other inode, size or mtime) would give an image its digest does not describe.
        """
        path = self.content.path / rel
        listed = self.listed[rel]
        try:
            with open_for_reading(path) as fh:
                self._same_as_listed(rel, os.fstat(fh.fileno()), listed)
                left = listed.st_size
                while left:
                    data = fh.read(min(chunk, left))
                    if not data:
                        raise self._changed(rel)
                    left -= len(data)
                    yield data
                self._same_as_listed(rel, os.fstat(fh.fileno()), listed)
        except OSError as e:
            raise self._unreadable(rel, e) from e

    def _same_as_listed(self, rel: str, now: os.stat_result, listed: os.stat_result) -> None:
        if not stat.S_ISREG(now.st_mode) or _identity(now) != _identity(listed):
            raise self._changed(rel)

    def _changed(self, rel: str) -> ContentMissing:
        return ContentMissing(
            f"{self.site.file}: content: {shown(self.content.path / rel)} changed while "
            "the build context was made; run again once it is written"
        )

    def _unreadable(self, rel: str, e: OSError) -> ContentMissing:
        return ContentMissing(
            f"{self.site.file}: content: cannot read {shown(self.content.path / rel)}: {e.strerror or e}"
        )


def templates_dir() -> Path:
    """templates/ of a source checkout, else the copy shipped in the wheel."""
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    from importlib.resources import files

    return Path(str(files("imgforge._templates")))


# What may stand unquoted in a generated file: a site name in a comment, a header name, a FROM
# reference. Anything else reaching a template goes through the quoting filter of its language.
_BARE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
_LINE_BREAK = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
NGINX_DOLLAR = "${imgforge_dollar}"  # nginx.conf's geo block defines $imgforge_dollar as "$"


def _one_line(value: object, language: str) -> str:
    """``value`` as text, refused if it holds a line break or control character: no quoting of
    these languages can carry one without ending the instruction (Dockerfile) or the header."""
    text = str(value)
    if _LINE_BREAK.search(text):
        raise RenderError(f"a {language} value holds a line break or control character: {text[:60]!r}")
    return text


def _bare(value: object) -> str:
    """A value written without quotes; refused unless it is a plain word."""
    text = str(value)
    if not _BARE.fullmatch(text):
        raise RenderError(f"not a plain word, cannot be written unquoted: {text[:60]!r}")
    return text


def _dockerfile_quoted(value: object) -> str:
    """A Dockerfile double-quoted word (LABEL): quotes, backslashes and $ cannot break out or expand."""
    text = _one_line(value, "Dockerfile")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _shell_quoted(value: object) -> str:
    """A POSIX shell word inside a Dockerfile RUN: single-quoted (nothing expands) unless plain."""
    return shlex.quote(_one_line(value, "shell"))


def _nginx_quoted(value: object) -> str:
    """An nginx double-quoted string that reaches clients as written.

    nginx expands ``$name`` in ``add_header`` values and has no escape for ``$``; the geo block in
    nginx.conf makes ``$imgforge_dollar`` a literal "$", so each ``$`` is written as that variable.
    """
    text = _one_line(value, "nginx")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", NGINX_DOLLAR) + '"'


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """One environment per process, so each template is compiled once for all sites."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(bare=_bare, dockerfile=_dockerfile_quoted, shell=_shell_quoted, nginx=_nginx_quoted)
    return env


def headers_for(site: Site) -> list[tuple[str, str]]:
    """Security headers first, then the site's own; a site header replaces a default of that name."""
    own = {name.lower(): (name, value) for name, value in site.headers.items()}
    merged = [own.pop(n.lower(), (n, v)) for n, v in SECURITY_HEADERS.items()]
    return merged + list(own.values())


def render_templates(catalog: Catalog, site: Site) -> tuple[str, dict[str, str]]:
    """The base image and the generated text files of the site's context (golden-file tested)."""
    profile = catalog.profile(site)
    context = {
        "site": site,
        "base_image": profile.base_image,
        "nginx_version": profile.nginx_version or "*",
        "content_root": CONTENT_ROOT,
        "headers": headers_for(site),
        "hidden_extensions": HIDDEN_EXTENSIONS,
        "asset_extensions": ASSET_EXTENSIONS,
        "vendor": catalog.settings.vendor,
    }
    env = _environment()
    try:
        files = {out: env.get_template(tpl).render(context) for out, tpl in OUTPUTS.items()}
    except jinja2.TemplateError as e:
        where = f"{getattr(e, 'name', None) or 'template'}:{getattr(e, 'lineno', '?')}"
        raise RenderError(f"templates/{where}: {e}") from e
    return profile.base_image, files


def prepare(catalog: Catalog, site: Site) -> Rendered:
    """Everything a context needs, resolved and listed but not written (cheap to digest)."""
    base_image, files = render_templates(catalog, site)
    content = resolve(catalog, site)
    listed, hidden = list_content(content.path, site)
    if not listed:
        raise ContentMissing(f"{site.file}: content folder {content.path} holds no servable files")
    return Rendered(site, base_image, files, content, sorted(listed), hidden, listed)


def check_out_dir(out_dir: Path, catalog_root: Path, content: Path) -> Path:
    """The real path of a folder ``write_context`` may replace, or ``Refused`` saying why not.

    Only a folder that does not exist yet or holds the ``MARKER`` of an earlier render may be
    replaced (the contexts under imgforge's own cache are always its own). Never the content
    folder, a folder inside it or around it, the catalog root or a folder above it (``/`` too),
    marker or not: a site author controls the repo around the content and could plant one.
    """
    dest = Path(os.path.realpath(out_dir))
    content, catalog_root = Path(os.path.realpath(content)), Path(os.path.realpath(catalog_root))

    def refuse(why: str) -> NoReturn:
        raise Refused(f"will not write the build context to {shown(dest)}: {why}; choose another --out")

    if is_within(catalog_root, dest):
        refuse(f"it is the catalog root {shown(catalog_root)} or a folder above it")
    if is_within(dest, content) or is_within(content, dest):
        refuse(f"it is the content folder {shown(content)}, inside it or above it")
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return dest
    except OSError as e:
        raise _cannot_write(dest, e) from e
    if not stat.S_ISDIR(st.st_mode):
        refuse("it is a file, not a folder")
    if dest.parent != Path(os.path.realpath(cache_dir() / "contexts")) and not _is_render(dest):
        refuse(
            f"it is a folder imgforge did not render (no {MARKER} in it), and replacing it would delete what it holds"
        )
    return dest


def write_context(rendered: Rendered, out_dir: Path, catalog_root: Path) -> Path:
    """Write the context into ``out_dir`` atomically: a failure leaves no partial folder.

    ``out_dir`` must pass ``check_out_dir``. Content read errors are ``ContentMissing``; a folder
    that cannot be written is a ``UsageError`` naming it.
    """
    dest = check_out_dir(out_dir, catalog_root, rendered.content.path)
    try:
        staged = staging_dir(dest)
    except OSError as e:
        raise _cannot_write(dest, e) from e
    try:
        try:
            _write_staged(rendered, staged)
            replace_dir(staged, dest)
        except OSError as e:
            raise _cannot_write(dest, e) from e
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return dest


def _write_staged(rendered: Rendered, staged: Path) -> None:
    for name, text in rendered.files.items():
        path = staged / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755 if name in EXECUTABLE else 0o644)
    html = staged / CONTENT_DIR
    html.mkdir()
    for rel in rendered.content_files:
        dest = html / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as fh:
            fh.writelines(rendered.content_bytes(rel))
        dest.chmod(0o644)  # owned by root in the image, world-readable, writable by nobody
    (staged / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
    (staged / MARKER).chmod(0o644)
    for folder in sorted({p for p in staged.rglob("*") if p.is_dir()}):
        folder.chmod(0o755)
    staged.chmod(0o755)


def _is_render(folder: Path) -> bool:
    marker = folder / MARKER
    try:
        st = os.lstat(marker)
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_size == len(MARKER_TEXT.encode())
            and marker.read_text(encoding="utf-8") == MARKER_TEXT
        )
    except (OSError, UnicodeDecodeError):
        return False


def _cannot_write(dest: Path, e: OSError) -> UsageError:
    where = f" ({shown(e.filename)})" if e.filename and os.fspath(e.filename) != os.fspath(dest) else ""
    return UsageError(f"cannot write the build context to {shown(dest)}: {e.strerror or e}{where}")


def context_stream(rendered: Rendered, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The build context as tar bytes, produced while the engine reads them.

    Entries are normalised (root owner, fixed modes, mtime 0) exactly like ``write_context``
    writes them. Headers come from ``tarfile``; file bytes go out in 1 MiB chunks straight from
    the content folder, with no copy on disk and no second walk.
    """
    written = 0
    for piece in _tar_entries(rendered, chunk):
        written += len(piece)
        yield piece
    end = b"\0" * (2 * tarfile.BLOCKSIZE)
    yield end + b"\0" * (-(written + len(end)) % tarfile.RECORDSIZE)


def _tar_entries(rendered: Rendered, chunk: int) -> Iterator[bytes]:
    seen: set[str] = set()

    def folders(rel: str) -> Iterator[bytes]:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            name = "/".join(parts[:i])
            if name not in seen:
                seen.add(name)
                yield _tar_info(name, tarfile.DIRTYPE, 0o755, 0).tobuf(tarfile.PAX_FORMAT)

    for name in sorted(rendered.files):
        data = rendered.files[name].encode("utf-8")
        yield from folders(name)
        mode = 0o755 if name in EXECUTABLE else 0o644
        yield _tar_info(name, tarfile.REGTYPE, mode, len(data)).tobuf(tarfile.PAX_FORMAT) + data + _padding(len(data))
    for rel in rendered.content_files:
        name = f"{CONTENT_DIR}/{rel}"
        yield from folders(name)
        size = rendered.listed[rel].st_size
        yield _tar_info(name, tarfile.REGTYPE, 0o644, size).tobuf(tarfile.PAX_FORMAT)
        yield from rendered.content_bytes(rel, chunk)
        yield _padding(size)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _tar_info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, mode, size
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def default_out_dir(site: Site) -> Path:
    return cache_dir() / "contexts" / site.name


def render_site(catalog: Catalog, site: Site, out_dir: Path | None = None) -> tuple[Rendered, Path]:
    rendered = prepare(catalog, site)
    return rendered, write_context(rendered, out_dir or default_out_dir(site), catalog.root)


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
