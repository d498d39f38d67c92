"""Platforms (os/architecture/variant) and picking one manifest out of an index.

Matching follows what ``docker pull --platform`` and containerd do, so an operator's
``--platform linux/arm64`` means the same here: architecture aliases are normalised (x86_64 →
amd64, aarch64 → arm64), ``arm64`` without a variant is ``arm64/v8``, ``arm`` without one is
``arm/v7``. A wanted platform with a variant matches only that variant; one without prefers the
architecture's default variant and otherwise takes the first of its architecture.
"""

from __future__ import annotations

import platform as _host
from collections.abc import Sequence
from typing import TypeVar

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from imgforge.errors import UsageError

_STRICT = ConfigDict(strict=True, populate_by_name=True, extra="ignore")
T = TypeVar("T")

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": ""}


@dataclass(frozen=True, kw_only=True, config=_STRICT)
class Platform:
    """The ``platform`` object of an OCI descriptor (also built from an image config)."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = Field(default="", validation_alias="os.version")
    os_features: tuple[str, ...] = Field(default=(), validation_alias="os.features")

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm64``, ``linux/arm/v7``: the form of ``docker --platform``."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"platform {text!r}: expected os/architecture[/variant], e.g. linux/amd64")
        return cls(
            os=parts[0].lower(), architecture=parts[1].lower(), variant=parts[2].lower() if len(parts) == 3 else ""
        )

    def normalized(self) -> Platform:
        arch = _ARCH_ALIASES.get(self.architecture, self.architecture)
        variant = self.variant
        if self.architecture == "armel" and not variant:
            variant = "v6"
        if arch == "arm" and not variant:
            variant = "v7"
        if arch == "arm64" and variant in ("", "8"):
            variant = "v8"
        if arch == "amd64" and variant == "v1":
            variant = ""
        return Platform(
            os=self.os, architecture=arch, variant=variant, os_version=self.os_version, os_features=self.os_features
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    """linux/<the host's architecture>: images are Linux images even on another host OS."""
    return Platform(os="linux", architecture=_host.machine().lower() or "amd64").normalized()


def matches(wanted: Platform, have: Platform, *, exact_variant: bool) -> bool:
    w, h = wanted.normalized(), have.normalized()
    if (w.os, w.architecture) != (h.os, h.architecture):
        return False
    return h.variant == w.variant if exact_variant else True


def pick(candidates: Sequence[tuple[Platform, T]], wanted: Platform) -> T | None:
    """The candidate for ``wanted``, or None when nothing matches."""
    explicit = bool(wanted.variant)
    found = [(p, item) for p, item in candidates if matches(wanted, p, exact_variant=explicit)]
    if not found:
        return None
    default = _DEFAULT_VARIANT.get(wanted.normalized().architecture)
    for p, item in found:
        if default is not None and p.normalized().variant == default:
            return item
    return found[0][1]
