"""The referrers-API path: ``imgforge sign`` through a front that implements the OCI 1.1 referrers
API from the distribution spec's text before the real registry (tests/registry/test_referrers.py
says why no such registry can be installed here). imgforge must detect the API, attach each
envelope as a referrer of the digest, and ``verify`` must find them there alone."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_main
from tests.proof.conftest import registry_environ
from tests.registry.test_referrers import ReferrersApi

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.slow]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def front(released, monkeypatch):
    api = ReferrersApi(released.registry.url)
    registry_environ(monkeypatch, released.registry, released.tmp, host=api.host)
    monkeypatch.setenv("IMGFORGE_SIGNING_KEY", str(released.keys.private))
    monkeypatch.setenv("IMGFORGE_SIGNING_PASSWORD", released.keys.password.decode())
    monkeypatch.setenv("IMGFORGE_STATE_DIR", str(released.tmp / "state"))  # the release's test record
    yield api
    api.stop()


def test_sign_detects_the_referrers_api_and_verify_reads_it_alone(released, front):
    digest = released.result.digest
    reference = f"{front.host}/{released.repo}@{digest}"
    code, out, err = run_main("sign", reference, "--json")
    assert (code, err) == (0, "")
    signed = json.loads(out)
    assert signed["via"] == "tag+referrers-api"
    referrers = front.subjects[(released.repo, digest)]
    assert len(referrers) == 3
    # Only the referrers are left: the .att tag's manifest is deleted (and put back afterwards).
    s = released.registry.admin(released.repo)
    base = f"{released.registry.url}/v2/{released.repo}"
    att = s.get(f"{base}/manifests/sha256-{digest[7:]}.att", headers={"Accept": OCI_MANIFEST}, timeout=10)
    assert s.delete(f"{base}/manifests/{att.headers['Docker-Content-Digest']}", timeout=10).status_code == 202
    try:
        code, out, _ = run_main("verify", reference, "--key", str(released.keys.public), "--no-content")
    finally:
        s.put(
            f"{base}/manifests/sha256-{digest[7:]}.att",
            data=att.content,
            headers={"Content-Type": OCI_MANIFEST},
            timeout=10,
        ).raise_for_status()
    assert code == 0, out
    for fact in ("sbom", "provenance", "tests"):
        line = next(x for x in out.splitlines() if x.startswith(f"ok   {fact}:"))
        assert "(referrer sha256:" in line
    assert front.answered  # the listing came from the API


def test_sign_site_from_the_catalog(released, monkeypatch):
    from imgforge import release

    registry_environ(monkeypatch, released.registry, released.tmp)
    monkeypatch.setenv("IMGFORGE_SIGNING_KEY", str(released.keys.private))
    monkeypatch.setenv("IMGFORGE_SIGNING_PASSWORD", released.keys.password.decode())
    monkeypatch.setenv("IMGFORGE_STATE_DIR", str(released.tmp / "state"))  # the release's test record
    site = released.catalog.site("web")
    signed = release.sign_site(released.catalog, site, tag=released.result.tag)
    assert signed.digest == released.result.digest
    assert signed.via == "tag"
    assert len(signed.predicates) == 3  # the local test record of that digest was found
    code, _, _ = run_main("verify", released.reference, "--key", str(released.keys.public), "--no-content")
    assert code == 0
