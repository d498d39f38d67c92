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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from imgforge.config import Catalog, Site
from imgforge.content_manifest import ContentManifest
from imgforge.engine import docker_client
from imgforge.errors import BuildFailed, DockerError
from imgforge.hashcache import HashCache
from imgforge.render import Context, check_out_dir, prepare

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
    """The image of one build (or the unchanged image reused), and the content manifest it carries."""

    site: str
    image: str
    id: str
    skipped: bool
    inputs_digest: str
    manifest: ContentManifest

    @property
    def manifest_digest(self) -> str:
        """The image's ``io.imgforge.manifest-digest`` label."""
        return self.manifest.digest

    def to_dict(self) -> dict[str, Any]:
        """``build --json``'s row (the manifest itself is in the image, only its digest here)."""
        return {
            "site": self.site,
            "image": self.image,
            "id": self.id,
            "skipped": self.skipped,
            "inputs_digest": self.inputs_digest,
            "manifest_digest": self.manifest_digest,
        }


OnEvent = Callable[[BuildEvent], None]


class EngineLookup:
    """What the engine already holds, asked once per run instead of once per site.

    ``imgforge build --all`` decides for every site whether its inputs changed; one listing of
    imgforge's images and one inspection per base image serve all of them.
    """

    def __init__(self) -> None:
        self._bases: dict[str, str | None] = {}
        self._built: dict[str | None, list[str]] | None = None

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
                history = api.history(image_id)  # type: ignore[no-untyped-call]  # untyped in types-docker
                if history and DIGEST_LABEL in (history[0].get("CreatedBy") or ""):
                    return image_id
        except docker.errors.APIError as e:
            raise DockerError(f"cannot list images: {e.explanation or e}") from e
        return None

    def add(self, digest: str, image_id: str) -> None:
        if self._built is not None:
            self._built.setdefault(digest, []).insert(0, image_id)


def base_digest(reference: str) -> str:
    """The base's digest for the ``org.opencontainers.image.base.digest`` label.

    The registry digest the engine recorded for the base (``RepoDigests``, from its pull), else,
    for a base made locally that no registry ever served (``imgforge base bootstrap``), its image
    ID: the only identity such an image has.
    """
    try:
        info = docker_client().api.inspect_image(reference)  # type: ignore[no-untyped-call]
    except docker.errors.ImageNotFound:
        return "unknown"
    except docker.errors.APIError as e:
        raise DockerError(f"cannot inspect {reference}: {e.explanation or e}") from e
    from imgforge.image_ref import ImageRef

    ref = ImageRef.parse(reference)
    for entry in info.get("RepoDigests") or []:
        found = ImageRef.parse(entry)
        if found.digest and found.same_repository(ref):
            return str(found.digest)
    return str(info["Id"])


def inputs_digest(context: Context, lookup: EngineLookup | None = None) -> str:
    """The context digest plus the local id of the base image, when the engine has it.

    A re-pulled or re-bootstrapped base changes its id, and so forces a rebuild. The content
    manifest is a file of the context, so the digest covers it without a term of its own.
    """
    base_id = (lookup or EngineLookup()).base_id(context.base_image) or "not-local"
    return f"sha256:{_sha256(context.digest() + base_id)}"


def build_args(context: Context, digest: str) -> dict[str, str]:
    """The per-build label values (the Dockerfile declares them as ARGs of its one LABEL step)."""
    created = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(created), dt.UTC) if created else dt.datetime.now(dt.UTC)
    return {
        "IMGFORGE_CREATED": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "IMGFORGE_REVISION": context.content.revision or "unknown",
        "IMGFORGE_SOURCE": context.content.source,
        "IMGFORGE_INPUTS_DIGEST": digest,
        "IMGFORGE_MANIFEST_DIGEST": context.manifest().digest,
        "IMGFORGE_BASE_DIGEST": base_digest(context.base_image),
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
    cache: HashCache | None = None,
) -> BuildResult:
    """Render and build ``site`` as ``image:tag``; reuse an image with the same inputs digest.

    ``force`` rebuilds even then; ``no_cache`` also ignores the engine's layer cache (implies force).
    Pass one ``lookup`` to several calls to ask the engine once for all of them. ``out_dir`` (a copy
    of the context to inspect) follows ``render.check_out_dir``, checked before the engine is asked.
    ``cache`` (opened and saved by the caller) spares re-hashing unchanged content files.
    """
    force = force or no_cache
    emit = on_event or (lambda _event: None)
    lookup = lookup or EngineLookup()
    context = prepare(catalog, site, cache)
    if out_dir is not None:
        out_dir = check_out_dir(out_dir, catalog.root, context.content.path)
    digest = inputs_digest(context, lookup)
    client = docker_client()
    if not force and (existing := lookup.built(digest)):
        _tag(client, existing, site)
        emit(BuildEvent(site.name, "skip", f"inputs unchanged ({digest[:19]}…): reusing {existing[:19]}"))
        return BuildResult(site.name, site.reference, existing, True, digest, context.manifest())
    if out_dir is not None:
        context.write(out_dir, catalog.root)  # kept for inspection; the engine gets the same bytes below
    image_id = _run_build(client, context.tar_stream(), site, build_args(context, digest), emit, no_cache)
    lookup.add(digest, image_id)
    return BuildResult(site.name, site.reference, image_id, False, digest, context.manifest())


def _run_build(
    client: docker.DockerClient,
    context: Iterator[bytes],
    site: Site,
    buildargs: dict[str, str],
    emit: OnEvent,
    no_cache: bool = False,
) -> str:
    tail: deque[str] = deque(maxlen=_TAIL)
    step = ""
    image_id = None
    try:
        stream: Iterator[dict[str, Any]] = client.api.build(
            fileobj=context,  # type: ignore[arg-type]  # requests streams an iterator as a chunked body
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


def _tag(client: docker.DockerClient, image_id: str, site: Site) -> None:
    if _local_image_id(site.reference) != image_id:
        client.api.tag(image_id, site.image, site.tag)


def _local_image_id(reference: str) -> str | None:
    try:
        image_id: str = docker_client().api.inspect_image(reference)["Id"]  # type: ignore[no-untyped-call]
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as e:
        raise DockerError(f"cannot inspect {reference}: {e.explanation or e}") from e
    return image_id


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
