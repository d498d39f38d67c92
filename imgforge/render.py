"""Turn a catalog site into a complete Docker build context (``Context``, in build_context.py).

Templates are data: the same site settings, templates and content always give byte-identical
files (no timestamps, sorted walks, normalised modes), so the inputs digest that build uses to
skip unchanged images is computed from exactly what would be written. This module decides what
the templates are given; ``templating`` fills them in with each language's quoting, ``listing``
decides which content files are served, and ``build_context.Context`` owns the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imgforge._resources import templates_dir
from imgforge.build_context import CONTENT_DIR, EXECUTABLE, MANIFEST_FILE, MARKER, MARKER_TEXT, Context, check_out_dir
from imgforge.config import Catalog, Site
from imgforge.content import cache_dir, resolve
from imgforge.content_manifest import IMAGE_PATH as MANIFEST_PATH
from imgforge.errors import ContentMissing, RenderError
from imgforge.hashcache import HashCache
from imgforge.listing import HIDDEN_EXTENSIONS, is_hidden, list_content
from imgforge.templating import render_all

# Re-exported: render is the face of the build context for build, verify, the CLI and the tests.
__all__ = [
    "ASSET_EXTENSIONS",
    "CONTENT_DIR",
    "CONTENT_ROOT",
    "EXECUTABLE",
    "HIDDEN_EXTENSIONS",
    "MANIFEST_FILE",
    "MANIFEST_PATH",
    "MARKER",
    "MARKER_TEXT",
    "OUTPUTS",
    "SECURITY_HEADERS",
    "Context",
    "RenderError",
    "check_out_dir",
    "context_stream",
    "default_out_dir",
    "headers_for",
    "is_hidden",
    "prepare",
    "render_site",
    "render_templates",
    "templates_dir",
]

CONTENT_ROOT = "/usr/share/nginx/html"
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
# Rendered file -> template (the entrypoint is the only executable: build_context.EXECUTABLE).
OUTPUTS = {
    "Dockerfile": "Dockerfile.j2",
    ".dockerignore": "dockerignore.j2",
    "nginx.conf": "nginx.conf.j2",
    "imgforge/site.conf": "site.conf.j2",
    "imgforge/headers.conf": "headers.conf.j2",
    "imgforge-entrypoint": "entrypoint.sh.j2",
}


def headers_for(site: Site) -> list[tuple[str, str]]:
    """Security headers first, then the site's own; a site header replaces a default of that name."""
    own = {name.lower(): (name, value) for name, value in site.headers.items()}
    merged = [own.pop(n.lower(), (n, v)) for n, v in SECURITY_HEADERS.items()]
    return merged + list(own.values())


def render_templates(catalog: Catalog, site: Site) -> tuple[str, dict[str, str]]:
    """The base image and the generated text files of the site's context (golden-file tested)."""
    profile = catalog.profile(site)
    values = {
        "site": site,
        "base_image": profile.base_image,
        "nginx_version": profile.nginx_version or "*",
        "content_root": CONTENT_ROOT,
        "manifest_file": MANIFEST_FILE,
        "manifest_path": MANIFEST_PATH,
        "headers": headers_for(site),
        "hidden_extensions": HIDDEN_EXTENSIONS,
        "asset_extensions": ASSET_EXTENSIONS,
        "vendor": catalog.settings.vendor,
    }
    return profile.base_image, render_all(OUTPUTS, values)


def prepare(catalog: Catalog, site: Site, cache: HashCache | None = None) -> Context:
    """Everything a context needs, resolved and listed but not read (cheap to digest with a warm cache).

    ``cache`` remembers content hashes across runs; without one every served file is hashed.
    The caller that opened it saves it.
    """
    base_image, files = render_templates(catalog, site)
    if site.source is not None and site.source.image is not None:
        from imgforge.content_image import resolve_image  # the registry client, only for image sources

        content = resolve_image(catalog, site)
    else:
        content = resolve(catalog, site)
    listed, left_out = list_content(content.path, site)
    if not listed:
        raise ContentMissing(f"{site.file}: content folder {content.path} holds no servable files")
    return Context(
        site=site,
        base_image=base_image,
        files=files,
        content=content,
        listed=listed,
        left_out=left_out,
        content_root=CONTENT_ROOT,
        headers=tuple(headers_for(site)),
        cache=cache or HashCache(None),
    )


def default_out_dir(site: Site) -> Path:
    return cache_dir() / "contexts" / site.name


def render_site(
    catalog: Catalog, site: Site, out_dir: Path | None = None, cache: HashCache | None = None
) -> tuple[Context, Path]:
    """Prepare the site's context and write it to ``out_dir`` (default: under the cache folder)."""
    context = prepare(catalog, site, cache)
    return context, context.write(out_dir or default_out_dir(site), catalog.root)


def context_stream(context: Context, chunk: int = 1 << 20) -> Iterator[bytes]:
    """``context.tar_stream(chunk)``: the tar bytes the engine gets."""
    return context.tar_stream(chunk)
