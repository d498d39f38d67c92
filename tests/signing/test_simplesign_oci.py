"""Simple-signing payloads, signatures and the ``.sig``/``.att`` images, against what cosign wrote
and against the independent reference verifier."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from imgforge.errors import FormatError, SignatureInvalid
from imgforge.signing import keys, oci, simplesign

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REPO = "registry.example.invalid:5000/sites/example"


# --- payload bytes: exactly cosign's ---------------------------------------------------------------


def test_payload_matches_sigstores_own_expected_bytes(data):
    vectors = data.json("sigstore-payload-vectors.json")
    for v in vectors["vectors"]:
        got = simplesign.simple_signing_payload(v["reference"], vectors["digest"], v["annotations"])
        assert got == v["expected"].encode(), v["desc"]


def test_payload_matches_one_cosign_signed(data):
    real = data.read("containers-image-rekor-payload")  # written by /usr/bin/cosign sign
    doc = json.loads(real)
    assert (
        simplesign.simple_signing_payload(
            doc["critical"]["identity"]["docker-reference"], doc["critical"]["image"]["docker-manifest-digest"]
        )
        == real
    )


def test_payload_escapes_like_go():
    payload = simplesign.simple_signing_payload(REPO, DIGEST, {"note": "<a&b>\u2028é"})
    assert b'"note":"\\u003ca\\u0026b\\u003e\\u2028\xc3\xa9"' in payload


@pytest.mark.parametrize("reference", ["", "Registry/UPPER", "repo:tag", "repo@" + DIGEST, "a b", "repo/", "x" * 300])
def test_payload_refuses_a_reference_that_is_not_a_repository(reference):
    with pytest.raises(FormatError, match=r"docker-reference"):
        simplesign.simple_signing_payload(reference, DIGEST)


@pytest.mark.parametrize("digest", ["", "sha256:abc", "sha512:" + "a" * 128, "SHA256:" + "A" * 64, DIGEST + "\n"])
def test_payload_refuses_a_bad_digest(digest):
    with pytest.raises(FormatError, match=r"manifest digest"):
        simplesign.simple_signing_payload(REPO, digest)


# --- signatures: imgforge signs, the reference verifies; cosign signed, imgforge verifies -----------


def test_reference_verifier_accepts_imgforge_signature(keypair, ref):
    payload = simplesign.simple_signing_payload(REPO, DIGEST)
    sig = simplesign.sign(keypair.private, payload)
    doc = ref.verify_simple_signing(keypair.public_pem, payload, sig, DIGEST)
    assert doc["critical"]["identity"]["docker-reference"] == REPO
    with pytest.raises(ValueError, match=r"^payload is for sha256:"):
        ref.verify_simple_signing(keypair.public_pem, payload, sig, OTHER)


def test_signature_is_std_base64_der(keypair):
    sig = simplesign.sign(keypair.private, b"x")
    raw = base64.b64decode(sig, validate=True)
    assert raw[0] == 0x30
    assert base64.b64encode(raw).decode() == sig


def test_signatures_made_with_a_cosign_key_verify(data):
    public = keys.load_public_key(data.read("containers-image-cosign.pub"))
    for entry in data.json("containers-image-blob-signatures.json")["signatures"]:
        simplesign.verify(public, entry["payload"].encode(), entry["signature"])


def test_cosign_signed_payload_verifies_with_the_signing_certificate_key(data):
    rekor_set = json.loads(data.read("containers-image-rekor-set"))
    body = json.loads(base64.b64decode(rekor_set["Payload"]["body"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(body["spec"]["signature"]["publicKey"]["content"]))
    public = keys.load_public_key(keys.public_key_pem(cert.public_key()))  # type: ignore[arg-type]
    payload = data.read("containers-image-rekor-payload")
    claims = simplesign.verify_simple_signing(
        public,
        payload,
        data.read("containers-image-rekor-sig").decode(),
        "sha256:fa93b01658e3a5a1686dc3ae55f170d8de487006fb53a28efcd12ab0710a2e5f",
    )
    assert claims.docker_reference == "192.168.64.2:5000/test-repo-2100826901021538654/alpine"
    assert claims.optional is None


def test_verify_simple_signing_round_trip(keypair):
    payload = simplesign.simple_signing_payload(REPO, DIGEST, {"site": "example"})
    claims = simplesign.verify_simple_signing(
        keypair.public, payload, simplesign.sign(keypair.private, payload), DIGEST, REPO
    )
    assert (claims.manifest_digest, claims.optional) == (DIGEST, {"site": "example"})


# --- negative: every way a signature must fail -----------------------------------------------------


def test_tampered_payload_fails_both_verifiers(keypair, ref):
    payload = simplesign.simple_signing_payload(REPO, DIGEST)
    sig = simplesign.sign(keypair.private, payload)
    tampered = payload.replace(b"ab", b"cd", 1)
    with pytest.raises(SignatureInvalid):
        simplesign.verify_simple_signing(keypair.public, tampered, sig, OTHER)
    with pytest.raises(InvalidSignature):
        ref.verify_simple_signing(keypair.public_pem, tampered, sig, OTHER)


def test_wrong_key_fails(keypair, data):
    payload = simplesign.simple_signing_payload(REPO, DIGEST)
    sig = simplesign.sign(keypair.private, payload)
    cosign_key = keys.load_public_key(data.read("containers-image-cosign.pub"))
    with pytest.raises(SignatureInvalid, match=r"does not verify"):
        simplesign.verify_simple_signing(cosign_key, payload, sig, DIGEST)


def test_valid_signature_for_another_digest_fails(keypair):
    payload = simplesign.simple_signing_payload(REPO, OTHER)
    sig = simplesign.sign(keypair.private, payload)
    with pytest.raises(SignatureInvalid, match=f"valid but for {OTHER}, not {DIGEST}"):
        simplesign.verify_simple_signing(keypair.public, payload, sig, DIGEST)


def test_valid_signature_for_another_repository_fails_when_asked(keypair):
    payload = simplesign.simple_signing_payload("registry.example.invalid/other", DIGEST)
    sig = simplesign.sign(keypair.private, payload)
    with pytest.raises(SignatureInvalid, match=r"valid but for registry.example.invalid/other"):
        simplesign.verify_simple_signing(keypair.public, payload, sig, DIGEST, REPO)


@pytest.mark.parametrize(
    "mangle", [lambda s: s + "=", lambda s: s[:-1], lambda s: "&" + s, lambda s: s.replace("+", "-").replace("/", "_")]
)
def test_non_canonical_signature_encodings_fail(keypair, mangle):
    payload = b"{}"
    # Signatures of every length: with and without padding (a DER signature is 70 to 72 bytes).
    sigs = [simplesign.sign(keypair.private, payload) for _ in range(64)]
    sig = next(s for s in sigs if ("+" in s or "/" in s) and not s.endswith("="))
    with pytest.raises(SignatureInvalid):
        simplesign.verify(keypair.public, payload, mangle(sig))


def test_valid_signature_over_something_else_than_a_payload_fails(data):
    public = keys.load_public_key(data.read("containers-image-cosign.pub"))
    entry = data.json("containers-image-blob-signatures.json")["signatures"][1]  # a real signature over "{}"
    with pytest.raises(FormatError, match=r"critical.type"):
        simplesign.verify_simple_signing(public, b"{}", entry["signature"], DIGEST)


# --- the .sig / .att images -------------------------------------------------------------------------


def test_tags_are_cosigns():
    assert oci.signature_tag(DIGEST) == f"sha256-{'ab' * 32}.sig"
    assert oci.attestation_tag(DIGEST) == f"sha256-{'ab' * 32}.att"
    with pytest.raises(FormatError):
        oci.signature_tag("latest")


def test_signature_image_is_byte_identical_to_one_cosign_pushed(data):
    real = data.json("cosign-v1.13.1-sig-manifest.json")
    payload = simplesign.simple_signing_payload(real["docker_reference"], real["signed_digest"])
    assert len(payload) == real["payload_size"]
    assert oci.sha256_digest(payload) == real["payload_digest"]
    artifact = oci.cosign_artifact([oci.signature_layer(payload, real["signature"])], created=real["config_created"])
    assert artifact.config == real["config"].encode()
    assert artifact.manifest == real["manifest"].encode()
    assert artifact.manifest_digest == real["registry_manifest_digest"]  # what Docker Hub answered
    assert oci.signature_tag(real["signed_digest"]) == real["tag"]
    assert artifact.blobs() == {artifact.config_digest: artifact.config, real["payload_digest"]: payload}


def test_signature_image_defaults_to_the_zero_creation_time_and_is_deterministic(keypair):
    payload = simplesign.simple_signing_payload(REPO, DIGEST)
    layer = oci.signature_layer(payload, simplesign.sign(keypair.private, payload))
    first, second = oci.cosign_artifact([layer]), oci.cosign_artifact([layer])
    assert first.manifest == second.manifest
    assert first.config == second.config
    assert json.loads(first.config)["created"] == "0001-01-01T00:00:00Z"


def test_attestation_layer_annotations_are_cosign_attests():
    artifact = oci.cosign_artifact(
        [
            oci.attestation_layer(b'{"payloadType":"x"}', "https://slsa.dev/provenance/v1"),
            oci.attestation_layer(b'{"payloadType":"y"}', "https://spdx.dev/Document"),
        ]
    )
    manifest = json.loads(artifact.manifest)
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.dsse.envelope.v1+json"] * 2
    assert manifest["layers"][0]["annotations"] == {
        "dev.cosignproject.cosign/signature": "",
        "predicateType": "https://slsa.dev/provenance/v1",
    }
    # Go's key order (sorted map keys)
    assert b'"annotations":{"dev.cosignproject.cosign/signature":"","predicateType"' in artifact.manifest
    config = json.loads(artifact.config)
    assert config["rootfs"]["diff_ids"] == [layer.digest for layer in artifact.layers]
    assert config["history"] == [{"created": "0001-01-01T00:00:00Z"}] * 2


def test_layer_annotations_are_written_with_sorted_keys_like_a_go_map():
    artifact = oci.cosign_artifact([oci.Layer("application/x", b"x", {"z": "1", "a": "2"})])
    assert b'"annotations":{"a":"2","z":"1"}' in artifact.manifest


def test_read_layers_round_trip_and_refuses_hostile_manifests(keypair):
    payload = simplesign.simple_signing_payload(REPO, DIGEST)
    sig = simplesign.sign(keypair.private, payload)
    artifact = oci.cosign_artifact([oci.signature_layer(payload, sig)])
    (layer,) = oci.read_layers(artifact.manifest)
    assert (layer.media_type, layer.digest, layer.size) == (
        oci.SIMPLE_SIGNING_MEDIA_TYPE,
        oci.sha256_digest(payload),
        len(payload),
    )
    assert layer.annotations[oci.SIGNATURE_ANNOTATION] == sig
    for bad, message in [
        (b"[]", "layers"),
        (b'{"layers":[{"mediaType":"x","size":-1,"digest":"' + DIGEST.encode() + b'"}]}', "size"),
        (b'{"layers":[{"mediaType":"x","size":1,"digest":"sha256:../../etc"}]}', "digest"),
        (
            b'{"layers":[{"mediaType":"x","size":1,"digest":"' + DIGEST.encode() + b'","annotations":{"a":1}}]}',
            "annotations",
        ),
    ]:
        with pytest.raises(FormatError, match=message):
            oci.read_layers(bad)


def test_cosign_artifact_needs_a_layer():
    with pytest.raises(FormatError):
        oci.cosign_artifact([])
