"""``imgforge verify`` and ``imgforge sign`` against the signed release of conftest: one line per
fact, exit 0 only when every fact holds; each failing fact made to fail by a real change in the
registry (another key, an unsigned tag, an SBOM or a test report that lies, signed validly)."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest

from tests.conftest import run_main
from tests.proof.conftest import make_keys
from tests.registry.conftest import seed_tags

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.slow]

FACTS = ["signature", "sbom", "provenance", "tests", "tests passed", "sbom content"]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def test_verify_prints_one_line_per_fact_and_exits_0(released):
    code, out, err = run_main("verify", released.reference, "--key", str(released.keys.public))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"{released.registry.host}/{released.repo}@{released.result.digest} (key sha256:")
    assert [line.split(":")[0] for line in lines[1:-1]] == [f"ok   {n}" for n in FACTS]
    assert lines[-1] == "verified"


def test_verify_json_and_the_key_from_environment_or_catalog(released, monkeypatch, tmp_path):
    monkeypatch.setenv("IMGFORGE_SIGNING_KEY_PUB", str(released.keys.public))
    code, out, _ = run_main("verify", released.reference, "--json", "--no-content", "--root", str(tmp_path))
    data = json.loads(out)
    assert code == 0
    assert data["ok"] is True
    assert data["key_fingerprint"] == f"sha256:{released.keys.fingerprint}"
    assert [f["name"] for f in data["facts"]] == FACTS[:-1]
    assert data["tests"]["passed"] is True
    monkeypatch.delenv("IMGFORGE_SIGNING_KEY_PUB")
    (tmp_path / "imgforge.toml").write_text('[signing]\npublic_key = "keys/cosign.pub"\n', encoding="utf-8")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cosign.pub").write_bytes(released.keys.public.read_bytes())
    code, out, _ = run_main("verify", released.reference, "--root", str(tmp_path), "--no-content")
    assert code == 0
    assert "imgforge.toml [signing] public_key" in out.splitlines()[0]


def test_verify_without_any_key_is_a_usage_error(released, tmp_path):
    code, out, err = run_main("verify", released.reference, "--root", str(tmp_path))
    assert (code, out) == (2, "")
    assert err.startswith("error: no public key: pass --key cosign.pub")


def test_another_key_verifies_nothing(released, tmp_path):
    other = make_keys(tmp_path / "other")
    code, out, _ = run_main("verify", released.reference, "--key", str(other.public), "--no-content")
    assert code == 1
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines[1:-1]] == [
        "FAIL signature",
        "FAIL sbom",
        "FAIL provenance",
        "FAIL tests",
        "FAIL tests passed",
    ]
    assert lines[-1] == "NOT verified"


def test_a_tag_pointing_at_an_unsigned_image_fails(released):
    seed_tags(released.registry, released.repo, ["v0.0.9"])
    reference = f"{released.registry.host}/{released.repo}:v0.0.9"
    code, out, _ = run_main("verify", reference, "--key", str(released.keys.public))
    assert code == 1
    assert "FAIL signature: not signed: no sha256-" in out
    assert "FAIL sbom: no https://spdx.dev/Document attestation: no attestations at all" in out


@contextmanager
def lying_attestation(released, ref, predicate_type: str, change):
    """The release's ``.att`` replaced by one whose ``predicate_type`` statement is changed by
    ``change`` and signed again with the release key by securesystemslib (a valid signature over
    a lie); the original manifest is put back afterwards."""
    from imgforge.signing import oci

    digest = released.result.digest
    tag = f"sha256-{digest[7:]}.att"
    s = released.registry.admin(released.repo)
    base = f"{released.registry.url}/v2/{released.repo}"
    original = s.get(f"{base}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}, timeout=10).content
    private = ref.decrypt_cosign_key(released.keys.private.read_bytes(), released.keys.password)
    layers = []
    for desc in json.loads(original)["layers"]:
        envelope = json.loads(s.get(f"{base}/blobs/{desc['digest']}", timeout=10).content)
        statement = json.loads(ref.verify_dsse(json.dumps(envelope).encode(), released.keys.public.read_bytes()))
        if statement["predicateType"] == predicate_type:
            change(statement["predicate"])
        signed = ref.sign_dsse(envelope["payloadType"], json.dumps(statement).encode(), private)
        layers.append(oci.attestation_layer(signed, statement["predicateType"]))
    artifact = oci.cosign_artifact(layers)
    for blob_digest, data in artifact.blobs().items():
        r = s.post(f"{base}/blobs/uploads/", timeout=10)
        location = r.headers["Location"]
        s.put(location, params={"digest": blob_digest}, data=data, timeout=10).raise_for_status()
    s.put(f"{base}/manifests/{tag}", data=artifact.manifest, headers={"Content-Type": OCI_MANIFEST}, timeout=10)
    try:
        yield
    finally:
        s.put(f"{base}/manifests/{tag}", data=original, headers={"Content-Type": OCI_MANIFEST}, timeout=10)


def test_an_sbom_that_lies_about_a_file_fails_the_content_fact(released, ref):
    def change(sbom):
        entry = next(f for f in sbom["files"] if f["fileName"] == "./usr/share/nginx/html/index.html")
        entry["checksums"] = [{**c, "checksumValue": "0" * len(c["checksumValue"])} for c in entry["checksums"]]

    with lying_attestation(released, ref, "https://spdx.dev/Document", change):
        code, out, _ = run_main("verify", released.reference, "--key", str(released.keys.public))
    assert code == 1
    assert "ok   sbom: https://spdx.dev/Document attestation verified" in out  # validly signed...
    assert "FAIL sbom content: SBOM and image differ (different bytes: usr/share/nginx/html/index.html)" in out


def test_a_failed_check_in_the_test_attestation_fails_the_verdict(released, ref):
    def change(report):
        report["checks"][0]["ok"] = False

    with lying_attestation(released, ref, "https://imgforge.io/attestation/test-report/v1", change):
        code, out, _ = run_main("verify", released.reference, "--key", str(released.keys.public), "--no-content")
    assert code == 1
    assert "ok   tests: " in out
    assert "FAIL tests passed: " in out


def test_sign_without_a_key_says_so(released, monkeypatch):
    monkeypatch.delenv("IMGFORGE_SIGNING_KEY", raising=False)
    code, out, err = run_main("sign", released.reference)
    assert (code, out) == (2, "")
    assert err == "error: nothing to sign with: set IMGFORGE_SIGNING_KEY to a cosign.key (docs/signing.md)\n"
