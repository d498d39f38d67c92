"""Read container images without running them: manifests, config and the merged file tree.

The library the image audit, the SBOM, the daemonless builder and content-from-image share::

    from imgforge.image import OciLayout, DockerEngineSource, RegistrySource, resolve, read_fs

    with DockerEngineSource("imgforge/nginx-debian:bookworm") as source:
        image = resolve(source, platform="linux/amd64")   # verified manifest + config
        fs = read_fs(image)                               # every layer streamed once, whiteouts applied
        status = fs.read_bytes("/var/lib/dpkg/status")    # a second pass reads only that layer

Sources (:class:`ImageSource`): :class:`OciLayout` (a folder; ``OciLayout.open_dir``),
:class:`DockerArchive` (a ``docker save`` tar of either format), :class:`DockerEngineSource`
(the local engine via ``docker save``) and :class:`RegistrySource` (any registry client with
``get_manifest``/``open_blob``). Caps are in :class:`Limits`. See ``docs/image.md``.
"""

from __future__ import annotations

from imgforge.errors import (
    ImageInvalid,
    ImageNotFound,
    ImageRefused,
    ImageUnsupported,
    LimitExceeded,
    PlatformNotFound,
)
from imgforge.image.apply import read_fs
from imgforge.image.config import HistoryEntry, ImageConfig
from imgforge.image.contents import ExtractResult
from imgforge.image.docker_save import DockerArchive, DockerEngineSource
from imgforge.image.fs import DataRef, Entry, EntryType, ImageFS
from imgforge.image.layout import OciLayout
from imgforge.image.limits import DEFAULT_LIMITS, Limits
from imgforge.image.model import Descriptor, Index, Manifest
from imgforge.image.platform import Platform, host_platform
from imgforge.image.resolve import ResolvedImage, resolve
from imgforge.image.source import FetchedManifest, ImageSource, RegistryClientLike, RegistrySource

__all__ = [
    "DEFAULT_LIMITS",
    "DataRef",
    "Descriptor",
    "DockerArchive",
    "DockerEngineSource",
    "Entry",
    "EntryType",
    "ExtractResult",
    "FetchedManifest",
    "HistoryEntry",
    "ImageConfig",
    "ImageFS",
    "ImageInvalid",
    "ImageNotFound",
    "ImageRefused",
    "ImageSource",
    "ImageUnsupported",
    "Index",
    "LimitExceeded",
    "Limits",
    "Manifest",
    "OciLayout",
    "Platform",
    "PlatformNotFound",
    "RegistryClientLike",
    "RegistrySource",
    "ResolvedImage",
    "host_platform",
    "read_fs",
    "resolve",
]
