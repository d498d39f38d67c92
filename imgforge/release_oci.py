"""The oci builder's side of the release loop: test the layout on an engine, push it without one.

The same safety rules as :mod:`imgforge.release`: a push refuses an image whose last
``imgforge test`` failed or never ran (the record is keyed by the config digest, which is the
image ID ``docker load`` gives, so testing the loaded image is testing the layout), a release tag
the registry holds with other bytes is refused, and a release writes its tag into the catalog
only after the push. ``nginx -t`` runs in the loaded image before any check, as the Dockerfile
runs it at build time.
"""

from __future__ import annotations

from typing import Any

from imgforge import config
from imgforge.config import Catalog, Site
from imgforge.errors import Refused, RepositoryNotFound
from imgforge.oci import OciBuildResult, build_site_oci, config_test, load
from imgforge.oci import push as push_layout
from imgforge.oci.transfer import layout_top, platform_manifests
from imgforge.registry import versions
from imgforge.registry.client import RegistryClient, Repository
from imgforge.release import Event, OnEvent, PushResult, test_gate
from imgforge.verify.state import last_result


def load_for_test(site: Site) -> str:
    """Load the site's oci build into the engine as ``image:tag`` and prove its config with nginx -t."""
    image_id = load(site)
    config_test(site, image_id)
    return image_id


def tested_id(site: Site) -> str:
    """The image ID the verify record of the site's oci build is kept under (host platform)."""
    found = platform_manifests(layout_top(site))
    from imgforge.image.platform import host_platform

    arch = host_platform().architecture
    manifest = next((m for d, m in found if (d.get("platform") or {}).get("architecture") == arch), found[0][1])
    return str(manifest["config"]["digest"])


def push(
    site: Site,
    *,
    also_latest: bool = False,
    skip_verify: bool = False,
    tag: str | None = None,
    force: bool = False,
    on_event: OnEvent | None = None,
) -> PushResult:
    emit = on_event or (lambda _e: None)
    image_id = tested_id(site)
    record = test_gate(site, image_id[:19], last_result(image_id), skip_verify, emit)
    target = tag or site.tag
    if tag is not None:
        config.check_tag(tag)
    top = layout_top(site)
    repo = Repository.parse(site.image)
    if not force and versions.parse(target) is not None:
        _refuse_overwrite(site, repo, target, top["digest"])
    tags = [target, *(["latest"] if also_latest else [])]
    report = push_layout(site, tags, on_event=lambda text: emit(Event("status", text)))
    emit(Event("stage", f"uploaded {report.bytes_uploaded} bytes in {len(report.uploaded)} blobs"))
    for t in tags:
        emit(Event("digest", f"{site.image}:{t}@{report.digest}", current=1, total=1))
    also = [f"{site.image}:latest"] if also_latest else []
    return PushResult(
        site.name, f"{site.image}:{target}", report.digest, record is not None and bool(record.get("ok")), also
    )


def _refuse_overwrite(site: Site, repo: Repository, tag: str, digest: str) -> None:
    with RegistryClient(repo.registry) as registry:
        try:
            remote = registry.manifest_digest(repo.name, tag)
        except RepositoryNotFound:
            return
    if remote is not None and remote != digest:
        raise Refused(
            f"{site.image}:{tag} already exists in registry {repo.registry} as {remote}, with other "
            f"bytes than the oci build {digest[:19]}: release tags are immutable; bump the version "
            "(or push with --force)"
        )


def build_and_test(catalog: Catalog, site: Site, **build: Any) -> tuple[OciBuildResult, Any]:
    """Assemble, load, ``nginx -t`` and ``imgforge test``: the result and the verify report."""
    from imgforge.verify import run_image

    built = build_site_oci(catalog, site, **build)
    image_id = load_for_test(site)
    return built, run_image(image_id, site=site.name)
