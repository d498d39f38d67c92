"""cosign's simple-signing payload and the ECDSA signatures over it.

``cosign sign`` signs a small JSON document naming the image by repository and manifest digest
(sigstore's ``pkg/signature/payload``, the "containers-signature" JSON format that containers/image
also verifies)::

    {"critical":{"identity":{"docker-reference":"<repository>"},
                 "image":{"docker-manifest-digest":"sha256:<hex>"},
                 "type":"cosign container image signature"},
     "optional":<annotations or null>}

It is written with Go's ``json.Marshal``: struct fields in that order, no spaces, ``optional`` is
``null`` when there are no annotations and a key-sorted object otherwise. The signature is ECDSA
P-256 over SHA-256 of those bytes, ASN.1 DER, standard base64, as in the layer annotation
``dev.cosignproject.cosign/signature``. A verifier must check both the signature and that the
payload's ``docker-manifest-digest`` is the digest it is about to run: a valid signature for
another image proves nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from imgforge.errors import FormatError, SignatureInvalid
from imgforge.signing._json import go_json, sorted_map
from imgforge.signing.keys import PrivateKey, PublicKey
from imgforge.signing.oci import digest_hex

SIGNATURE_TYPE = "cosign container image signature"

# A repository name as the distribution reference grammar defines it (domain[:port]/path), with no
# tag and no digest: what go-containerregistry's ``Repository.Name()`` gives cosign.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"(?:{_DOMAIN}/)?{_PATH}(?:/{_PATH})*")


@dataclass(frozen=True)
class SimpleSigningClaims:
    docker_reference: str
    manifest_digest: str
    optional: Mapping[str, Any] | None


def simple_signing_payload(
    docker_reference: str, manifest_digest: str, annotations: Mapping[str, Any] | None = None
) -> bytes:
    """The payload bytes ``cosign sign`` would sign for this repository and manifest digest."""
    if (
        not isinstance(docker_reference, str)
        or len(docker_reference) > 255
        or not _REPOSITORY.fullmatch(docker_reference)
    ):
        raise FormatError(
            f"docker-reference: expected a repository name without tag or digest "
            f"(registry/path), got {docker_reference!r:.80}"
        )
    digest_hex(manifest_digest)
    optional = None if annotations is None else sorted_map(dict(annotations))
    return go_json(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": optional,
        }
    )


def sign(private_key: PrivateKey, payload: bytes) -> str:
    """ECDSA-P256-SHA256 over ``payload``, DER, standard base64 (the annotation's value)."""
    return base64.b64encode(private_key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode("ascii")


def verify(public_key: PublicKey, payload: bytes, signature: str) -> None:
    """Raise SignatureInvalid unless ``signature`` (standard base64 DER) signs ``payload``."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError, TypeError) as e:
        raise SignatureInvalid("signature: not standard base64") from e
    # Python's decoder ignores padding after a complete quantum ("AAAA="); Go's, which cosign
    # uses, refuses it. One signature has one spelling: anything else is not this signature.
    if base64.b64encode(raw).decode("ascii") != signature:
        raise SignatureInvalid("signature: not canonical standard base64")
    try:
        public_key.verify(raw, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise SignatureInvalid("signature does not verify with the given public key") from e


def parse_simple_signing(payload: bytes) -> SimpleSigningClaims:
    """The claims of a simple-signing payload, checked for cosign's shape (not for trust)."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError("simple-signing payload: not JSON") from e
    critical = doc.get("critical") if isinstance(doc, dict) else None
    if not isinstance(critical, dict) or critical.get("type") != SIGNATURE_TYPE:
        raise FormatError(f"simple-signing payload: critical.type: expected {SIGNATURE_TYPE!r}")
    identity, image = critical.get("identity"), critical.get("image")
    reference = identity.get("docker-reference") if isinstance(identity, dict) else None
    digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(reference, str):
        raise FormatError("simple-signing payload: critical.identity.docker-reference missing")
    digest_hex(digest, "simple-signing payload: critical.image.docker-manifest-digest")  # type: ignore[arg-type]
    optional = doc.get("optional")
    if optional is not None and not isinstance(optional, dict):
        raise FormatError("simple-signing payload: optional: expected an object or null")
    return SimpleSigningClaims(reference, digest, optional)  # type: ignore[arg-type]


def verify_simple_signing(
    public_key: PublicKey, payload: bytes, signature: str, manifest_digest: str, docker_reference: str | None = None
) -> SimpleSigningClaims:
    """Verify the signature, then that the payload names ``manifest_digest`` (and the repository)."""
    verify(public_key, payload, signature)
    claims = parse_simple_signing(payload)
    if claims.manifest_digest != manifest_digest:
        raise SignatureInvalid(f"the signature is valid but for {claims.manifest_digest}, not {manifest_digest}")
    if docker_reference is not None and claims.docker_reference != docker_reference:
        raise SignatureInvalid(f"the signature is valid but for {claims.docker_reference}, not {docker_reference}")
    return claims
