"""The content manifest: what an image built by imgforge holds and how it must answer, inside the image.

``imgforge test`` must judge an image by what it was built from, not by what the catalog or the
content folder say today (a git ref moves, a CI runner or a laptop may not have the content at
all). So the build writes this manifest into the image at ``IMAGE_PATH`` (root-owned, 0644,
outside the web root, so nginx never serves it) and its sha256 into the ``LABEL`` label; verify
reads both back out of the image and needs nothing else.

The bytes are canonical JSON (sorted keys, no spaces, ASCII, one trailing newline), so the same
inputs always give the same bytes and the label names exactly one manifest. Read back, a manifest
is hostile input like any file of an image: every field is checked strictly (pydantic strict
mode), paths must stay inside the web root, and bytes that are not the canonical form of what
they parse to are refused (a duplicate key or extra space could otherwise make two readings).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from imgforge.config import HEADER_NAME, HEADER_VALUE, SITE_NAME
from imgforge.errors import NotFound

SCHEMA = "imgforge.content-manifest"
VERSION = 1
IMAGE_PATH = "/etc/imgforge/manifest.json"
LABEL = "io.imgforge.manifest-digest"
MAX_BYTES = 64 << 20  # about 300,000 files; a larger manifest is refused rather than read
FIX = "rebuild the image with `imgforge build SITE`"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _web_path(value: str) -> str:
    """A file path relative to the web root: no empty, ``.`` or ``..`` part, no control character."""
    parts = value.split("/")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("a path that is not UTF-8") from None
    if size > 4096 or _CONTROL.search(value) or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a path inside the web root: {value[:80]!r}")
    return value


def _web_root(value: str) -> str:
    """An absolute, normalised folder other than ``/``."""
    if not value.startswith("/") or value == "/" or _web_path(value[1:]) != value[1:]:
        raise ValueError(f"not an absolute folder: {value[:80]!r}")
    return value


def _full(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"not {what}: {value[:80]!r}")
        return value

    return AfterValidator(check)


WebPath = Annotated[str, AfterValidator(_web_path)]
_Id = Annotated[int, Field(ge=1, le=2**31 - 1)]


class ServedFile(BaseModel):
    """A file the image serves: the sha256 and size of its bytes."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    sha256: Annotated[str, _full(_SHA256, "a sha256 in lowercase hex")]
    size: Annotated[int, Field(ge=0)]


class ContentManifest(BaseModel):
    """Everything ``imgforge test`` expects of an image, as the build wrote it into the image."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    schema_id: Literal["imgforge.content-manifest"] = Field(alias="schema")
    version: Literal[1]
    site: Annotated[str, _full(SITE_NAME, "a site name")]
    content_root: Annotated[str, AfterValidator(_web_root)]
    served: dict[WebPath, ServedFile]
    left_out: tuple[WebPath, ...]
    port: Annotated[int, Field(ge=1024, le=65535)]
    fallback: Literal["spa", "404"]
    headers: tuple[
        tuple[Annotated[str, _full(HEADER_NAME, "a header name")], Annotated[str, _full(HEADER_VALUE, "a value")]],
        ...,
    ]
    uid: _Id
    gid: _Id
    ipv6: Literal["auto", "on", "off"]
    gzip: bool
    cache_assets: bool

    @classmethod
    def of(cls, data: dict[str, Any]) -> ContentManifest:
        """A manifest of the build's values (``schema``, ``version`` added), checked as strictly as one read back."""
        return cls.model_validate({"schema": SCHEMA, "version": VERSION, **data})

    def to_bytes(self) -> bytes:
        """The canonical JSON: the same manifest always gives the same bytes."""
        data = self.model_dump(mode="json", by_alias=True)
        return (json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of ``to_bytes()``: the value of the image's ``LABEL``."""
        return digest_of(self.to_bytes())

    @classmethod
    def parse(cls, data: bytes, where: str) -> ContentManifest:
        """The manifest in ``data`` (read from ``where``, for messages), or NotFound saying why not."""
        if len(data) > MAX_BYTES:
            raise NotFound(f"{where}: the content manifest is larger than {MAX_BYTES >> 20} MiB; {FIX}")
        try:
            manifest = cls.model_validate_json(data)
        except ValidationError as e:
            raise NotFound(f"{where}: {_reason(e)}") from e
        if manifest.to_bytes() != data:
            raise NotFound(f"{where}: the content manifest is not in its canonical form; {FIX}")
        return manifest


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _reason(e: ValidationError) -> str:
    """One line for the first problem; an unknown schema or version says so plainly."""
    first = e.errors(include_url=False)[0]
    loc = "".join(c if c.isprintable() else repr(c)[1:-1] for c in ".".join(map(str, first.get("loc", ()))))[:120]
    if first.get("type") == "json_invalid":
        return f"the content manifest is not valid JSON; {FIX}"
    if loc == "schema":
        return f"not an imgforge content manifest (schema {first.get('input')!r}); {FIX}"
    if loc == "version":
        return (
            f"content manifest version {first.get('input')!r}, but this imgforge reads version {VERSION}: "
            "use the imgforge that built the image, or rebuild it with this one"
        )
    return f"content manifest field {loc or '(top)'}: {first.get('msg', 'invalid')}; {FIX}"
