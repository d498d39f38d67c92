"""An independent reading of cosign's published formats, for the interop tests only.

Written from the formats' documentation and cosign's source, without importing anything from
imgforge: scrypt from ``hashlib`` (OpenSSL), the secretbox from PyNaCl's ``SecretBox``, ECDSA
from ``cryptography``, DSSE from ``securesystemslib`` (the Python implementation the DSSE
authors maintain), statement shapes from ``in-toto-attestation``'s protobuf bindings. If imgforge
and this module agree, and both agree with the artefacts cosign itself wrote (``data/``), the
formats are right rather than merely self-consistent.
"""

from __future__ import annotations

import base64
import hashlib
import json

import nacl.secret
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signature, SSlibKey

COSIGN_PEM_LABELS = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")


def pem_body(pem: bytes, label: str) -> bytes:
    text = pem.decode("ascii")
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    assert begin in text, f"no {label} block"
    assert end in text, f"no {label} block"
    return base64.b64decode("".join(text.split(begin, 1)[1].split(end, 1)[0].split()))


def decrypt_cosign_key(pem: bytes, password: bytes) -> ec.EllipticCurvePrivateKey:
    """cosign's LoadPrivateKey: PEM label, then go-securesystemslib ``encrypted.Decrypt``, then PKCS#8."""
    label = next(lb for lb in COSIGN_PEM_LABELS if f"-----BEGIN {lb}-----".encode() in pem)
    doc = json.loads(pem_body(pem, label))
    assert doc["kdf"]["name"] == "scrypt"
    assert doc["cipher"]["name"] == "nacl/secretbox"
    params = doc["kdf"]["params"]
    key = hashlib.scrypt(
        password,
        salt=base64.b64decode(doc["kdf"]["salt"]),
        n=params["N"],
        r=params["r"],
        p=params["p"],
        dklen=32,
        maxmem=256 * 1024 * 1024,
    )
    der = nacl.secret.SecretBox(key).decrypt(
        base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"])
    )
    private = serialization.load_der_private_key(der, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return private


def public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def verify_simple_signing(public_pem: bytes, payload: bytes, b64_signature: str, manifest_digest: str) -> dict:
    """What ``cosign verify`` checks on one layer: the signature, then the payload's claims."""
    public_key(public_pem).verify(base64.b64decode(b64_signature), payload, ec.ECDSA(hashes.SHA256()))
    doc = json.loads(payload)
    assert doc["critical"]["type"] == "cosign container image signature"
    if doc["critical"]["image"]["docker-manifest-digest"] != manifest_digest:
        raise ValueError(f"payload is for {doc['critical']['image']['docker-manifest-digest']}")
    return doc


def sslib_key(public_pem: bytes, keyid: str = "") -> SSlibKey:
    return SSlibKey(keyid, "ecdsa", "ecdsa-sha2-nistp256", {"public": public_pem.decode("ascii")})


def verify_dsse(envelope_bytes: bytes, public_pem: bytes, keyid: str = "") -> bytes:
    """securesystemslib's DSSE verification (PAE, signature, threshold 1); returns the payload."""
    envelope = Envelope.from_dict(json.loads(envelope_bytes))
    envelope.verify([sslib_key(public_pem, keyid)], 1)
    return envelope.payload


def sign_dsse(payload_type: str, payload: bytes, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """An envelope made by securesystemslib's own signer (for imgforge to verify)."""
    from securesystemslib.signer import CryptoSigner

    signer = CryptoSigner(private_key)
    envelope = Envelope(payload, payload_type, {})
    sig: Signature = envelope.sign(signer)
    assert sig.keyid
    return json.dumps(envelope.to_dict()).encode()


def validate_statement(payload: bytes) -> dict:
    """in-toto-attestation's Statement v1 validation (type, subjects with digests, predicate)."""
    doc = json.loads(payload)
    pb = json_format.ParseDict(doc, statement_pb2.Statement(), ignore_unknown_fields=False)
    Statement.copy_from_pb(pb).validate()
    return doc


def validate_slsa_provenance(predicate: dict) -> None:
    """The predicate parses strictly as SLSA Provenance v1 and carries what the spec requires."""
    pb = json_format.ParseDict(predicate, provenance_pb2.Provenance(), ignore_unknown_fields=False)
    if not pb.build_definition.build_type:
        raise ValueError("buildDefinition.buildType is required")
    if not pb.run_details.builder.id:
        raise ValueError("runDetails.builder.id is required")
