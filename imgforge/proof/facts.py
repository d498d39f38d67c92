"""What an image in a registry actually holds, read from its own bytes: the SBOM's source of truth.

Signing and verifying both need the same facts about a pushed digest, read without a Docker
engine (:mod:`imgforge.image` streams and verifies every layer): the OS packages its package
database records (dpkg ``status`` or apk ``installed``, with the distribution from os-release)
and every regular file under the web root its imgforge content manifest names, with sha256 and
sha1. An image without a content manifest (not built by imgforge) has no content files; one
without a package database has no packages. Nothing is guessed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imgforge.content_manifest import IMAGE_PATH, ContentManifest
from imgforge.errors import FormatError, NotFound
from imgforge.image import ImageFS, RegistrySource, read_fs, resolve
from imgforge.signing import ospkg
from imgforge.signing.sbom import ContentFile

if TYPE_CHECKING:
    from imgforge.registry import RegistryClient

_DATABASES = ("/" + ospkg.DPKG_STATUS_PATH, "/" + ospkg.APK_INSTALLED_PATH, IMAGE_PATH)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageFacts:
    digest: str  # the manifest (or index) digest the facts belong to
    packages: list[ospkg.OsPackage] = field(default_factory=list)
    files: list[ContentFile] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    content_root: str | None = None


def read_facts(client: RegistryClient, name: str, digest: str) -> ImageFacts:
    """The facts of ``name@digest`` in the registry ``client`` talks to."""
    image = resolve(RegistrySource(client, name, digest))
    fs = read_fs(image, prefetch=lambda e: e.path in _DATABASES)
    packages = _packages(fs)
    content_root = _content_root(fs)
    files = _content_files(fs, content_root) if content_root else []
    return ImageFacts(digest, packages, files, dict(image.config.labels), content_root)


def _packages(fs: ImageFS) -> list[ospkg.OsPackage]:
    found = fs.read_files(["/" + ospkg.DPKG_STATUS_PATH, "/" + ospkg.APK_INSTALLED_PATH])
    if not found:
        return []
    release = fs.read_files(["/" + p for p in ospkg.OS_RELEASE_PATHS])
    text = next(iter(release.values()), b"").decode("utf-8", "replace")
    dpkg = found.get("/" + ospkg.DPKG_STATUS_PATH)
    try:
        namespace, distro = ospkg.distro_of(ospkg.os_release(text))
    except FormatError:
        namespace, distro = ("debian" if dpkg is not None else "alpine"), None
    if dpkg is not None:
        return ospkg.dpkg_packages(dpkg.decode("utf-8", "replace"), namespace, distro)
    return ospkg.apk_packages(found["/" + ospkg.APK_INSTALLED_PATH].decode("utf-8", "replace"), namespace, distro)


def _content_root(fs: ImageFS) -> str | None:
    data = fs.read_files([IMAGE_PATH]).get(IMAGE_PATH)
    if data is None:
        return None
    try:
        return ContentManifest.parse(data, f"{fs.image.describe()}: {IMAGE_PATH}").content_root
    except NotFound:
        return None  # a broken manifest names no trustworthy web root: no content files are claimed


def _content_files(fs: ImageFS, root: str) -> list[ContentFile]:
    """Every regular file under ``root``, hashed as it streams (layers verified at the end)."""
    prefix = root.rstrip("/") + "/"
    out = []
    for path, _entry, stream in fs.open_files(lambda e: e.path.startswith(prefix)):
        sha256, sha1 = hashlib.sha256(), hashlib.sha1(usedforsecurity=False)
        while chunk := stream.read(_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
        out.append(ContentFile(path.lstrip("/"), sha256.hexdigest(), sha1.hexdigest()))
    return sorted(out)
