"""``fleet --registry``: the images behind the fleet's containers, read from their registries.

Most of the owner's manifests say nothing about who a container runs as, so the fleet table was
full of ``?``: the image decides. Here each image is read with the image reader (config and file
tree, no engine) and audited with the image audit, so a row can say ``root (image)`` and how many
errors and warnings the image carries. Reads run ``jobs`` at a time and each image is audited
once per manifest digest, however many tags and containers name it. A registry that refuses,
does not answer or does not hold the image is a note on that row, never a failure of the report.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from imgforge.audit.image import ImageAudit, audit_image
from imgforge.audit.image_source import registry_image
from imgforge.errors import ImgforgeError
from imgforge.image import ResolvedImage


@dataclass
class ImageFacts:
    """What the registry said about one reference: its audit, or why there is none."""

    reference: str
    audit: ImageAudit | None = None
    note: str | None = None  # why the image could not be read


@dataclass
class AuditedImage:
    """One image (manifest digest) of the fleet, the references that name it, its audit summary."""

    digest: str
    user: str
    references: list[str] = field(default_factory=list)
    summary: dict[str, int] = field(default_factory=dict)


def read_images(references: Iterable[str], jobs: int) -> dict[str, ImageFacts]:
    """Every reference read and audited (``jobs`` at a time, once per digest): ``{reference: facts}``."""
    cache = _DigestCache()

    def one(ref: str) -> ImageFacts:
        try:
            with registry_image(ref) as image:
                return ImageFacts(ref, cache.audit(image, ref))
        except ImgforgeError as e:
            return ImageFacts(ref, note=f"image not read: {e}")

    unique = sorted(set(references))
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="imgforge-fleet-image") as pool:
        return dict(zip(unique, pool.map(one, unique), strict=True))


def audited_images(facts: dict[str, ImageFacts]) -> list[AuditedImage]:
    """The distinct images read, each with every reference that resolved to it."""
    by_digest: dict[str, AuditedImage] = {}
    for ref, fact in sorted(facts.items()):
        if fact.audit is None:
            continue
        entry = by_digest.setdefault(
            fact.audit.digest, AuditedImage(fact.audit.digest, fact.audit.user, summary=fact.audit.summary())
        )
        entry.references.append(ref)
    return list(by_digest.values())


class _DigestCache:
    """The first reader of a digest audits it; readers of the same digest meanwhile wait for that."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._audits: dict[str, Future[ImageAudit]] = {}

    def audit(self, image: ResolvedImage, ref: str) -> ImageAudit:
        with self._lock:
            pending = self._audits.get(image.digest)
            mine = pending is None
            if pending is None:
                pending = self._audits[image.digest] = Future()
        if not mine:
            return pending.result()
        try:
            pending.set_result(audit_image(image, ref))
        except BaseException as e:
            pending.set_exception(e)
            raise
        return pending.result()
