"""Versions in the registry, the next tag, push with a digest check, and the whole release.

This is where the catalog meets the registry: :mod:`imgforge.registry` knows nothing of sites.
The safety rules live here, once, for the CLI and any other caller:

- a bump never produces a tag that already exists in the registry (in any spelling: ``1.2.3``
  and ``v1.2.3`` are the same version), and never goes below the catalog's current version;
- a push refuses an image whose last ``imgforge test`` failed or never ran, unless the caller
  asks to skip that, and it is not done until the registry's manifest digest equals the digest
  the engine recorded locally;
- a release writes the new tag into the catalog only after the push succeeded, so any failure
  before that leaves nothing pushed and the catalog file unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import docker
import docker.errors
from docker.models.images import Image

from imgforge import config
from imgforge.config import Catalog, Site
from imgforge.engine import docker_client
from imgforge.errors import (
    DigestMismatch,
    DockerError,
    ImgforgeError,
    NotFound,
    PushFailed,
    Refused,
    RepositoryNotFound,
    SigningFailed,
    UsageError,
    VerifyFailed,
)
from imgforge.image_ref import ImageRef
from imgforge.registry import versions
from imgforge.registry.client import RegistryClient, Repository
from imgforge.registry.credentials import lookup
from imgforge.verify.state import last_result


@dataclass(frozen=True)
class Event:
    """Progress for callers that show it: ``kind`` is stage, layer, status, warning or digest."""

    kind: str
    text: str
    id: str = ""
    current: int = 0
    total: int = 0


OnEvent = Callable[[Any], None]


@dataclass(frozen=True)
class TagListing:
    site: str
    repository: str
    current: str
    versions: list[versions.Version]
    other: list[str]  # tags that are not semver: latest, dev-<sha>...

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "repository": self.repository,
            "current": self.current,
            "versions": [
                {"tag": v.tag, "prerelease": v.prerelease, "current": v.tag == self.current} for v in self.versions
            ],
            "other": self.other,
        }


@dataclass(frozen=True)
class BumpPlan:
    site: str
    repository: str
    current: str
    base: str | None  # the version the bump starts from (None: nothing to start from, 0.0.0)
    new: str
    written: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PushResult:
    site: str
    reference: str
    digest: str
    verified: bool
    also: list[str] = field(default_factory=list)
    signed: dict[str, Any] | None = None  # what sign_and_attest wrote; None: no signing key

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReleaseResult:
    site: str
    previous: str
    tag: str
    reference: str
    digest: str
    image_id: str
    signed: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _site(catalog: Catalog, site: Site | str) -> Site:
    return catalog.site(site) if isinstance(site, str) else site


def _registry_tags(repo: Repository, *, missing_ok: bool) -> list[str]:
    with RegistryClient(repo.registry) as client:
        try:
            return client.list_tags(repo.name)
        except RepositoryNotFound:
            if missing_ok:  # a first release: the push will create the repository
                return []
            raise


def list_versions(catalog: Catalog, site: Site | str) -> TagListing:
    """The registry's semver tags of the site's repository, ascending, and the other tags."""
    site = _site(catalog, site)
    repo = Repository.parse(site.image)
    found, other = versions.split(_registry_tags(repo, missing_ok=False))
    return TagListing(site.name, str(repo), site.tag, found, other)


def plan_bump(catalog: Catalog, site: Site | str, part: str | None = None, to: str | None = None) -> BumpPlan:
    """The next tag: ``part`` bumps the highest of (catalog tag, registry's highest release);
    ``to`` names it outright. Refuses a tag the registry already has."""
    site = _site(catalog, site)
    if (part is None) == (to is None):
        raise UsageError("choose exactly one of --patch, --minor, --major or --to vX.Y.Z")
    if part is not None and part not in versions.PARTS:
        raise UsageError(f"part must be one of {', '.join(versions.PARTS)}, got {part!r}")
    wanted = versions.parse(to) if to is not None else None
    if to is not None and wanted is None:  # bad input fails before any network call
        raise UsageError(f"--to: expected a semver tag like v1.2.3, got {to!r}")
    repo = Repository.parse(site.image)
    existing, _ = versions.split(_registry_tags(repo, missing_ok=True))
    current = versions.parse(site.tag)
    candidates = [v for v in (current, versions.highest_release(existing)) if v is not None]
    base = max(candidates) if candidates else None
    if wanted is not None:
        if current is not None and wanted.semver <= current.semver:
            raise Refused(f"{to} is not above the catalog's current {site.tag} for site '{site.name}'")
        new = wanted
    elif part is not None:
        new = _next_version(base, part, "v" if current is None or current.prefixed else "")
    else:
        raise UsageError("choose exactly one of --patch, --minor, --major or --to vX.Y.Z")
    clash = versions.find_same(existing, new)
    if clash is not None or new.tag in {v.tag for v in existing}:
        spelled = f" (as {clash.tag})" if clash is not None and clash.tag != new.tag else ""
        raise Refused(f"tag {new.tag} already exists in {repo}{spelled}; pick another version")
    return BumpPlan(site.name, str(repo), site.tag, base.tag if base else None, new.tag)


def _next_version(base: versions.Version | None, part: str, prefix: str) -> versions.Version:
    tag = versions.bump(base, part, prefix)
    parsed = versions.parse(tag)
    if parsed is None:  # bump writes prefix + semver, which always parses
        raise ImgforgeError(f"{tag} is not a semver tag")
    return parsed


def bump(
    catalog: Catalog, site: Site | str, part: str | None = None, to: str | None = None, *, dry_run: bool = False
) -> BumpPlan:
    """:func:`plan_bump`, then write the new tag into the site's TOML file (comments kept)."""
    site = _site(catalog, site)
    plan = plan_bump(catalog, site, part, to)
    if dry_run:
        return plan
    config.set_site_tag(catalog, site, plan.new)
    return BumpPlan(**{**plan.to_dict(), "written": True})


def push(
    catalog: Catalog,
    site: Site | str,
    *,
    also_latest: bool = False,
    skip_verify: bool = False,
    tag: str | None = None,
    force: bool = False,
    on_event: OnEvent | None = None,
) -> PushResult:
    """Push ``image:tag`` (and ``:latest``) through the engine, then check the registry's digest.

    ``tag`` pushes the catalog's image under another tag (CI's ``dev-<sha8>`` builds). A release
    tag (semver) that the registry already holds with other bytes is refused unless ``force``:
    releases are immutable, and a bump is the way to a new one.
    """
    from imgforge import proof, release_oci  # release_oci builds on this module's types

    site = _site(catalog, site)
    emit = on_event or (lambda _e: None)
    key = proof.signing_key()  # a key that cannot be opened fails before anything is pushed
    if site.builder == "oci":
        pushed = release_oci.push(
            site, also_latest=also_latest, skip_verify=skip_verify, tag=tag, force=force, on_event=on_event
        )
        record = last_result(release_oci.tested_id(site))
        client = None
    else:
        client = docker_client()
        pushed, record = _push_engine(client, site, also_latest, skip_verify, tag, force, emit)
    if key is None:
        emit(Event("note", f"not signed: {proof.keyring.ENV_KEY} is not set (see docs/signing.md)"))
        return pushed
    repo = Repository.parse(site.image)
    emit(Event("stage", f"signing {site.image}@{pushed.digest} and attaching SBOM, provenance, tests"))
    try:
        with RegistryClient(repo.registry) as registry:
            signed = proof.sign_and_attest(
                registry, repo.name, pushed.digest, key, test_report=record, inputs=_build_inputs(catalog, site, client)
            ).to_dict()
    except ImgforgeError as e:
        raise SigningFailed(
            f"pushed {pushed.reference}@{pushed.digest}, but signing it failed: {e}; "
            f"`imgforge sign {site.name}` signs it again",
            e,
        ) from e
    return replace(pushed, signed=signed)


def test_gate(
    site: Site, short_id: str, record: dict[str, Any] | None, skip_verify: bool, emit: OnEvent
) -> dict[str, Any] | None:
    """The push gate of both builders: only an image whose last ``imgforge test`` passed goes out,
    unless ``--skip-verify`` (said as a warning); returns the record the signing step attests."""
    if skip_verify:
        state = "never tested" if record is None else ("last test passed" if record.get("ok") else "last test FAILED")
        emit(Event("warning", f"--skip-verify: pushing {site.reference} without checking its tests ({state})"))
    elif record is None:
        raise Refused(
            f"{site.reference} ({short_id}) was never tested: run `imgforge test {site.name}` "
            "first (or push with --skip-verify)"
        )
    elif not record.get("ok"):
        raise Refused(
            f"{site.reference} ({short_id}) failed its last `imgforge test`; fix it, or push with --skip-verify"
        )
    return record


def _push_engine(
    client: docker.DockerClient,
    site: Site,
    also_latest: bool,
    skip_verify: bool,
    tag: str | None,
    force: bool,
    emit: OnEvent,
) -> tuple[PushResult, dict[str, Any] | None]:
    """The docker builder's push: the engine's image, gated by its test record; (result, record)."""
    image = _local_image(client, site.reference, site.name)
    if tag is not None and tag != site.tag:
        config.check_tag(tag)
        _tag(image, site.image, tag)
        site = site.model_copy(update={"tag": tag})
    if not image.id:
        raise DockerError(f"the engine reported no id for {site.reference}")
    record = test_gate(site, image.short_id, last_result(image.id), skip_verify, emit)
    repo = Repository.parse(site.image)
    if not force and versions.parse(site.tag) is not None:
        _refuse_overwrite(image, site, repo)
    digest = _push_tag(client, image, site.image, site.tag, repo, emit)
    also = []
    if also_latest:
        _tag(image, site.image, "latest")
        latest = _push_tag(client, image, site.image, "latest", repo, emit)
        if latest != digest:
            raise DigestMismatch(f"{site.image}:latest got {latest}, not the digest of {site.reference} ({digest})")
        also.append(f"{site.image}:latest")
    verified = record is not None and bool(record.get("ok"))
    return PushResult(site.name, site.reference, digest, verified, also), record


def release(catalog: Catalog, site: Site | str, part: str, *, on_event: OnEvent | None = None) -> ReleaseResult:
    """build → test → bump → push; any failure stops it with nothing pushed, catalog unchanged.

    The next tag is worked out first (a read-only registry call, so an unreachable registry fails
    before a long build), the image is built and tested under that tag, pushed, and only then is
    the tag written into the catalog.
    """
    from imgforge import release_oci  # release_oci builds on this module's types
    from imgforge.build import build_site  # the build/verify layers load docker and render lazily
    from imgforge.verify import run_site

    site = _site(catalog, site)
    emit = on_event or (lambda _e: None)
    plan = plan_bump(catalog, site, part)
    target = site.model_copy(update={"tag": plan.new})
    built: Any
    if site.builder == "oci":  # assembled without an engine, loaded into one for nginx -t and the tests
        emit(Event("stage", f"assembling {target.reference} (oci builder)"))
        built, report = release_oci.build_and_test(catalog, target)
    else:
        emit(Event("stage", f"building {target.reference}"))
        built = build_site(catalog, target, on_event=emit)
        emit(Event("stage", f"testing {built.image}"))
        report = run_site(catalog, target, image=built.image)  # records the result the push gate reads
    if not report.ok:
        failed = [c.name for c in report.failed] or ["no check ran"]
        raise VerifyFailed(
            f"release of '{site.name}' stopped: {built.image} failed `imgforge test` "
            f"({', '.join(failed)}); nothing pushed, catalog unchanged"
        )
    emit(Event("stage", f"pushing {target.reference}"))
    try:
        pushed = push(catalog, target, on_event=emit)
    except SigningFailed:
        config.set_site_tag(catalog, site, plan.new)  # the release is in the registry: the catalog follows
        raise
    config.set_site_tag(catalog, site, plan.new)
    emit(Event("stage", f"{site.file}: tag {site.tag} -> {plan.new}"))
    return ReleaseResult(site.name, site.tag, plan.new, pushed.reference, pushed.digest, built.id, pushed.signed)


def sign_site(catalog: Catalog, site: Site | str, *, tag: str | None = None) -> Any:
    """``imgforge sign SITE``: sign and attest the registry's digest of the site's tag, with the
    local test record of that digest when the oci layout or the engine has the image (else no
    test attestation)."""
    from imgforge import proof

    site = _site(catalog, site)
    key = proof.signing_key()
    if key is None:
        raise UsageError(f"nothing to sign with: set {proof.keyring.ENV_KEY} to a cosign.key (docs/signing.md)")
    reference = f"{site.image}:{tag or site.tag}"
    _, _, digest = proof.resolve_digest(reference)
    try:
        inputs = _build_inputs(catalog, site, docker_client())
    except ImgforgeError:  # no engine: the provenance says less
        inputs = proof.BuildInputs(site=site.name, catalog_commit=_catalog_commit(catalog))
    record = _oci_test_record(site, digest) if site.builder == "oci" else None
    if record is None:
        record = proof.local_test_report(reference, digest)
    return proof.sign_reference(f"{site.image}@{digest}", key, test_report=record, inputs=inputs)


def _oci_test_record(site: Site, digest: str) -> dict[str, Any] | None:
    """The test record of the site's oci build when the registry's ``digest`` is that build.

    An oci push goes through imgforge's registry client, so the engine never learns the pushed
    digest (``docker load`` sets no RepoDigests): the layout's own top digest is the link.
    """
    from imgforge import release_oci
    from imgforge.oci.transfer import layout_top

    try:
        if layout_top(site)["digest"] != digest:
            return None
        return last_result(release_oci.tested_id(site))
    except ImgforgeError:  # no oci build of this tag here: no test attestation
        return None


# --------------------------------------------------------------------------- engine side


def _build_inputs(catalog: Catalog, site: Site, client: docker.DockerClient | None) -> Any:
    """What the provenance names: catalog commit, templates digest, the base image and its digest."""
    from imgforge import proof

    base = _base_image(catalog, site)
    base_digest = None  # unknown here: the provenance takes the image's base.digest label
    if base and client is not None:
        try:
            found = client.images.get(base)
            repo_digests = [ImageRef.parse(d).digest for d in found.attrs.get("RepoDigests") or []]
            base_digest = next((d for d in repo_digests if d), None) or found.id
        except docker.errors.DockerException:
            base_digest = None
    return proof.BuildInputs(
        site=site.name,
        catalog_commit=_catalog_commit(catalog),
        templates_digest=proof.templates_digest(),
        base_image=base,
        base_digest=base_digest,
    )


def _base_image(catalog: Catalog, site: Site) -> str | None:
    return catalog.profile(site).base_image


def _catalog_commit(catalog: Catalog) -> str | None:
    from imgforge import _git
    from imgforge.errors import GitError

    try:
        return _git.out("rev-parse", "--verify", "HEAD", cwd=catalog.root) or None
    except GitError:
        return None


def _local_image(client: docker.DockerClient, reference: str, site: str) -> Image:
    try:
        return client.images.get(reference)
    except docker.errors.ImageNotFound:
        raise NotFound(f"image {reference} not found locally: build it with `imgforge build {site}`") from None
    except docker.errors.APIError as e:
        raise DockerError(f"cannot inspect {reference}: {e.explanation or e}") from e


def _tag(image: Image, repository: str, tag: str) -> None:
    try:
        image.tag(repository, tag)
    except docker.errors.APIError as e:
        raise DockerError(f"cannot tag {image.short_id} as {repository}:{tag}: {e.explanation or e}") from e


def _push_tag(
    client: docker.DockerClient, image: Image, repository: str, tag: str, repo: Repository, emit: OnEvent
) -> str:
    """Push one tag, streaming progress; return the digest once local and registry agree."""
    reference = f"{repository}:{tag}"
    creds = lookup(repo.registry)
    auth = creds.docker_auth_config() if creds else None
    stream_digest = None
    try:
        for ev in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
            if "error" in ev:
                detail = (ev.get("errorDetail") or {}).get("message") or ev["error"]
                raise PushFailed(f"push of {reference} to registry {repo.registry} failed: {detail}")
            if isinstance(ev.get("aux"), dict) and ev["aux"].get("Digest"):
                stream_digest = ev["aux"]["Digest"]
            progress = ev.get("progressDetail") or {}
            emit(
                Event(
                    "layer" if ev.get("id") else "status",
                    str(ev.get("status", "")),
                    str(ev.get("id", "")),
                    int(progress.get("current") or 0),
                    int(progress.get("total") or 0),
                )
            )
    except docker.errors.APIError as e:
        raise PushFailed(f"push of {reference} to registry {repo.registry} failed: {e.explanation or e}") from e
    image.reload()
    local = _repo_digests(image.attrs.get("RepoDigests") or [], repository)
    with RegistryClient(repo.registry) as registry:
        remote = registry.manifest_digest(repo.name, tag)
    if remote is None:
        raise DigestMismatch(f"{reference} was pushed but registry {repo.registry} has no manifest for it")
    if remote not in local or (stream_digest and stream_digest != remote):
        mine = stream_digest or (", ".join(sorted(local)) or "none")
        raise DigestMismatch(f"digest mismatch for {reference}: registry has {remote}, local image has {mine}")
    emit(Event("digest", f"{reference}@{remote}", current=1, total=1))
    return remote


def _refuse_overwrite(image: Image, site: Site, repo: Repository) -> None:
    with RegistryClient(repo.registry) as registry:
        try:
            remote = registry.manifest_digest(repo.name, site.tag)
        except RepositoryNotFound:
            return
    if remote is not None and remote not in _repo_digests(image.attrs.get("RepoDigests") or [], site.image):
        raise Refused(
            f"{site.reference} already exists in registry {repo.registry} as {remote}, with other "
            f"bytes than {image.short_id}: release tags are immutable; bump the version "
            "(or push with --force)"
        )


def _repo_digests(entries: list[str], repository: str) -> set[str]:
    """Digests the engine recorded for ``repository`` (in whichever spelling it recorded them)."""
    refs = [ImageRef.parse(e) for e in entries]
    return {r.digest for r in refs if r.digest and r.same_repository(repository)}
