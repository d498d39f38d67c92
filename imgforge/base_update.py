"""Base freshness: which sites' last release was built on an older base, and releasing them again.

Every build records ``org.opencontainers.image.base.name`` and ``base.digest``. ``check`` resolves
each site's base to its digest now (its registry; a local base through the engine) and reads the
digest the site's released image (``image:tag`` in the registry) recorded. ``update`` releases
each outdated site again with a patch bump: build (with the oci builder a rebase: the base's
layers and the hardening layer are new, the config and content layers are reused byte for byte),
test, push; a base pinned by digest in the site file (``repo:tag@sha256:…``) is moved to the new
digest once the release is pushed, as Renovate moves digest pins. ``imgforge update`` then opens
the merge requests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from imgforge import config
from imgforge.config import Catalog, Site
from imgforge.errors import (
    ImageInvalid,
    ImageRefused,
    ImgforgeError,
    RegistryError,
    RepositoryNotFound,
    SigningFailed,
)
from imgforge.image import mediatypes as mt
from imgforge.image.limits import declared_size
from imgforge.image_ref import ImageRef

BASE_DIGEST = "org.opencontainers.image.base.digest"
UNKNOWN = "unknown"  # the docker builder's label when the engine did not have the base


@dataclass(frozen=True)
class BaseState:
    site: str
    builder: str
    base: str  # the catalog's reference (with its pin, if any)
    current: str | None  # the base's digest now
    released: str | None  # the base digest the release recorded
    release: str  # image:tag of the release
    status: str  # current, outdated, unreleased, unknown
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_digest(reference: str, builder: str) -> str:
    """The digest ``reference`` (its pin left out) stands for now."""
    from imgforge.oci.base import is_registry_reference

    name = str(ImageRef.parse(reference).with_digest(None))
    if is_registry_reference(name):
        from imgforge.registry.client import RegistryClient, Repository

        repo = Repository.parse(ImageRef.parse(name).name)
        with RegistryClient(repo.registry) as client:
            _, _, digest = client.get_manifest(repo.name, ImageRef.parse(name).tag or "latest", mt.ACCEPT)
        return digest
    if builder == "oci":
        from imgforge.oci.base import resolve_base

        return resolve_base(name).digest
    from imgforge.build import base_digest

    return base_digest(name)


def known(digest: str | None) -> bool:
    """Whether ``digest`` names a base: the docker builder labels ``unknown`` when the engine
    lacked the base, and a release may carry no label at all; neither compares with anything."""
    return bool(digest) and digest != UNKNOWN


def released_digest(site: Site) -> str | None:
    """The base digest label of ``image:tag`` in the registry (None: not released; ``unknown``:
    released without a base digest). A malformed manifest or config is ImageInvalid."""
    from imgforge.registry.client import RegistryClient, Repository

    repo = Repository.parse(site.image)
    with RegistryClient(repo.registry) as client:
        try:
            if client.manifest_digest(repo.name, site.tag) is None:
                return None
            data, _, _ = client.get_manifest(repo.name, site.tag, mt.ACCEPT)
        except RepositoryNotFound:
            return None
        try:
            found = _label(client, repo.name, data)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:  # the registry's JSON
            raise ImageInvalid(f"{site.reference}: malformed manifest or config in the registry ({e!r})") from e
    return str(found) if isinstance(found, str) and found else UNKNOWN


def _label(client: Any, name: str, data: bytes) -> Any:
    doc = json.loads(data)
    if doc.get("mediaType") in mt.INDEX_TYPES:
        data, _, _ = client.get_manifest(name, doc["manifests"][0]["digest"])
        doc = json.loads(data)
    size = declared_size(f"{client.registry}/{name}", doc["config"], "max_config_bytes")
    with client.open_blob(name, doc["config"]["digest"], size) as fh:
        image = json.loads(fh.read())
    labels = (image.get("config") or {}).get("Labels") or {}
    return labels.get(BASE_DIGEST)


def check(catalog: Catalog, names: Sequence[str] = ()) -> list[BaseState]:
    """One row per site (all, or ``names``), the base digests resolved once per base."""
    sites = [catalog.site(n) for n in names] if names else list(catalog.sites.values())
    now: dict[tuple[str, str], str | ImgforgeError] = {}
    rows = []
    for site in sites:
        base = catalog.profile(site).base_image
        key = (str(ImageRef.parse(base).with_digest(None)), site.builder)
        if key not in now:
            try:
                now[key] = current_digest(base, site.builder)
            except ImgforgeError as e:
                now[key] = e
        current = now[key]
        if isinstance(current, ImgforgeError):
            rows.append(BaseState(site.name, site.builder, base, None, None, site.reference, "unknown", str(current)))
            continue
        try:
            released = released_digest(site)
        except (RegistryError, ImageRefused) as e:  # that site's answer: the other sites go on
            rows.append(BaseState(site.name, site.builder, base, current, None, site.reference, "unknown", str(e)))
            continue
        pin = ImageRef.parse(base).digest
        detail = ""
        if released is None:
            status = "unreleased"
        elif not known(current):
            status, detail = "unknown", f"the digest of {base} now is unknown (not in the engine or its registry)"
        elif not known(released):
            status, detail = "unknown", f"{site.reference} records no base digest ({BASE_DIGEST})"
        elif released != current or (pin is not None and pin != current):
            status = "outdated"
        else:
            status = "current"
        rows.append(BaseState(site.name, site.builder, base, current, released, site.reference, status, detail))
    return rows


def update(
    catalog: Catalog, names: Sequence[str] = (), *, on_event: Callable[[Any], None] | None = None
) -> list[dict[str, Any]]:
    """Release every outdated site again (patch), its base pin moved; one row per site released.

    A release that was pushed but not signed (SigningFailed) is in the registry on the new base:
    its pin moves too, its row carries the ``error``, and the other sites are released all the
    same (the caller exits non-zero, see :func:`signing_failures`)."""
    from imgforge import release

    done = []
    for state in check(catalog, names):
        if state.status != "outdated" or state.current is None:
            continue
        site = catalog.site(state.site)
        ref = ImageRef.parse(state.base)
        moved = str(ref.with_digest(state.current)) if ref.digest else state.base
        target = site.model_copy(update={"base_image": moved}) if ref.digest else site
        row: dict[str, Any] = {"site": site.name, "base": moved, "from": state.released, "to": state.current}
        try:
            row = {**release.release(catalog, target, "patch", on_event=on_event).to_dict(), **row}
        except SigningFailed as e:
            row |= {"error": str(e), "exit_code": e.exit_code}
        if ref.digest:
            config.set_site_base(catalog, site, moved)
        done.append(row)
    return done


def signing_failures(rows: Sequence[dict[str, Any]]) -> SigningFailed | None:
    """One error for the rows ``update`` pushed but could not sign (exit code: the first one's)."""
    failed = [r for r in rows if r.get("error")]
    if not failed:
        return None
    cause = ImgforgeError("")
    cause.exit_code = int(failed[0]["exit_code"])
    names = ", ".join(r["site"] for r in failed)
    return SigningFailed(f"base update: pushed but not signed: {names} (see each site's error)", cause)
