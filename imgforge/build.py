"""Build a site's image through the Docker Engine API, skipping builds whose inputs did not change.

The build loop reads ``APIClient.build(decode=True)`` itself instead of ``images.build()`` (which
swallows the stream): callers get live progress events, and a failure carries the failing step
and the tail of the log, including nginx's own ``nginx -t`` message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import docker.errors

from imgforge.config import Catalog, Site
from imgforge.engine import docker_client
from imgforge.errors import BuildFailed, DockerError
from imgforge.render import Rendered, check_out_dir, context_stream, prepare, write_context

DIGEST_LABEL = "io.imgforge.inputs-digest"
_STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")
_NGINX_FAILURE = re.compile(r"\[(emerg|alert|crit)\](?: \d+#\d+:)? (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TAIL = 30


@dataclass(frozen=True)
class BuildEvent:
    """One line of progress: ``kind`` is "step" (a Dockerfile step starts), "log" or "skip"."""

    site: str
    kind: str
    text: str


@dataclass(frozen=True)
class BuildResult:
    site: str
    image: str
    id: str
    skipped: bool
    inputs_digest: str

    def to_dict(self) -> dict:
        return asdict(self)


OnEvent = Callable[[BuildEvent], None]


class EngineLookup:
    """What the engine already holds, asked once per run instead of once per site.

    ``imgforge build --all`` decides for every site whether its inputs changed; one listing of
    imgforge's images and one inspection per base image serve all of them.
    """

    def __init__(self) -> None:
        self._bases: dict[str, str | None] = {}
        self._built: dict[str, list[str]] | None = None

    def base_id(self, reference: str) -> str | None:
        if reference not in self._bases:
            self._bases[reference] = _local_image_id(reference)
        return self._bases[reference]

    def built(self, digest: str) -> str | None:
        """Id of a local image imgforge built from exactly these inputs, if any.

        Images built ``FROM`` an imgforge image inherit its labels; only one whose last step is
        imgforge's own LABEL step is the build itself.
        """
        api = docker_client().api
        try:
            if self._built is None:
                self._built = {}
                for summary in api.images(filters={"label": DIGEST_LABEL}):
                    label = (summary.get("Labels") or {}).get(DIGEST_LABEL)
                    self._built.setdefault(label, []).append(summary["Id"])
            for image_id in self._built.get(digest, []):
                history = api.history(image_id)
                if history and DIGEST_LABEL in (history[0].get("CreatedBy") or ""):
                    return image_id
        except docker.errors.APIError as e:
            raise DockerError(f"cannot list images: {e.explanation or e}") from e
        return None

    def add(self, digest: str, image_id: str) -> None:
        if self._built is not None:
            self._built.setdefault(digest, []).insert(0, image_id)


def inputs_digest(rendered: Rendered, lookup: EngineLookup | None = None) -> str:
    """The context digest plus the local id of the base image, when the engine has it.

    A re-pulled or re-bootstrapped base changes its id, and so forces a rebuild.
    """
    base_id = (lookup or EngineLookup()).base_id(rendered.base_image) or "not-local"
    return f"sha256:{_sha256(rendered.digest() + base_id)}"


def build_args(rendered: Rendered, digest: str) -> dict[str, str]:
    """The per-build label values (the Dockerfile declares them as ARGs of its one LABEL step)."""
    created = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(created), dt.UTC) if created else dt.datetime.now(dt.UTC)
    return {
        "IMGFORGE_CREATED": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "IMGFORGE_REVISION": rendered.content.revision or "unknown",
        "IMGFORGE_SOURCE": rendered.content.source,
        "IMGFORGE_INPUTS_DIGEST": digest,
    }


def build_site(
    catalog: Catalog,
    site: Site,
    *,
    force: bool = False,
    no_cache: bool = False,
    on_event: OnEvent | None = None,
    out_dir: Path | None = None,
    lookup: EngineLookup | None = None,
) -> BuildResult:
    """Render and build ``site`` as ``image:tag``; reuse an image with the same inputs digest.

    ``force`` rebuilds even then; ``no_cache`` also ignores the engine's layer cache (implies force).
    Pass one ``lookup`` to several calls to ask the engine once for all of them. ``out_dir`` (a copy
    of the context to inspect) follows ``render.check_out_dir``, checked before the engine is asked.
    """
    force = force or no_cache
    emit = on_event or (lambda _event: None)
    lookup = lookup or EngineLookup()
    rendered = prepare(catalog, site)
    if out_dir is not None:
        out_dir = check_out_dir(out_dir, catalog.root, rendered.content.path)
    digest = inputs_digest(rendered, lookup)
    client = docker_client()
    if not force and (existing := lookup.built(digest)):
        _tag(client, existing, site)
        emit(BuildEvent(site.name, "skip", f"inputs unchanged ({digest[:19]}…): reusing {existing[:19]}"))
        return BuildResult(site.name, site.reference, existing, True, digest)
    if out_dir is not None:
        write_context(rendered, out_dir, catalog.root)  # kept for inspection; the engine gets the same bytes below
    image_id = _run_build(client, context_stream(rendered), site, build_args(rendered, digest), emit, no_cache)
    lookup.add(digest, image_id)
    return BuildResult(site.name, site.reference, image_id, False, digest)


def _run_build(
    client, context: Iterator[bytes], site: Site, buildargs: dict[str, str], emit: OnEvent, no_cache: bool = False
) -> str:
    tail: deque[str] = deque(maxlen=_TAIL)
    step = ""
    image_id = None
    try:
        stream: Iterator[dict] = client.api.build(
            fileobj=context,
            custom_context=True,
            tag=site.reference,
            buildargs=buildargs,
            rm=True,
            forcerm=True,
            pull=False,
            nocache=no_cache,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk or "errorDetail" in chunk:
                detail = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error", "")
                raise BuildFailed(site.name, step, _explain(detail.strip(), tail), list(tail))
            if aux := chunk.get("aux"):
                image_id = aux.get("ID", image_id)
            for line in _ANSI.sub("", chunk.get("stream") or "").splitlines():
                if not line.strip():
                    continue
                tail.append(line)
                if m := _STEP.match(line.strip()):
                    step = f"{m.group(1)} {m.group(2)}"
                    emit(BuildEvent(site.name, "step", step))
                else:
                    emit(BuildEvent(site.name, "log", line))
    except docker.errors.APIError as e:
        raise BuildFailed(site.name, step, str(e.explanation or e), list(tail)) from e
    except docker.errors.DockerException as e:
        raise DockerError(f"build of '{site.name}': {e}") from e
    built = _local_image_id(site.reference) or image_id
    if not built:
        raise BuildFailed(site.name, step, "the engine reported no image", list(tail))
    return built


def _explain(detail: str, tail: deque[str]) -> str:
    """Prefer nginx's own message (from the ``nginx -t`` step) over the generic exit-code line."""
    nginx_lines = [f"nginx: [{m.group(1)}] {m.group(2)}" for line in tail if (m := _NGINX_FAILURE.search(line))]
    if nginx_lines:
        return nginx_lines[-1]
    if "pull access denied" in detail or ("not found" in detail and "manifest" in detail):
        return detail + " (base image not available: pull it, or see `imgforge base bootstrap`)"
    return detail or "unknown error"


def _tag(client, image_id: str, site: Site) -> None:
    if _local_image_id(site.reference) != image_id:
        client.api.tag(image_id, site.image, site.tag)


def _local_image_id(reference: str) -> str | None:
    try:
        return docker_client().api.inspect_image(reference)["Id"]
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as e:
        raise DockerError(f"cannot inspect {reference}: {e.explanation or e}") from e


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
