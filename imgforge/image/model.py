"""Typed descriptors, indexes and manifests, parsed strictly from the bytes a source served.

Parsing is pydantic in strict mode straight from JSON: a ``size`` of ``"12"``, a digest that is
not sha256/sha512 hex, or a missing ``layers`` is an :class:`~imgforge.errors.ImageInvalid`
naming the field, never a silent coercion. Unknown fields are ignored, as the OCI spec requires.
Whether a document is an index or a manifest is decided by its media type: the one the source
reported (registry Content-Type, or the descriptor that pointed at it) and the ``mediaType``
field inside must agree when both are present.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Hashable
from typing import Annotated, Any, TypeVar, cast

from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from imgforge.errors import ImageInvalid, ImageUnsupported
from imgforge.image import mediatypes as mt
from imgforge.image.digest import DIGEST_PATTERN
from imgforge.image.platform import Platform

_STRICT = ConfigDict(strict=True, populate_by_name=True, extra="ignore")
Digest = Annotated[str, StringConstraints(pattern=DIGEST_PATTERN)]
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, config=_STRICT)
class Descriptor:
    """A pointer to content: what it is, its digest, its exact size (OCI image-spec descriptor.md)."""

    media_type: str = Field(validation_alias="mediaType")
    digest: Digest
    size: int = Field(ge=0)
    platform: Platform | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    urls: tuple[str, ...] = ()
    artifact_type: str = Field(default="", validation_alias="artifactType")


@dataclass(frozen=True, kw_only=True, config=_STRICT)
class Index:
    """An OCI image index or a Docker manifest list: one manifest per platform."""

    schema_version: int = Field(validation_alias="schemaVersion")
    media_type: str = Field(default="", validation_alias="mediaType")
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, config=_STRICT)
class Manifest:
    """An OCI image manifest or a Docker schema 2 manifest: a config and its ordered layers."""

    schema_version: int = Field(validation_alias="schemaVersion")
    media_type: str = Field(default="", validation_alias="mediaType")
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = Field(default_factory=dict)
    artifact_type: str = Field(default="", validation_alias="artifactType")


def validate_json(kind: type[T], data: bytes, where: str) -> T:
    """Parse ``data`` as ``kind`` strictly, or raise ImageInvalid naming the first bad field."""
    try:
        result: T = _adapter(cast(Hashable, kind)).validate_json(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise ImageInvalid(f"{where}: {field}: {first['msg']}") from e
    return result


@functools.cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def media_type_of(data: bytes, reported: str | None, where: str) -> str:
    """The document's media type: the reported one and the ``mediaType`` field must agree."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ImageInvalid(f"{where}: not JSON ({e})") from e
    if not isinstance(doc, dict):
        raise ImageInvalid(f"{where}: not a JSON object")
    inner = doc.get("mediaType")
    if inner is not None and not isinstance(inner, str):
        raise ImageInvalid(f"{where}: mediaType: expected a string")
    reported = (reported or "").split(";", 1)[0].strip() or None
    if inner and reported and inner != reported:
        raise ImageInvalid(f"{where}: served as {reported} but its mediaType says {inner}")
    found = inner or reported
    if found is None:  # OCI lets mediaType be omitted; only index.json in a layout relies on it
        found = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
    if found in mt.DOCKER_SCHEMA1:
        raise ImageUnsupported(f"{where}: Docker schema 1 manifests are not supported (re-push the image)")
    if found not in mt.INDEX_TYPES and found not in mt.MANIFEST_TYPES:
        raise ImageInvalid(f"{where}: media type {found} is not an image index or manifest")
    return found


def parse_manifest_document(data: bytes, reported: str | None, where: str) -> Index | Manifest:
    """An :class:`Index` or :class:`Manifest` from a document's bytes (digest already verified)."""
    kind = media_type_of(data, reported, where)
    if kind in mt.INDEX_TYPES:
        index = validate_json(Index, data, where)
        _schema2(index.schema_version, where)
        return Index(
            schema_version=index.schema_version,
            media_type=kind,
            manifests=index.manifests,
            annotations=index.annotations,
        )
    manifest = validate_json(Manifest, data, where)
    _schema2(manifest.schema_version, where)
    if manifest.config.media_type not in mt.CONFIG_TYPES:
        raise ImageInvalid(
            f"{where}: not a container image (config media type {manifest.config.media_type}; an OCI artifact?)"
        )
    for i, layer in enumerate(manifest.layers):
        if layer.media_type not in mt.LAYER_TYPES:
            raise ImageInvalid(f"{where}: layers.{i}: media type {layer.media_type} is not an image layer")
    return Manifest(
        schema_version=manifest.schema_version,
        media_type=kind,
        config=manifest.config,
        layers=manifest.layers,
        annotations=manifest.annotations,
        artifact_type=manifest.artifact_type,
    )


def _schema2(version: int, where: str) -> None:
    if version != 2:
        raise ImageInvalid(f"{where}: schemaVersion {version}: only 2 is supported")
