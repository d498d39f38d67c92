"""Attacks on the proof that travels with an image, each made for real in the registry against a
signed release: a signature moved to another repository or another digest, an attestation layer
that claims to be huge, a tag re-pointed after signing. Each must fail its fact; none may pass."""

from __future__ import annotations

import json

import pytest

from imgforge import proof
from imgforge.registry import Credentials, RegistryClient
from tests.conftest import run_main
from tests.proof.conftest import basic_registry, ref, registry_environ, released  # noqa: F401  # fixtures
from tests.registry.fronts import Front, json_answer

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.slow]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _client(released) -> RegistryClient:
    reg = released.registry
    return RegistryClient(reg.host, credentials=Credentials(reg.user, reg.password, "test"))


def _copy(client: RegistryClient, src: str, dst: str, reference: str, tag: str | None = None) -> str:
    """Manifest ``reference`` of ``src`` (and its blobs, mounted) into ``dst`` under ``tag`` or its digest."""
    data, media_type, digest = client.get_manifest(src, reference)
    doc = json.loads(data)
    for desc in [doc["config"], *doc["layers"]]:
        assert client.mount_blob(dst, desc["digest"], src) == "mounted"
    client.put_manifest(dst, tag or digest, data, media_type)
    return digest


def test_a_signature_copied_to_another_repository_does_not_verify_there(released, monkeypatch):
    registry_environ(monkeypatch, released.registry, released.tmp)
    digest, other = released.result.digest, f"{released.repo}-copy"
    with _client(released) as client:
        _copy(client, released.repo, other, digest, "v0.0.2")
        for kind in ("sig", "att"):
            _copy(client, released.repo, other, f"sha256-{digest[7:]}.{kind}", f"sha256-{digest[7:]}.{kind}")
    key = proof.verifying_key(released.keys.public)
    report = proof.verify_reference(f"{released.registry.host}/{other}:v0.0.2", key, content=False)
    signature = report.fact("signature")
    assert signature is not None
    assert not signature.ok
    assert f"for {released.registry.host}/{released.repo}, not {released.registry.host}/{other}" in signature.detail


def test_a_signature_moved_to_another_digest_does_not_verify_it(released, monkeypatch, docker_client):
    """The signature and attestations of the release, put under the tags of another image."""
    import io

    registry_environ(monkeypatch, released.registry, released.tmp)
    reference = f"{released.registry.host}/{released.repo}:impostor"
    dockerfile = f"FROM {released.reference}\nLABEL impostor=1\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=reference, rm=True)
    auth = {"username": released.registry.user, "password": released.registry.password}
    try:
        for line in docker_client.api.push(reference, auth_config=auth, stream=True, decode=True):
            assert "error" not in line, line
        with _client(released) as client:
            impostor = client.get_manifest(released.repo, "impostor")[2]
            for kind in ("sig", "att"):
                data, media_type, _ = client.get_manifest(released.repo, f"sha256-{released.result.digest[7:]}.{kind}")
                client.put_manifest(released.repo, f"sha256-{impostor[7:]}.{kind}", data, media_type)
    finally:
        docker_client.images.remove(reference, force=True)
    code, out, _ = run_main("verify", reference, "--key", str(released.keys.public), "--no-content")
    assert code == 1
    assert f"FAIL signature: no valid signature by key sha256:{released.keys.fingerprint[:16]}" in out
    assert f"the signature is valid but for {released.result.digest}, not {impostor}" in out
    assert "FAIL sbom: no verified https://spdx.dev/Document attestation (" in out
    assert f"no subject has digest {impostor}" in out


def test_an_attestation_layer_claiming_to_be_huge_is_never_downloaded(released, monkeypatch):
    digest = released.result.digest
    att = f"sha256-{digest[7:]}.att"
    front = Front(released.registry.url)
    blob_gets: list[str] = []
    with _client(released) as client:
        data = client.get_manifest(released.repo, att)[0]
    doc = json.loads(data)
    for layer in doc["layers"]:
        layer["size"] = 64 << 20  # 64 MiB, says the manifest: over the 16 MiB payload cap, under the blob cap

    def intercept(request):
        if request.method == "GET" and request.path.endswith(f"/manifests/{att}"):
            return json_answer(200, doc, {"Content-Type": OCI_MANIFEST})
        if request.method == "GET" and "/blobs/" in request.path:
            blob_gets.append(request.path)
        return None

    front.intercept = intercept
    registry_environ(monkeypatch, released.registry, released.tmp, host=front.host)
    try:
        key = proof.verifying_key(released.keys.public)
        report = proof.verify_reference(f"{front.host}/{released.repo}@{digest}", key, content=False)
    finally:
        front.stop()
    failed = [f.name for f in report.facts if not f.ok]
    assert failed[-4:] == ["sbom", "provenance", "tests", "tests passed"]
    # (the signature names the registry's own host, not this front's: a different reference)
    dsse_layers = {layer["digest"] for layer in doc["layers"]}
    assert not [p for p in blob_gets if p.rsplit("/", 1)[-1] in dsse_layers]


