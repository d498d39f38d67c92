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
