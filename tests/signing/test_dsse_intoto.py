"""DSSE envelopes and in-toto statements, checked by securesystemslib, in-toto-attestation and the
DSSE specification's own test vectors."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.json_format import ParseError
from securesystemslib.exceptions import VerificationError

from imgforge.errors import FormatError, SignatureInvalid
from imgforge.signing import dsse, intoto, keys

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REPO = "registry.example.invalid/sites/example"
T0 = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
REPORT = {
    "site": "example",
    "image": f"{REPO}:v1.2.3",
    "image_id": "sha256:" + "12" * 32,
    "ok": True,
    "checks": [
        {"name": "image config", "ok": True, "detail": "USER 100:101, port 8080"},
        {"name": "hidden files", "ok": True, "detail": "6 probes answered 404"},
    ],
}


# --- PAE: the DSSE specification's vectors --------------------------------------------------------


def test_pae_matches_the_spec_vectors_and_their_signatures_verify_over_it(data):
    vectors = data.json("dsse-testvectors.json")
    key_a = Ed25519PublicKey.from_public_bytes(bytes.fromhex(vectors["key_A_ed25519_public"]))
    for v in vectors["vectors"]:
        body = (
            base64.urlsafe_b64decode(v["payload"])
            if "-" in v["payload"] or "_" in v["payload"]
            else base64.b64decode(v["payload"])
        )
        encoded = dsse.pae(v["payloadType"], body)
        assert encoded == bytes.fromhex(v["pae"]), v["id"]
        sig = v["sig"].replace("-", "+").replace("_", "/")
        key_a.verify(base64.b64decode(sig), encoded)  # the spec's signer signed exactly these bytes


def test_pae_counts_bytes_not_characters():
    assert dsse.pae("ä", b"") == "DSSEv1 2 ä 0 ".encode()


# --- envelopes: imgforge signs, securesystemslib verifies, and the other way round ---------------


def test_securesystemslib_verifies_imgforge_envelope(keypair, ref):
    payload = b'{"_type":"https://in-toto.io/Statement/v1"}'
    envelope = dsse.dsse_envelope(dsse.INTOTO_PAYLOAD_TYPE, payload, keypair.private)
    assert ref.verify_dsse(envelope, keypair.public_pem) == payload


def test_envelope_json_is_cosigns_shape(keypair):
    envelope = dsse.dsse_envelope(dsse.INTOTO_PAYLOAD_TYPE, b"{}", keypair.private)
    doc = json.loads(envelope)
    assert list(doc) == ["payloadType", "payload", "signatures"]
    assert doc["payload"] == "e30="
    assert list(doc["signatures"][0]) == ["keyid", "sig"]
    assert doc["signatures"][0]["keyid"] == ""  # cosign's key-pair attestations carry no keyid


def test_securesystemslib_verifies_with_a_keyid(keypair, ref):
    fp = keys.fingerprint(keypair.public)
    envelope = dsse.dsse_envelope(dsse.INTOTO_PAYLOAD_TYPE, b"{}", keypair.private, keyid=fp)
    assert ref.verify_dsse(envelope, keypair.public_pem, keyid=fp) == b"{}"


def test_imgforge_verifies_securesystemslib_envelope(keypair, ref):
    envelope = ref.sign_dsse(dsse.INTOTO_PAYLOAD_TYPE, b'{"a":1}', keypair.private)
    assert dsse.verify_envelope(envelope, keypair.public) == b'{"a":1}'


def test_url_safe_base64_is_accepted_as_the_spec_requires(keypair):
    doc = json.loads(dsse.dsse_envelope(dsse.INTOTO_PAYLOAD_TYPE, b"\xfb\xff\xbf>?", keypair.private))
    doc["payload"] = base64.urlsafe_b64encode(b"\xfb\xff\xbf>?").decode()
    assert "-" in doc["payload"] or "_" in doc["payload"]
    assert dsse.verify_envelope(json.dumps(doc).encode(), keypair.public) == b"\xfb\xff\xbf>?"


def test_a_payload_with_extra_padding_is_not_the_signed_payload(keypair):
    """Python's decoder would ignore padding after a complete quantum; Go's refuses it, and so do we."""
    doc = json.loads(dsse.dsse_envelope(dsse.INTOTO_PAYLOAD_TYPE, b'{"ok":11}', keypair.private))
    assert not doc["payload"].endswith("=")  # 9 bytes: three whole quanta, no padding of its own
    doc["payload"] += "="
    with pytest.raises(FormatError, match=r"payload: not canonical base64"):
        dsse.verify_envelope(json.dumps(doc).encode(), keypair.public)


def test_tampered_envelope_payload_fails_both(keypair, ref):
    doc = json.loads(dsse.dsse_envelope(dsse.INTOTO_PAYLOAD_TYPE, b'{"ok":true}', keypair.private))
    doc["payload"] = base64.b64encode(b'{"ok":false}').decode()
    tampered = json.dumps(doc).encode()
    with pytest.raises(SignatureInvalid, match=r"no signature verifies"):
        dsse.verify_envelope(tampered, keypair.public)
    with pytest.raises(VerificationError):
        ref.verify_dsse(tampered, keypair.public_pem)


def test_swapped_payload_type_fails(keypair):
    doc = json.loads(dsse.dsse_envelope(dsse.INTOTO_PAYLOAD_TYPE, b"{}", keypair.private))
    doc["payloadType"] = "application/vnd.example.other+json"
    with pytest.raises(SignatureInvalid, match=r"no signature verifies"):
        dsse.verify_envelope(json.dumps(doc).encode(), keypair.public, "application/vnd.example.other+json")
    with pytest.raises(SignatureInvalid, match=r"expected 'application/vnd.in-toto\+json'"):
        dsse.verify_envelope(json.dumps(doc).encode(), keypair.public)


def test_wrong_key_fails_both(keypair, ref):
    other = ec.generate_private_key(ec.SECP256R1())
    envelope = dsse.dsse_envelope(dsse.INTOTO_PAYLOAD_TYPE, b"{}", other)
    with pytest.raises(SignatureInvalid):
        dsse.verify_envelope(envelope, keypair.public)
    with pytest.raises(VerificationError):
        ref.verify_dsse(envelope, keypair.public_pem)


@pytest.mark.parametrize(
    "bad",
    [
        b"nope",
        b"[]",
        b'{"payloadType":"t","payload":"e30=","signatures":{}}',
        b'{"payloadType":"t","payload":"!!","signatures":[]}',
        b'{"payloadType":"t","payload":"e30=","signatures":[{"sig":5}]}',
    ],
)
def test_malformed_envelopes_are_format_errors(bad, keypair):
    with pytest.raises(FormatError):
        dsse.verify_envelope(bad, keypair.public, "t")


def test_envelope_without_signatures_fails(keypair):
    with pytest.raises(SignatureInvalid, match=r"no signatures"):
        dsse.verify_envelope(b'{"payloadType":"t","payload":"e30=","signatures":[]}', keypair.public, "t")


# --- statements and predicates, validated by in-toto-attestation ---------------------------------


def provenance() -> dict:
    return intoto.provenance_predicate(
        builder_id=intoto.BUILDER_ID,
        builder_version={"imgforge": "0.1.0"},
        external_parameters={"site": "example", "catalog_commit": "a" * 40, "templates_digest": DIGEST},
        internal_parameters={"profile": "prebuilt"},
        resolved_dependencies=[
            intoto.resource_descriptor(uri="pkg:docker/imgforge/nginx-debian@bookworm", digest={"sha256": "ef" * 32}),
            intoto.resource_descriptor(uri="git+https://git.example.invalid/site.git", digest={"gitCommit": "b" * 40}),
        ],
        invocation_id="https://ci.example.invalid/jobs/42",
        started_on=T0,
        finished_on=T0 + timedelta(minutes=2),
    )


@pytest.mark.parametrize(
    ("predicate_type", "predicate"),
    [
        (intoto.SLSA_PROVENANCE_PREDICATE_TYPE, provenance()),
        (intoto.TEST_REPORT_PREDICATE_TYPE, intoto.test_report_predicate(REPORT, tool_version="0.1.0", tested_on=T0)),
    ],
)
def test_statements_in_envelopes_pass_the_reference_checks(predicate_type, predicate, keypair, ref):
    stmt = intoto.statement([intoto.subject(REPO, DIGEST)], predicate_type, predicate)
    envelope = intoto.attestation_envelope(stmt, keypair.private)
    payload = ref.verify_dsse(envelope, keypair.public_pem)
    doc = ref.validate_statement(payload)
    assert doc["subject"] == [{"name": REPO, "digest": {"sha256": "ab" * 32}}]
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == predicate_type
    assert intoto.parse_statement(dsse.verify_envelope(envelope, keypair.public), predicate_type, DIGEST) == doc


def test_provenance_is_slsa_v1(ref):
    predicate = provenance()
    ref.validate_slsa_provenance(predicate)
    assert predicate["runDetails"]["metadata"] == {
        "invocationId": "https://ci.example.invalid/jobs/42",
        "startedOn": "2025-03-04T05:06:07Z",
        "finishedOn": "2025-03-04T05:08:07Z",
    }
    assert predicate["buildDefinition"]["buildType"] == intoto.BUILD_TYPE


def test_reference_provenance_check_can_fail(ref):
    with pytest.raises(ParseError):
        ref.validate_slsa_provenance({"buildDefinition": {"buildType": "x", "extraField": 1}})
    with pytest.raises(ValueError, match=r"builder.id"):
        ref.validate_slsa_provenance({"buildDefinition": {"buildType": "x"}, "runDetails": {"builder": {}}})


def test_minimal_provenance_leaves_optional_fields_out(ref):
    predicate = intoto.provenance_predicate(builder_id="https://b.example/", external_parameters={"site": "s"})
    assert predicate == {
        "buildDefinition": {"buildType": intoto.BUILD_TYPE, "externalParameters": {"site": "s"}},
        "runDetails": {"builder": {"id": "https://b.example/"}},
    }
    ref.validate_slsa_provenance(predicate)


def test_test_report_predicate_keeps_every_check_and_recomputes_passed():
    predicate = intoto.test_report_predicate(
        {
            **REPORT,
            "ok": True,
            "checks": [*REPORT["checks"], {"name": "stop", "ok": False, "detail": "no exit after SIGQUIT"}],
        }
    )
    assert predicate["passed"] is False  # the input said ok: true; the checks say otherwise
    assert [c["name"] for c in predicate["checks"]] == ["image config", "hidden files", "stop"]
    assert predicate["checks"][2] == {"name": "stop", "ok": False, "detail": "no exit after SIGQUIT"}
    assert predicate["imageId"] == REPORT["image_id"]
    assert predicate["site"] == "example"


@pytest.mark.parametrize(
    "report",
    [
        {"checks": []},
        {"checks": [{"name": "x", "ok": "yes", "detail": ""}]},
        {"checks": [{"name": "", "ok": True, "detail": ""}]},
        {},
    ],
)
def test_test_report_without_proper_checks_is_refused(report):
    with pytest.raises(FormatError):
        intoto.test_report_predicate(report)


def test_statement_needs_subjects_with_hex_digests():
    with pytest.raises(FormatError):
        intoto.statement([], "t", {})
    with pytest.raises(FormatError):
        intoto.statement([{"name": "x", "digest": {"sha256": "XYZ"}}], "t", {"a": 1})
    with pytest.raises(FormatError):
        intoto.resource_descriptor(name="only a name")


def test_parse_statement_refuses_another_digest_or_type(keypair):
    stmt = intoto.statement([intoto.subject(REPO, DIGEST)], intoto.SPDX_PREDICATE_TYPE, {"spdxVersion": "SPDX-2.3"})
    payload = intoto.statement_bytes(stmt)
    with pytest.raises(FormatError, match=f"no subject has digest {OTHER}"):
        intoto.parse_statement(payload, intoto.SPDX_PREDICATE_TYPE, OTHER)
    with pytest.raises(FormatError, match=r"predicateType"):
        intoto.parse_statement(payload, intoto.TEST_REPORT_PREDICATE_TYPE, DIGEST)


def test_statement_bytes_are_canonical():
    a = intoto.statement([intoto.subject(REPO, DIGEST)], "t", {"b": 1, "a": {"d": 2, "c": 3}})
    b = intoto.statement([intoto.subject(REPO, DIGEST)], "t", {"a": {"c": 3, "d": 2}, "b": 1})
    assert intoto.statement_bytes(a) == intoto.statement_bytes(b)
    assert intoto.statement_bytes(a).startswith(b'{"_type":"https://in-toto.io/Statement/v1","predicate":')
