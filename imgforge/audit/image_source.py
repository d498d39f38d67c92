"""Which image ``imgforge audit --image REF`` means, opened with the right :mod:`imgforge.image` source.

``REF`` is a registry reference (``cr.example.com/team/site:v1``, ``nginx``, ``…@sha256:…``) read
straight from the registry with the registry client and its usual credentials, no engine
involved; or, with a prefix, an image that no registry holds:

* ``docker:REF`` — an image of the local Docker engine (``docker save``);
* ``oci:PATH`` or ``oci:PATH:NAME`` — an OCI image layout folder (skopeo's ``oci:`` syntax);
* ``docker-archive:PATH`` — a ``docker save`` tar on disk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from imgforge.errors import UsageError
from imgforge.image import (
    DEFAULT_LIMITS,
    DockerArchive,
    DockerEngineSource,
    ImageNotFound,
    Limits,
    OciLayout,
    RegistrySource,
    ResolvedImage,
    resolve,
)
from imgforge.image_ref import ImageRef

PREFIXES = ("docker:", "oci:", "docker-archive:")


@contextlib.contextmanager
def open_image(ref: str, *, platform: str | None = None, limits: Limits = DEFAULT_LIMITS) -> Iterator[ResolvedImage]:
    """The image ``ref`` names, resolved for ``platform``; its source stays open inside the block."""
    kind, _, rest = ref.partition(":")
    if f"{kind}:" not in PREFIXES:
        with registry_image(ref, platform=platform, limits=limits) as image:
            yield image
        return
    if not rest:
        raise UsageError(f"--image {ref}: nothing after {kind}:")
    if kind == "docker":
        with DockerEngineSource(rest, limits=limits) as engine:
            yield resolve(engine, platform=platform, limits=limits)
    elif kind == "docker-archive":
        with DockerArchive(Path(rest), limits=limits) as archive:
            yield resolve(archive, platform=platform, limits=limits)
    else:
        path, name = _layout_path(rest)
        yield resolve(OciLayout.open_dir(path, limits), name, platform=platform, limits=limits)


@contextlib.contextmanager
def registry_image(
    ref: str, *, platform: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> Iterator[ResolvedImage]:
    """``ref`` read from its registry (credentials as for every registry command)."""
    from imgforge.registry import ManifestNotFound, RegistryClient

    parsed = ImageRef.parse(ref)
    if not parsed.name or parsed.name.startswith(("/", ".")) or " " in parsed.name:
        raise UsageError(f"--image {ref!r}: not an image reference (registry/path[:tag][@digest])")
    with RegistryClient(parsed.registry) as client:
        source = RegistrySource(client, parsed.path, parsed.digest or parsed.tag or "latest")
        try:
            image = resolve(source, platform=platform, limits=limits)
        except ManifestNotFound as e:  # no such tag or digest: "not found", as for the other sources
            raise ImageNotFound(str(e)) from e
        yield image


def _layout_path(text: str) -> tuple[Path, str | None]:
    """``PATH`` or ``PATH:NAME``: the whole text when it is a folder, else split at the last colon."""
    if Path(text).is_dir() or ":" not in text:
        return Path(text), None
    path, _, name = text.rpartition(":")
    return Path(path), name or None
