"""Every cap the image reader enforces, in one frozen value callers can tighten or loosen.

An image is hostile input: a registry or a layer can declare a manifest of a gigabyte, a file of
a terabyte, a gzip stream that inflates a thousandfold, or millions of tar entries. Each of those
is refused at the first byte past its cap with :class:`~imgforge.errors.LimitExceeded`
naming the field below, instead of exhausting memory or disk. The defaults fit any real site or
base image (a Debian with nginx is ~7,000 entries and ~140 MiB unpacked) with a wide margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgforge.errors import LimitExceeded

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Limits:
    # A manifest or index: the distribution spec lets registries refuse manifests over 4 MiB.
    max_manifest_bytes: int = 4 * MiB
    # The image config JSON (env, labels and history live here; real ones are a few KiB).
    max_config_bytes: int = 8 * MiB
    # Index inside index (OCI allows nesting); deeper than this is refused rather than followed.
    max_index_depth: int = 4
    # Layers of one image (Docker's own engines stop near 127).
    max_layers: int = 256
    # One layer blob as stored (compressed), checked against its descriptor before reading.
    max_layer_bytes: int = 8 * GiB
    # Tar bytes after decompression, summed over the layers of one pass (catches gzip bombs).
    max_unpacked_bytes: int = 16 * GiB
    # Tar members, summed over the layers of one pass; the view keeps metadata of each in memory.
    max_entries: int = 500_000
    # PAX / GNU long-name headers of one member (tarfile would read them into memory whole).
    max_header_bytes: int = 1 * MiB
    # One path inside the image, in bytes after UTF-8 encoding (Linux PATH_MAX).
    max_path_bytes: int = 4096
    # Symlinks followed while resolving one path inside the image view (Linux uses 40).
    max_symlink_hops: int = 40
    # Bytes ImageFS.read_files may hold in memory for one call.
    max_read_bytes: int = 256 * MiB
    # Bytes ImageFS.extract may write to disk for one call.
    max_extract_bytes: int = 8 * GiB
    # A `docker save` archive spooled to a temporary file before it is read.
    max_archive_bytes: int = 32 * GiB


DEFAULT_LIMITS = Limits()


def declared_size(where: str, descriptor: Any, limit_name: str, limits: Limits = DEFAULT_LIMITS) -> int:
    """The ``size`` a manifest declares for a blob, refused before any download when it passes
    ``limit_name`` (``max_config_bytes``, ``max_layer_bytes``): the registry client alone would
    read up to its own 8 GiB. ``where`` names the image; the message names the blob."""
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    size = descriptor.get("size") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        # TypeError, as the callers' own lookups into a malformed manifest raise: each caller
        # reports a malformed manifest in its one way
        raise TypeError(f"a blob descriptor without a digest and a size ({str(descriptor)[:80]!r})")
    limit = getattr(limits, limit_name)
    if size > limit:
        raise LimitExceeded(f"{where}: blob {digest}", f"declared size {size}", limit_name, limit)
    return size


def layer_count(where: str, layers: Any, limits: Limits = DEFAULT_LIMITS) -> list[Any]:
    """The manifest's layers, refused when there are more than ``max_layers``."""
    if not isinstance(layers, list):
        raise TypeError(f"layers is not a list ({str(layers)[:80]!r})")
    if len(layers) > limits.max_layers:
        raise LimitExceeded(where, f"{len(layers)} layers", "max_layers", limits.max_layers)
    return layers
