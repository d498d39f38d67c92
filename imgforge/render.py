"""Turn a catalog site into a complete Docker build context.

Templates are data: the same site settings, templates and content always give byte-identical
files (no timestamps, sorted walks, normalised modes), so the inputs digest that build uses to
skip unchanged images is computed from exactly what would be written.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import shlex
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import jinja2

from imgforge._fs import replace_dir, staging_dir
from imgforge.config import Catalog, Site
from imgforge.content import Content, cache_dir, resolve
from imgforge.errors import ContentMissing, ImgforgeError
from imgforge.hashcache import HashCache

CONTENT_ROOT = "/usr/share/nginx/html"
CONTENT_DIR = "html"  # where the content sits inside the build context

# Never served, whatever the site holds (nginx here runs no PHP: it would hand out the source).
HIDDEN_EXTENSIONS = (
    "php", "php[0-9]", "phtml", "phar", "inc", "asp", "aspx", "jsp", "cgi", "pl", "py", "rb", "sh",
    "env", "ini", "log", "sql", "sqlite", "db", "bak", "old", "orig", "swp", "psd", "key", "pem",
    "crt", "p12", "pfx", "htpasswd",
)
# Served with a one-year immutable Cache-Control.
ASSET_EXTENSIONS = (
    "css", "js", "mjs", "png", "jpe?g", "gif", "svg", "ico", "webp", "avif", "woff2?", "ttf", "otf",
    "eot", "mp4", "webm",
)
_HIDDEN = re.compile(r"\.(?:%s)$" % "|".join(HIDDEN_EXTENSIONS), re.IGNORECASE)


def is_hidden(rel: str) -> bool:
    """A content path that is never served and never copied into the image.

    Dotfiles and dot-folders (.git/, .env, .htaccess) and server-side source or secrets (.php
    mailers with SMTP passwords, keys, .psd originals): leaving them out of the image keeps their
    bytes away from anyone who pulls it; nginx's deny rules are the second line.
    """
    parts = rel.split("/")
    return any(p.startswith(".") for p in parts) or bool(_HIDDEN.search(parts[-1]))


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
    left_out: list[str] = field(default_factory=list)  # hidden files of the content folder (is_hidden)

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
            h.update(cache.sha256(self.content.path / rel))
        cache.save()
        return h.hexdigest()


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
    served: list[str] = []
    hidden: list[str] = []
    for rel in _list_content(content.path, site):
        (hidden if is_hidden(rel) else served).append(rel)
    if not served:
        raise ContentMissing(f"{site.file}: content folder {content.path} holds no servable files")
    return Rendered(site, base_image, files, content, served, hidden)


def write_context(rendered: Rendered, out_dir: Path) -> Path:
    """Write the context into ``out_dir`` atomically: a failure leaves no partial folder."""
    out_dir = Path(out_dir).resolve()
    staged = staging_dir(out_dir)
    try:
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
            shutil.copyfile(rendered.content.path / rel, dest)
            dest.chmod(0o644)  # owned by root in the image, world-readable, writable by nobody
        for folder in sorted({p for p in staged.rglob("*") if p.is_dir()}):
            folder.chmod(0o755)
        staged.chmod(0o755)
        replace_dir(staged, out_dir)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return out_dir


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
        with open(rendered.content.path / rel, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            yield _tar_info(name, tarfile.REGTYPE, 0o644, size).tobuf(tarfile.PAX_FORMAT)
            sent = 0
            while sent < size:
                data = fh.read(min(chunk, size - sent))
                if not data:
                    raise ContentMissing(f"{rendered.site.file}: content file {rel} shrank while it was read")
                sent += len(data)
                yield data
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
    return rendered, write_context(rendered, out_dir or default_out_dir(site))


def _list_content(root: Path, site: Site) -> list[str]:
    """Every regular file under the content folder, sorted (the caller drops hidden ones).

    Symlinks are followed only when they stay inside the content folder: a link to a host file
    must never copy that file into an image.
    """
    files: list[str] = []
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(dirnames)
        for d in list(dirnames):
            if (Path(dirpath) / d).is_symlink():
                _check_inside(Path(dirpath) / d, real_root, site)
                raise ContentMissing(f"{site.file}: content: symlinked folder {Path(dirpath, d)} is not supported")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink():
                _check_inside(path, real_root, site)
            if path.is_file():
                files.append(path.relative_to(root).as_posix())
    if not files:
        raise ContentMissing(f"{site.file}: content folder {root} holds no files")
    return sorted(files)


def _check_inside(path: Path, real_root: Path, site: Site) -> None:
    target = path.resolve()
    if real_root != target and real_root not in target.parents:
        raise ContentMissing(f"{site.file}: content: {path} links outside the content folder ({target})")
