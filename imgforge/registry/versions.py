"""Which tags are versions, how they order, and what the next one is.

The fleet tags images ``v`` + semver (``v0.0.5``); CI also pushes ``latest`` and ``dev-<sha8>``.
Only semver tags (with or without the ``v``) take part in ordering; everything else is ignored,
not guessed at, so a stray ``2024-01`` tag can never become "the highest version".
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import semver

PARTS = ("major", "minor", "patch")


@functools.total_ordering
@dataclass(frozen=True)
class Version:
    """A tag that parses as semver; ordered by semver precedence, then by spelling for ties."""

    tag: str
    semver: semver.Version

    @property
    def prerelease(self) -> bool:
        return self.semver.prerelease is not None

    @property
    def prefixed(self) -> bool:
        return self.tag[:1] in ("v", "V")

    def __lt__(self, other: Version) -> bool:
        if self.semver != other.semver:
            return self.semver < other.semver
        return self.tag < other.tag

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and (self.semver, self.tag) == (other.semver, other.tag)

    def __hash__(self) -> int:
        return hash(self.tag)

    @property
    def key(self) -> tuple[int, int, int, tuple[object, ...], str]:
        """A sort key with the order of ``<`` (semver precedence, then spelling). ``sorted`` computes
        it once per tag: sorting 20,000 tags with semver's own comparisons takes seconds."""
        v = self.semver
        pre: tuple[object, ...] = (1,)  # a release sorts after every pre-release of the same version
        if v.prerelease is not None:
            pre = (0, *((0, int(part), "") if part.isdigit() else (1, 0, part) for part in v.prerelease.split(".")))
        return v.major, v.minor, v.patch, pre, self.tag


def _key(version: Version) -> tuple[int, int, int, tuple[object, ...], str]:
    return version.key


def parse(tag: str) -> Version | None:
    """``v1.2.3``, ``1.2.3`` and ``v1.2.3-rc.1`` parse; ``latest``, ``dev-1a2b3c4d``, ``v1.2`` do not."""
    text = tag[1:] if tag[:1] in ("v", "V") else tag
    try:
        return Version(tag, semver.Version.parse(text))
    except (ValueError, TypeError):
        return None


def split(tags: Iterable[str]) -> tuple[list[Version], list[str]]:
    """(versions in ascending precedence, the tags that are not versions, sorted)."""
    versions, other = [], []
    for tag in tags:
        v = parse(tag)
        if v is None:
            other.append(tag)
        else:
            versions.append(v)
    return sorted(versions, key=_key), sorted(other)


def highest_release(versions: Iterable[Version]) -> Version | None:
    """The highest version that is not a pre-release (pre-releases never become the base of a bump)."""
    releases = [v for v in versions if not v.prerelease]
    return max(releases, key=_key) if releases else None


def bump(base: Version | None, part: str, prefix: str = "v") -> str:
    """The tag after ``base`` for ``part`` (major/minor/patch), in ``prefix`` + semver form.

    A pre-release base is completed rather than skipped: ``v1.3.0-rc.1`` --patch is ``v1.3.0``.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    current = base.semver if base is not None else semver.Version(0, 0, 0)
    return f"{prefix}{current.next_version(part)}"


def find_same(versions: Iterable[Version], wanted: Version) -> Version | None:
    """A registry tag that is the same version as ``wanted`` (``1.2.3`` and ``v1.2.3`` collide)."""
    for v in versions:
        if v.semver == wanted.semver and (v.semver.build == wanted.semver.build):
            return v
    return None
