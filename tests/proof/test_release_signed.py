"""A signed release, checked by an independent verifier: what landed in the registry is read with
plain requests and verified with tests/signing/reference.py (cryptography, securesystemslib,
in-toto-attestation), the SBOM validated with spdx-tools and compared with the content on disk."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.slow]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SPDX = "https://spdx.dev/Document"
SLSA = "https://slsa.dev/provenance/v1"
TESTS = "https://imgforge.io/attestation/test-report/v1"


def _get(released, path: str, accept: str = OCI_MANIFEST) -> bytes:
    s = released.registry.admin(released.repo)
    r = s.get(f"{released.registry.url}/v2/{released.repo}/{path}", headers={"Accept": accept}, timeout=10)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return r.content


def _layers(released, tag: str) -> list[tuple[dict, bytes]]:
    manifest = json.loads(_get(released, f"manifests/{tag}"))
    out = []
    for desc in manifest["layers"]:
        blob = _get(released, f"blobs/{desc['digest']}", "*/*")
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == desc["digest"]
        out.append((desc, blob))
    return out


def _statements(released, ref) -> dict[str, dict]:
    digest = released.result.digest
    out = {}
    for desc, envelope in _layers(released, f"sha256-{digest[7:]}.att"):
        assert desc["mediaType"] == "application/vnd.dsse.envelope.v1+json"
        payload = ref.verify_dsse(envelope, released.keys.public.read_bytes())  # securesystemslib
        statement = ref.validate_statement(payload)  # in-toto-attestation
        assert statement["subject"] == [
            {"name": f"{released.registry.host}/{released.repo}", "digest": {"sha256": digest[7:]}}
        ]
        assert desc["annotations"]["predicateType"] == statement["predicateType"]
        out[statement["predicateType"]] = statement["predicate"]
    return out


def test_release_reports_what_it_signed(released):
    signed = released.result.signed
    digest = released.result.digest
    assert signed is not None
    assert signed["digest"] == digest
    assert signed["fingerprint"] == released.keys.fingerprint
    assert signed["signature_tag"] == f"sha256-{digest[7:]}.sig"
    assert signed["predicates"] == [SPDX, SLSA, TESTS]
    assert signed["via"] == "tag"  # distribution 2.8 has no referrers API
    assert [e.text for e in released.events if e.kind == "stage"][-2].startswith("signing ")


def test_the_signature_verifies_independently_and_names_the_digest(released, ref):
    digest = released.result.digest
    [(desc, payload)] = _layers(released, f"sha256-{digest[7:]}.sig")
    assert desc["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    doc = ref.verify_simple_signing(
        released.keys.public.read_bytes(), payload, desc["annotations"]["dev.cosignproject.cosign/signature"], digest
    )
    assert doc["critical"]["identity"]["docker-reference"] == f"{released.registry.host}/{released.repo}"
    with pytest.raises(ValueError, match="payload is for"):  # the reference checks the digest too
        ref.verify_simple_signing(
            released.keys.public.read_bytes(),
            payload,
            desc["annotations"]["dev.cosignproject.cosign/signature"],
            "sha256:" + "0" * 64,
        )


def test_three_attestations_verify_and_say_what_they_should(released, ref, tmp_path):
    predicates = _statements(released, ref)
    assert sorted(predicates) == sorted([SPDX, SLSA, TESTS])
    # provenance: SLSA v1 parsed strictly by in-toto-attestation's bindings
    ref.validate_slsa_provenance(predicates[SLSA])
    definition = predicates[SLSA]["buildDefinition"]
    assert definition["externalParameters"]["site"] == "web"
    assert definition["externalParameters"]["templatesDigest"].startswith("sha256:")
    base = next(d for d in definition["resolvedDependencies"] if d["name"] == "base image")
    assert base["uri"] == "oci://imgforge/nginx-debian:bookworm"
    assert len(base["digest"]["sha256"]) == 64
    assert predicates[SLSA]["runDetails"]["builder"]["id"] == "https://imgforge.io/builder/imgforge"
    # the test report: every check of the `imgforge test` this release ran
    tests = predicates[TESTS]
    assert tests["passed"] is True
    assert len(tests["checks"]) > 5
    assert all(c["ok"] for c in tests["checks"])
    # the SBOM: valid SPDX 2.3 (spdx-tools), the image's own dpkg packages, every content file
    path = tmp_path / "sbom.spdx.json"
    path.write_text(json.dumps(predicates[SPDX]), encoding="utf-8")
    assert [m.validation_message for m in validate_full_spdx_document(parse_file(str(path)))] == []
    purls = [r["referenceLocator"] for p in predicates[SPDX]["packages"] for r in p.get("externalRefs", [])]
    assert any(p.startswith("pkg:deb/debian/nginx") for p in purls), purls[:8]
    assert any(p.startswith("pkg:deb/debian/libc6@") for p in purls)
    files = {
        f["fileName"]: next(c["checksumValue"] for c in f["checksums"] if c["algorithm"] == "SHA256")
        for f in predicates[SPDX]["files"]
    }
    on_disk = {
        f"./usr/share/nginx/html/{p.relative_to(released.content).as_posix()}": hashlib.sha256(
            p.read_bytes()
        ).hexdigest()
        for p in released.content.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    assert on_disk
    assert {k: files.get(k) for k in on_disk} == on_disk


def test_the_private_key_and_password_appear_nowhere_in_the_registry(released):
    digest = released.result.digest
    secret_bits = [released.keys.password, released.keys.private.read_bytes().split(b"\n")[1][:40]]
    for tag in (f"sha256-{digest[7:]}.sig", f"sha256-{digest[7:]}.att"):
        blobs = [_get(released, f"manifests/{tag}")] + [b for _, b in _layers(released, tag)]
        for blob in blobs:
            for bit in secret_bits:
                assert bit not in blob
                assert base64.b64encode(bit) not in blob
