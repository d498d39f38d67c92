"""From a reference to one verified image: index → platform → manifest → config.

Every document is verified before it is parsed: a child manifest and the config against the
digest and size of the descriptor that named them, the top document against the reference when
that is a digest and against the digest the source claims for it. Index entries without a
``platform`` (an OCI layout written by skopeo, ``docker save`` of Docker ≥ 25) get theirs from
their config, as containerd does. Attestation manifests (BuildKit's ``unknown/unknown``) are never
candidates. When nothing matches, the error lists the platforms that are there.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from imgforge.errors import ImageInvalid, LimitExceeded, PlatformNotFound
from imgforge.image import mediatypes as mt
from imgforge.image.config import ImageConfig, parse_config
from imgforge.image.digest import check_digest, digest_of, is_digest, read_capped, verify_bytes
from imgforge.image.limits import DEFAULT_LIMITS, Limits
from imgforge.image.model import Descriptor, Index, Manifest, parse_manifest_document
from imgforge.image.platform import Platform, host_platform, matches, pick
from imgforge.image.source import ImageSource


@dataclass(frozen=True)
class ResolvedImage:
    """One image of one platform, every document verified; the input of :func:`read_fs`."""

    source: ImageSource = field(repr=False)
    reference: str | None
    digest: str  # the manifest's digest: what a registry pins (`repo@digest`)
    manifest: Manifest
    config: ImageConfig
    config_digest: str  # the image ID Docker shows
    platform: Platform
    index_digest: str | None = None  # the index the manifest was picked from, if any
    available_platforms: tuple[Platform, ...] = ()
    limits: Limits = field(default=DEFAULT_LIMITS, repr=False)

    def describe(self) -> str:
        return f"{self.source.describe()} ({self.digest[:19]})"


def resolve(
    source: ImageSource,
    reference: str | None = None,
    *,
    platform: str | Platform | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ResolvedImage:
    """Resolve ``reference`` in ``source`` to a verified manifest and config for one platform.

    ``platform``: ``"linux/arm64"`` style or a :class:`Platform`; None picks the host's from an
    index and accepts a single-platform image (or an index of one image) whatever its platform. An
    explicit platform that a single-platform image does not have is refused like a missing index
    entry.
    """
    walk = _Walk(source, limits)
    where = source.describe()
    fetched = source.get_manifest(reference, mt.ACCEPT, limits.max_manifest_bytes)
    if len(fetched.data) > limits.max_manifest_bytes:
        raise LimitExceeded(
            f"{where}: manifest {reference}", "document size", "max_manifest_bytes", limits.max_manifest_bytes
        )
    digest = _verify_top(fetched.data, reference, fetched.digest, where)
    doc = parse_manifest_document(fetched.data, fetched.media_type, f"{where}: manifest {digest}")
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    if isinstance(doc, Manifest):
        config, config_digest = walk.config(doc, digest)
        if wanted is not None and not matches(wanted, config.platform, exact_variant=bool(wanted.variant)):
            raise PlatformNotFound(where, str(wanted), [str(config.platform)])
        return ResolvedImage(
            source,
            reference,
            digest,
            doc,
            config,
            config_digest,
            config.platform,
            available_platforms=(config.platform,),
            limits=limits,
        )
    candidates = walk.candidates(doc, digest, depth=1)
    target = wanted or host_platform()
    # Unasked, the only image of an index is taken whatever its platform, as a lone manifest is
    # (an OCI layout's index.json often wraps a single image without a platform).
    chosen = candidates[0][1] if wanted is None and len(candidates) == 1 else pick(candidates, target)
    available = tuple(p for p, _ in candidates)
    if chosen is None:
        raise PlatformNotFound(where, str(target), sorted({str(p) for p in available}))
    manifest = walk.manifest(chosen)
    config, config_digest = walk.config(manifest, chosen.digest)
    if chosen.platform is not None and not matches(chosen.platform, config.platform, exact_variant=False):
        raise ImageInvalid(
            f"{where}: manifest {chosen.digest}: index says {chosen.platform} but its config says {config.platform}"
        )
    return ResolvedImage(
        source,
        reference,
        chosen.digest,
        manifest,
        config,
        config_digest,
        chosen.platform or config.platform,
        index_digest=digest,
        available_platforms=available,
        limits=limits,
    )


def _verify_top(data: bytes, reference: str | None, claimed: str | None, where: str) -> str:
    if reference is not None and is_digest(reference):
        verify_bytes(data, reference, f"{where}: manifest {reference}")
    if claimed is not None:
        verify_bytes(data, check_digest(claimed, f"{where}: served digest"), f"{where}: manifest {reference}")
    if reference is not None and is_digest(reference):
        return reference
    return claimed or digest_of(data)


class _Walk:
    """Fetches and verifies child documents of one resolution, each at most once."""

    def __init__(self, source: ImageSource, limits: Limits):
        self.source = source
        self.limits = limits
        self.where = source.describe()
        self._docs: dict[str, Index | Manifest] = {}
        self._configs: dict[str, tuple[ImageConfig, str]] = {}

    def document(self, desc: Descriptor) -> Index | Manifest:
        if desc.digest in self._docs:
            return self._docs[desc.digest]
        where = f"{self.where}: manifest {desc.digest}"
        if desc.size > self.limits.max_manifest_bytes:
            raise LimitExceeded(
                where, f"declared size {desc.size}", "max_manifest_bytes", self.limits.max_manifest_bytes
            )
        fetched = self.source.get_manifest(desc.digest, [desc.media_type], self.limits.max_manifest_bytes)
        verify_bytes(fetched.data, desc.digest, where, size=desc.size)
        if fetched.media_type and fetched.media_type.split(";")[0].strip() != desc.media_type:
            raise ImageInvalid(f"{where}: served as {fetched.media_type}, the index says {desc.media_type}")
        doc = parse_manifest_document(fetched.data, desc.media_type, where)
        self._docs[desc.digest] = doc
        return doc

    def manifest(self, desc: Descriptor) -> Manifest:
        doc = self.document(desc)
        if not isinstance(doc, Manifest):
            raise ImageInvalid(f"{self.where}: {desc.digest} is an index where a manifest was expected")
        return doc

    def config(self, manifest: Manifest, manifest_digest: str) -> tuple[ImageConfig, str]:
        desc = manifest.config
        if desc.digest in self._configs:
            return self._configs[desc.digest]
        where = f"{self.where}: config {desc.digest} of manifest {manifest_digest}"
        if desc.size > self.limits.max_config_bytes:
            raise LimitExceeded(where, f"declared size {desc.size}", "max_config_bytes", self.limits.max_config_bytes)
        if len(manifest.layers) > self.limits.max_layers:
            raise LimitExceeded(
                f"{self.where}: manifest {manifest_digest}",
                f"{len(manifest.layers)} layers",
                "max_layers",
                self.limits.max_layers,
            )
        with contextlib.closing(self.source.open_blob(desc.digest)) as stream:
            data = read_capped(stream, self.limits.max_config_bytes, where, "max_config_bytes")
        verify_bytes(data, desc.digest, where, size=desc.size)
        config = parse_config(data, where)
        if len(config.diff_ids) != len(manifest.layers):
            raise ImageInvalid(
                f"{where}: rootfs.diff_ids has {len(config.diff_ids)} entries for {len(manifest.layers)} layers"
            )
        self._configs[desc.digest] = (config, desc.digest)
        return config, desc.digest

    def candidates(self, index: Index, index_digest: str, depth: int) -> list[tuple[Platform, Descriptor]]:
        """Every runnable manifest under ``index`` with its platform, nested indexes flattened."""
        if depth > self.limits.max_index_depth:
            raise LimitExceeded(
                f"{self.where}: index {index_digest}",
                f"nesting depth {depth}",
                "max_index_depth",
                self.limits.max_index_depth,
            )
        found: list[tuple[Platform, Descriptor]] = []
        for desc in index.manifests:
            if desc.media_type in mt.INDEX_TYPES:
                child = self.document(desc)
                if isinstance(child, Index):
                    found += self.candidates(child, desc.digest, depth + 1)
                continue
            if desc.media_type not in mt.MANIFEST_TYPES or _is_attestation(desc):
                continue  # artifacts and attestations beside the images: not runnable
            platform = desc.platform
            if platform is None:
                platform = self.config(self.manifest(desc), desc.digest)[0].platform
            found.append((platform, desc))
        return found


def _is_attestation(desc: Descriptor) -> bool:
    if mt.ATTESTATION_ANNOTATION in desc.annotations:
        return True
    return desc.platform is not None and (desc.platform.os, desc.platform.architecture) == ("unknown", "unknown")
