"""push: the verify gate, docker-py push with progress, and the digest read back from the registry."""

from __future__ import annotations

import pytest

from imgforge import config, release
from imgforge.errors import AuthRejected, DigestMismatch, NotFound, PushFailed, Refused, RepositoryNotFound
from imgforge.registry import RegistryClient
from imgforge.verify.state import record_result

pytestmark = [pytest.mark.registry, pytest.mark.docker]


@pytest.fixture
def site(basic_registry, make_catalog, registry_env, unique_repo):
    """A catalog with one site whose image repository is on the basic-auth test registry."""
    registry_env(basic_registry)
    repo = unique_repo("push")
    root = make_catalog(sites={"web": {"image": f"{basic_registry.host}/{repo}", "tag": "v0.1.0"}})
    catalog = config.load_catalog(root)
    return catalog, catalog.site("web"), repo


def _remote_digest(reg, repo: str, tag: str) -> str | None:
    with RegistryClient(reg.host) as c:
        return c.manifest_digest(repo, tag)


def test_push_reads_the_digest_back_and_matches_the_local_repo_digest(site, tiny_image, basic_registry, docker_client):
    catalog, web, repo = site
    image = tiny_image(web.reference)
    record_result(image.id, {"ok": True, "checks": []})
    events = []
    result = release.push(catalog, "web", also_latest=True, on_event=events.append)
    remote = _remote_digest(basic_registry, repo, "v0.1.0")
    local = docker_client.images.get(image.id).attrs["RepoDigests"]
    assert result.digest == remote
    assert f"{web.image}@{remote}" in local
    assert _remote_digest(basic_registry, repo, "latest") == remote
    assert result.also == [f"{web.image}:latest"]
    assert result.verified
    assert any(e.kind == "layer" for e in events)
    assert [e.text for e in events if e.kind == "digest"] == [
        f"{web.reference}@{remote}",
        f"{web.image}:latest@{remote}",
    ]


def test_push_refuses_an_image_never_tested(site, tiny_image, basic_registry):
    catalog, web, repo = site
    tiny_image(web.reference)
    with pytest.raises(
        Refused, match=r"was never tested: run `imgforge test web` first \(or push with --skip-verify\)"
    ):
        release.push(catalog, "web")
    with RegistryClient(basic_registry.host) as c, pytest.raises(RepositoryNotFound):
        c.list_tags(repo)


def test_push_refuses_an_image_whose_last_test_failed(site, tiny_image):
    catalog, web, _ = site
    record_result(tiny_image(web.reference).id, {"ok": False, "checks": [{"name": "runs-as-non-root", "ok": False}]})
    with pytest.raises(Refused, match="failed its last `imgforge test`") as e:
        release.push(catalog, "web")
    assert e.value.exit_code == 10


def test_skip_verify_pushes_with_a_warning(site, tiny_image, basic_registry):
    catalog, web, repo = site
    tiny_image(web.reference)
    events = []
    result = release.push(catalog, "web", skip_verify=True, on_event=events.append)
    assert result.verified is False
    assert result.digest == _remote_digest(basic_registry, repo, "v0.1.0")
    assert [e.text for e in events if e.kind == "warning"] == [
        f"--skip-verify: pushing {web.reference} without checking its tests (never tested)"
    ]


def test_missing_local_image_says_how_to_build_it(site):
    catalog, web, _ = site
    with pytest.raises(NotFound, match=rf"image {web.reference} not found locally: build it with `imgforge build web`"):
        release.push(catalog, "web")


def test_push_with_rejected_credentials_fails_without_the_password(site, tiny_image, monkeypatch):
    catalog, web, _ = site
    monkeypatch.setenv("IMGFORGE_REGISTRY_PASSWORD", "wrong-Pa55word-xyz")
    record_result(tiny_image(web.reference).id, {"ok": True})
    # The release-tag guard asks the registry first, so the rejection comes before any upload.
    with pytest.raises(AuthRejected) as e:
        release.push(catalog, "web")
    assert str(e.value).startswith(
        f"credentials rejected for repository {web.image.split('/', 1)[1]} on registry {web.image.split('/')[0]}"
    )
    assert "wrong-Pa55word-xyz" not in str(e.value)
    with pytest.raises(PushFailed) as e:  # past the guard, the engine's push is rejected too
        release.push(catalog, "web", force=True)
    assert str(e.value).startswith(f"push of {web.reference} to registry {web.image.split('/')[0]} failed: ")
    assert "wrong-Pa55word-xyz" not in str(e.value)


def test_digest_mismatch_is_an_error(site, tiny_image, monkeypatch):
    catalog, web, _ = site
    record_result(tiny_image(web.reference).id, {"ok": True})

    class Tampered(RegistryClient):  # the registry serving other bytes under the tag than were pushed
        def manifest_digest(self, name, reference):
            return "sha256:" + "0" * 64

    monkeypatch.setattr(release, "RegistryClient", Tampered)
    # --force: past the release-tag guard (which would refuse the tampered tag), to the read-back.
    with pytest.raises(DigestMismatch, match=rf"digest mismatch for {web.reference}: registry has sha256:0+, local"):
        release.push(catalog, "web", force=True)


def test_push_under_another_tag_for_branch_builds(site, tiny_image, basic_registry):
    catalog, web, repo = site
    image = tiny_image(web.reference)
    record_result(image.id, {"ok": True, "checks": []})
    result = release.push(catalog, "web", tag="dev-1a2b3c4d")
    assert result.reference == f"{web.image}:dev-1a2b3c4d"
    assert _remote_digest(basic_registry, repo, "dev-1a2b3c4d") == result.digest
    assert _remote_digest(basic_registry, repo, "v0.1.0") is None  # the release tag is not touched
    # A moving tag may be pushed again with other bytes (the next branch build).
    other = tiny_image(web.reference)
    record_result(other.id, {"ok": True, "checks": []})
    assert release.push(catalog, "web", tag="dev-1a2b3c4d").digest != result.digest


def test_push_refuses_to_overwrite_a_release_tag_with_other_bytes(site, tiny_image, basic_registry):
    catalog, web, repo = site
    first = tiny_image(web.reference)
    record_result(first.id, {"ok": True, "checks": []})
    pushed = release.push(catalog, "web").digest
    assert release.push(catalog, "web").digest == pushed  # same bytes again: idempotent
    second = tiny_image(web.reference)
    record_result(second.id, {"ok": True, "checks": []})
    with pytest.raises(Refused, match=r"v0.1.0 already exists in registry .* release tags are immutable"):
        release.push(catalog, "web")
    assert _remote_digest(basic_registry, repo, "v0.1.0") == pushed
    forced = release.push(catalog, "web", force=True)
    assert forced.digest != pushed
    assert _remote_digest(basic_registry, repo, "v0.1.0") == forced.digest


def test_push_rejects_a_malformed_tag(site, tiny_image):
    catalog, web, _ = site
    record_result(tiny_image(web.reference).id, {"ok": True, "checks": []})
    from imgforge.errors import UsageError

    with pytest.raises(UsageError, match="tag: expected an image tag"):
        release.push(catalog, "web", tag="dev 1")