def _plant_att(client: RegistryClient, released, junk: bytes, count: int) -> bytes:
    """Put ``count`` DSSE layers of ``junk`` before the release's own in its ``.att``; the original back."""
    import hashlib

    from imgforge.signing import oci

    att = f"sha256-{released.result.digest[7:]}.att"
    original, media_type, _ = client.get_manifest(released.repo, att)
    digest = f"sha256:{hashlib.sha256(junk).hexdigest()}"
    client.upload_blob(released.repo, digest, len(junk), junk)
    doc = json.loads(original)
    planted = {"mediaType": oci.DSSE_MEDIA_TYPE, "digest": digest, "size": len(junk)}
    doc["layers"] = [planted] * count + doc["layers"]
    client.put_manifest(released.repo, att, json.dumps(doc).encode(), media_type)
    return original


def _verify_counting_blobs(released, monkeypatch) -> tuple[proof.TrustReport, list[int]]:
    """Verify through a front that notes the size of every blob the registry sends."""
    front = Front(released.registry.url)
    sizes: list[int] = []

    def intercept(request):
        if request.method == "GET" and "/blobs/" in request.path:
            r = front.forward(request)
            sizes.append(len(r.content))
            return r.status_code, front.relayed(request, r), r.content
        return None

    front.intercept = intercept
    registry_environ(monkeypatch, released.registry, released.tmp, host=front.host)
    try:
        key = proof.verifying_key(released.keys.public)
        return proof.verify_reference(
            f"{front.host}/{released.repo}@{released.result.digest}", key, content=False
        ), sizes
    finally:
        front.stop()


def test_an_attestation_manifest_of_thousands_of_layers_is_read_only_up_to_the_layer_cap(released, monkeypatch):
    """A planted ``.att`` of 3000 DSSE layers (before the genuine three): 16 are read, then the facts fail."""
    from imgforge.proof import check

    att = f"sha256-{released.result.digest[7:]}.att"
    junk = b'{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[]}'
    with _client(released) as client:
        original = _plant_att(client, released, junk, 3000)
        try:
            report, sizes = _verify_counting_blobs(released, monkeypatch)
        finally:
            client.put_manifest(released.repo, att, original, OCI_MANIFEST)
    assert len(sizes) <= check.MAX_LAYERS + 1  # (+1: the .sig layer)
    for name in ("sbom", "provenance", "tests"):
        fact = report.fact(name)
        assert fact is not None
        assert not fact.ok
        assert f"more than {check.MAX_LAYERS} attestation layers: the rest were not read" in fact.detail
        assert "\n" not in fact.detail


def test_attestation_blobs_read_in_one_verification_stay_within_the_byte_budget(released, monkeypatch):
    """Fifteen layers of the largest accepted blob (16 MiB each, 240 MiB in all): at most the budget is read."""
    from imgforge.proof import check

    att = f"sha256-{released.result.digest[7:]}.att"
    junk = b"{" + b" " * (check.MAX_PAYLOAD - 2) + b"}"
    with _client(released) as client:
        original = _plant_att(client, released, junk, 15)
        try:
            report, sizes = _verify_counting_blobs(released, monkeypatch)
        finally:
            client.put_manifest(released.repo, att, original, OCI_MANIFEST)
    assert sum(sizes) <= check.MAX_TOTAL
    assert 0 < sizes.count(len(junk)) <= check.MAX_TOTAL // check.MAX_PAYLOAD
    for name in ("sbom", "provenance", "tests"):
        fact = report.fact(name)
        assert fact is not None
        assert not fact.ok
        assert f"the {check.MAX_TOTAL >> 20} MiB read budget for signatures and attestations is spent" in fact.detail
