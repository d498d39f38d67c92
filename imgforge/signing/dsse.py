"""DSSE envelopes (Dead Simple Signing Envelope), the wrapper of every cosign attestation.

The signature covers the pre-authentication encoding, never the bare payload, so a signed body
cannot be replayed under another payload type (DSSE ``protocol.md``)::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

where LEN is the byte length in ASCII decimal and ``type`` is UTF-8. The envelope is JSON with the
body in standard base64, as go-securesystemslib (and so ``cosign attest``) writes it::

    {"payloadType":"application/vnd.in-toto+json","payload":"<b64>","signatures":[{"keyid":"","sig":"<b64>"}]}

cosign leaves ``keyid`` empty for key-pair signatures; readers accept standard or URL-safe base64,
as the specification requires.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from imgforge.errors import FormatError, SignatureInvalid
from imgforge.signing._json import go_json
from imgforge.signing.keys import PrivateKey, PublicKey
from imgforge.signing.simplesign import sign, verify

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes = field(repr=False)
    signatures: tuple[tuple[str, str], ...]  # (keyid, standard-base64 signature)


def pae(payload_type: str, body: bytes) -> bytes:
    """The bytes a DSSE signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(body), body)


def dsse_envelope(payload_type: str, payload_bytes: bytes, private_key: PrivateKey, keyid: str = "") -> bytes:
    """A one-signature envelope over ``payload_bytes``, serialized as cosign serializes it."""
    if not payload_type:
        raise FormatError("payloadType: must not be empty")
    sig = sign(private_key, pae(payload_type, payload_bytes))
    return go_json(
        {
            "payloadType": payload_type,
            "payload": base64.b64encode(payload_bytes).decode("ascii"),
            "signatures": [{"keyid": keyid, "sig": sig}],
        }
    )


def parse_envelope(data: bytes, source: str = "envelope") -> Envelope:
    """An envelope's fields, decoded; nothing is trusted until ``verify_envelope``."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{source}: not JSON") from e
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("payloadType"), str)
        or not isinstance(doc.get("payload"), str)
        or not isinstance(doc.get("signatures"), list)
    ):
        raise FormatError(f"{source}: expected payloadType, payload and signatures")
    sigs = []
    for i, entry in enumerate(doc["signatures"]):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sig"), str)
            or not isinstance(entry.get("keyid", ""), str)
        ):
            raise FormatError(f"{source}: signatures[{i}]: expected {{keyid?, sig}} strings")
        raw = _b64decode(entry["sig"], f"{source}: signatures[{i}].sig")
        sigs.append((entry.get("keyid", ""), base64.b64encode(raw).decode("ascii")))
    return Envelope(doc["payloadType"], _b64decode(doc["payload"], f"{source}: payload"), tuple(sigs))


def verify_envelope(
    data: bytes, public_key: PublicKey, payload_type: str = INTOTO_PAYLOAD_TYPE, source: str = "envelope"
) -> bytes:
    """The payload, once one signature over its PAE verifies with ``public_key``.

    The payload type must be the one the caller expects: a valid signature over another type is a
    different statement (DSSE's reason for PAE).
    """
    envelope = parse_envelope(data, source)
    if envelope.payload_type != payload_type:
        raise SignatureInvalid(f"{source}: payloadType {envelope.payload_type!r}, expected {payload_type!r}")
    if not envelope.signatures:
        raise SignatureInvalid(f"{source}: no signatures")
    signed = pae(envelope.payload_type, envelope.payload)
    for _, sig in envelope.signatures:
        try:
            verify(public_key, signed, sig)
        except SignatureInvalid:
            continue
        return envelope.payload
    raise SignatureInvalid(f"{source}: no signature verifies with the given public key")


def _b64decode(value: str, what: str) -> bytes:
    """Standard or URL-safe base64, each only in its one canonical spelling (as Go decodes them)."""
    try:
        raw = base64.b64decode(value, validate=True)
        if base64.b64encode(raw).decode("ascii") == value:
            return raw
    except (binascii.Error, ValueError):
        pass
    try:
        raw = base64.urlsafe_b64decode(_check_urlsafe(value))
    except (binascii.Error, ValueError) as e:
        raise FormatError(f"{what}: neither standard nor URL-safe base64") from e
    if base64.urlsafe_b64encode(raw).decode("ascii") != value:
        raise FormatError(f"{what}: not canonical base64")
    return raw


def _check_urlsafe(value: str) -> str:
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")
    if not set(value) <= alphabet:
        raise ValueError("not URL-safe base64")
    return value
