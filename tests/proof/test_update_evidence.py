"""``pr``/``update`` evidence read from the registry: the proposed digest verified with the key,
and its SBOM compared with the SBOM of the digest deployed now (both signed, both real images)."""

from __future__ import annotations

import io

import pytest

from imgforge import evidence, proof

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def deployed(released, docker_client):
    """Another real image of the site (one more content file), pushed as ``deployed`` and signed."""
    reference = f"{released.registry.host}/{released.repo}:deployed"
    dockerfile = (
        f"FROM {released.reference}\nUSER 0:0\nRUN echo old > /usr/share/nginx/html/only-deployed.html\nUSER 100:101\n"
    )
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=reference, rm=True)
    auth = {"username": released.registry.user, "password": released.registry.password}
    for line in docker_client.api.push(reference, auth_config=auth, stream=True, decode=True):
        assert "error" not in line, line
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGFORGE_SIGNING_KEY", str(released.keys.private))
        mp.setenv("IMGFORGE_SIGNING_PASSWORD", released.keys.password.decode())
        signed = proof.sign_reference(reference, proof.signing_key())
    assert signed.notes  # nothing tested it: no test attestation, said so
    yield reference
    docker_client.images.remove(reference, force=True)


def _key(released):
    return proof.verifying_key(released.keys.public)


def test_evidence_is_verified_and_diffs_the_sbom_against_what_runs(released, deployed):
    site = released.catalog.site("web")
    ev = evidence.collect_evidence(site, released.result.tag, "deployed", key=_key(released))
    assert ev.verified, ev.reasons
    assert ev.digest == released.result.digest
    assert ev.key_fingerprint == released.keys.fingerprint
    assert [f["name"] for f in ev.facts] == ["signature", "sbom", "provenance", "tests", "tests passed"]
    assert ev.report["passed"] is True
    assert ev.deployed.startswith(f"{deployed}@sha256:")
    assert ev.sbom_diff == {
        "packages_added": [],
        "packages_removed": [],
        "packages_changed": [],
        "files_added": [],
        "files_removed": ["usr/share/nginx/html/only-deployed.html"],
        "files_changed": [],
    }


def test_a_signed_image_without_a_test_attestation_is_not_verified(released, deployed):
    site = released.catalog.site("web")
    ev = evidence.collect_evidence(site, "deployed", None, key=_key(released))
    assert not ev.verified
    assert [f["name"] for f in ev.facts if not f["ok"]] == ["tests", "tests passed"]


def test_no_key_means_not_verified_with_the_reason(released):
    ev = evidence.collect_evidence(released.catalog.site("web"), released.result.tag, None, key=None)
    assert ev.digest == released.result.digest
    assert not ev.verified
    assert ev.reasons == [evidence.NO_KEY]


def test_an_unsigned_deployed_tag_gives_no_diff_and_says_why(released):
    from tests.registry.conftest import seed_tags

    seed_tags(released.registry, released.repo, ["unsigned"])
    site = released.catalog.site("web")
    ev = evidence.collect_evidence(site, released.result.tag, "unsigned", key=_key(released))
    assert ev.verified
    assert ev.sbom_diff is None
    assert ev.notes == ["the deployed unsigned has no SBOM signed by this key: no SBOM diff"]
