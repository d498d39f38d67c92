"""The image config: what the image runs as and how (User, ports, Env, Entrypoint, StopSignal, …).

Audits read this exactly as the engine will: ``User`` is the raw string (``"101"``,
``"nginx"``, ``"101:101"``, empty for root), ``Entrypoint``/``Cmd`` keep the difference between
absent (None) and empty. Docker writes ``null`` for unset lists and maps, so every field is
nullable. ``rootfs.diff_ids`` must be ``layers`` long and match each layer's uncompressed tar;
the layer reader checks that while it streams.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pyd_dataclass

from imgforge.errors import ImageInvalid
from imgforge.image.model import Digest, validate_json
from imgforge.image.platform import Platform

_STRICT = ConfigDict(strict=True, populate_by_name=True, extra="ignore")


@pyd_dataclass(frozen=True, kw_only=True, config=_STRICT)
class HistoryEntry:
    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False


@pyd_dataclass(frozen=True, kw_only=True, config=_STRICT)
class _RunConfig:
    User: str | None = None
    ExposedPorts: dict[str, dict[str, object]] | None = None
    Env: list[str] | None = None
    Entrypoint: list[str] | None = None
    Cmd: list[str] | None = None
    WorkingDir: str | None = None
    Labels: dict[str, str] | None = None
    StopSignal: str | None = None
    Volumes: dict[str, dict[str, object]] | None = None


@pyd_dataclass(frozen=True, kw_only=True, config=_STRICT)
class _RootFS:
    type: str
    diff_ids: list[Digest]


@pyd_dataclass(frozen=True, kw_only=True, config=_STRICT)
class _ConfigDocument:
    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = Field(default=None, validation_alias="os.version")
    created: str | None = None
    config: _RunConfig | None = None
    rootfs: _RootFS
    history: list[HistoryEntry] | None = None


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI/Docker image config that imgforge reads, flattened and typed."""

    os: str
    architecture: str
    variant: str = ""
    created: str | None = None
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    volumes: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    diff_ids: tuple[str, ...] = ()

    @property
    def platform(self) -> Platform:
        return Platform(os=self.os, architecture=self.architecture, variant=self.variant)

    @property
    def env_map(self) -> dict[str, str]:
        """``Env`` as a mapping (a later duplicate wins, as in the engine)."""
        found: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            found[key] = value
        return found


def parse_config(data: bytes, where: str) -> ImageConfig:
    """An :class:`ImageConfig` from the config blob's bytes (digest already verified)."""
    doc = validate_json(_ConfigDocument, data, where)
    if doc.rootfs.type != "layers":
        raise ImageInvalid(f"{where}: rootfs.type: expected 'layers', got {doc.rootfs.type!r}")
    run = doc.config or _RunConfig()
    return ImageConfig(
        os=doc.os,
        architecture=doc.architecture,
        variant=doc.variant or "",
        created=doc.created,
        user=run.User or "",
        exposed_ports=tuple(sorted(run.ExposedPorts or {})),
        env=tuple(run.Env or ()),
        entrypoint=None if run.Entrypoint is None else tuple(run.Entrypoint),
        cmd=None if run.Cmd is None else tuple(run.Cmd),
        working_dir=run.WorkingDir or "",
        labels=dict(run.Labels or {}),
        stop_signal=run.StopSignal or "",
        volumes=tuple(sorted(run.Volumes or {})),
        history=tuple(doc.history or ()),
        diff_ids=tuple(doc.rootfs.diff_ids),
    )
