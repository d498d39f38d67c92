"""The image reader's errors, placed in imgforge's tree so the CLI maps them to exit codes.

Three kinds, because a caller reacts differently to each:

* :class:`ImageNotFound` (exit 4): the reference, a blob or a platform is not there. Nothing is
  wrong with what was read; something is missing.
* :class:`ImageInvalid` (exit 7, a :class:`~imgforge.errors.RegistryError`): what the source
  served does not match what it claims (digest, size, media type, JSON shape, tar stream). The
  README's exit-code table already files "digest mismatch" under 7, and a corrupt OCI layout or
  ``docker save`` archive is the same fault as a registry serving the wrong bytes.
* :class:`ImageRefused` (exit 10, a :class:`~imgforge.errors.Refused`): the content may be
  well-formed but a safety rule stops reading it: a path that climbs out of the image, a link out
  of a subtree, or a size/count cap (:class:`~imgforge.image.limits.Limits`) exceeded.
"""

from __future__ import annotations

from imgforge.errors import NotFound, Refused, RegistryError


class ImageNotFound(NotFound):
    """A reference, manifest, blob or file that the source does not hold."""


class PlatformNotFound(ImageNotFound):
    """No manifest of an index matches the wanted platform; the message lists those there are."""

    def __init__(self, where: str, wanted: str, available: list[str]):
        have = ", ".join(available) if available else "none"
        super().__init__(f"{where}: no image for platform {wanted} (available: {have})")
        self.wanted = wanted
        self.available = available


class ImageInvalid(RegistryError):
    """Served bytes that do not match their descriptor, or a manifest, config or layer that is malformed."""


class ImageUnsupported(ImageInvalid):
    """Well-formed content the reader does not handle (Docker schema 1, zstd without its library)."""


class ImageRefused(Refused):
    """A safety rule refused the content: a path escaping the image view, or a cap exceeded."""


class LimitExceeded(ImageRefused):
    """A documented cap of :class:`~imgforge.image.limits.Limits` was reached; names the cap."""

    def __init__(self, where: str, what: str, limit_name: str, limit: int):
        super().__init__(f"{where}: {what} exceeds the limit {limit_name}={limit}")
        self.limit_name = limit_name
        self.limit = limit
