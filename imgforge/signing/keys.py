"""cosign-compatible key pairs: ``cosign.key`` (encrypted PKCS#8) and ``cosign.pub`` (PEM SPKI).

Keys made here open with ``cosign`` and keys made by ``cosign generate-key-pair`` open here, as
they are: ``cosign.key`` is a PEM block of type ``ENCRYPTED SIGSTORE PRIVATE KEY`` (older cosign:
``ENCRYPTED COSIGN PRIVATE KEY``, still read) whose body is go-securesystemslib's ``encrypted``
JSON (see ``_secretbox``) around the PKCS#8 DER of an ECDSA P-256 key, cosign's default algorithm
and the one imgforge signs with. ``cosign.pub`` is the ``PUBLIC KEY`` PEM of the
SubjectPublicKeyInfo, as ``cryptoutils.MarshalPublicKeyToPEM`` writes it.

The private key only ever lives in memory as a ``cryptography`` object, whose repr shows no key
material, and no error message here quotes the file, the password or a decrypted byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imgforge.errors import KeyExists, KeyFileError
from imgforge.signing import _secretbox

SIGSTORE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"  # what cosign writes today
COSIGN_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"  # what cosign wrote before; still accepted
PUBLIC_PEM_TYPE = "PUBLIC KEY"
PRIVATE_KEY_FILE = "cosign.key"
PUBLIC_KEY_FILE = "cosign.pub"
PASSWORD_VARIABLES = ("IMGFORGE_SIGNING_PASSWORD", "COSIGN_PASSWORD")
_MAX_KEY_FILE = 64 * 1024  # real key files are under 1 KiB; refuse to parse anything huge

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class EnvPassword:
    """A password read from the environment, and which variable held it (the value never shows)."""

    value: bytes = field(repr=False)
    variable: str


@dataclass(frozen=True)
class KeyPairFiles:
    private_path: Path
    public_path: Path
    fingerprint: str


def password_from_env(environ: Mapping[str, str] | None = None) -> EnvPassword | None:
    """The signing password: IMGFORGE_SIGNING_PASSWORD, else COSIGN_PASSWORD, else None.

    A variable that is set wins even when it is empty (cosign reads an empty COSIGN_PASSWORD as
    "no password"); whether an empty password is acceptable is the caller's decision.
    """
    env = os.environ if environ is None else environ
    for name in PASSWORD_VARIABLES:
        if name in env:
            return EnvPassword(env[name].encode("utf-8"), name)
    return None


def generate(password: bytes | str) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 pair as (``cosign.key`` bytes, ``cosign.pub`` bytes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return encrypt_private_key(key, password), public_key_pem(key.public_key())


def encrypt_private_key(key: PrivateKey, password: bytes | str, pem_type: str = SIGSTORE_PEM_TYPE) -> bytes:
    """``key`` as cosign writes ``cosign.key``: PKCS#8 DER, encrypted, in a PEM block."""
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem_encode(pem_type, _secretbox.encrypt(der, _as_bytes(password)))


def load_private_key(data: bytes, password: bytes | str, source: str = PRIVATE_KEY_FILE) -> PrivateKey:
    """The ECDSA P-256 key inside a cosign private key file, as cosign's ``LoadPrivateKey`` reads it."""
    _, body = pem_decode(data, (SIGSTORE_PEM_TYPE, COSIGN_PEM_TYPE), source)
    der = _secretbox.decrypt(body, _as_bytes(password), source)
    if not _is_pkcs8(der):  # cosign parses with x509.ParsePKCS8PrivateKey and nothing else
        raise KeyFileError(f"{source}: the decrypted key is not PKCS#8 (cosign refuses it too)")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{source}: the decrypted key cannot be parsed as PKCS#8") from e
    return cast(PrivateKey, _require_p256(key, ec.EllipticCurvePrivateKey, source, "signs with"))


def load_public_key(data: bytes, source: str = PUBLIC_KEY_FILE) -> PublicKey:
    """The ECDSA P-256 key of a ``PUBLIC KEY`` PEM (``cosign.pub``)."""
    _, der = pem_decode(data, (PUBLIC_PEM_TYPE,), source)
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{source}: not a SubjectPublicKeyInfo public key") from e
    return cast(PublicKey, _require_p256(key, ec.EllipticCurvePublicKey, source, "verifies"))


def public_key_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: PublicKey | PrivateKey) -> str:
    """sha256 of the DER SubjectPublicKeyInfo, lowercase hex: the key's name in output and reports."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def write_key_pair(directory: Path, password: bytes | str) -> KeyPairFiles:
    """Write ``cosign.key`` (mode 0600) and ``cosign.pub`` into ``directory``, never over a file.

    Both names are checked first and then created with O_EXCL, so an existing pair (or one appearing
    meanwhile) is left untouched; if the second file cannot be written the first is removed again.
    """
    directory = Path(directory)
    private_path, public_path = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    present = [p.name for p in (private_path, public_path) if p.exists() or p.is_symlink()]
    if present:
        raise KeyExists(
            f"{directory}: {' and '.join(present)} already exist; imgforge never "
            "overwrites a key pair (move them away first)"
        )
    private_pem, public_pem = generate(password)
    try:
        if not directory.is_dir():
            directory.mkdir(parents=True)
        _write_new(private_path, private_pem, 0o600)
        try:
            _write_new(public_path, public_pem, 0o644)
        except BaseException:
            private_path.unlink(missing_ok=True)
            raise
    except FileExistsError as e:
        if e.filename in (str(private_path), str(public_path)):  # appeared after the check: still kept
            raise KeyExists(f"{e.filename}: already exists; imgforge never overwrites a key pair") from e
        raise KeyFileError(f"{e.filename or directory}: cannot write the key pair: not a folder") from e
    except OSError as e:
        raise KeyFileError(f"{e.filename or directory}: cannot write the key pair: {e.strerror}") from e
    return KeyPairFiles(private_path, public_path, fingerprint(load_public_key(public_pem)))


def pem_encode(pem_type: str, body: bytes) -> bytes:
    """One PEM block, 64-column base64, as Go's ``pem.EncodeToMemory`` writes it."""
    b64 = base64.b64encode(body).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return ("\n".join([f"-----BEGIN {pem_type}-----", *lines, f"-----END {pem_type}-----"]) + "\n").encode()


def pem_decode(data: bytes, accepted: tuple[str, ...], source: str) -> tuple[str, bytes]:
    """The type and body of the first PEM block in ``data`` (RFC 7468; no headers, as cosign writes).

    Small enough to write here: ``cryptography`` parses only the PEM types it knows, and cosign's
    private key type is not one of them.
    """
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(f"{source}: {len(data)} bytes is too large for a key file")
    try:
        lines = data.decode("ascii").strip().splitlines()
    except UnicodeDecodeError as e:
        raise KeyFileError(f"{source}: not a PEM file (non-ASCII bytes)") from e
    begin = next((i for i, line in enumerate(lines) if line.startswith("-----BEGIN ")), None)
    if begin is None or not lines[begin].endswith("-----"):
        raise KeyFileError(f"{source}: not a PEM file (no BEGIN line)")
    pem_type = lines[begin][len("-----BEGIN ") : -len("-----")]
    if pem_type not in accepted:
        raise KeyFileError(f"{source}: PEM type {pem_type!r}; expected {' or '.join(map(repr, accepted))}")
    end_line = f"-----END {pem_type}-----"
    end = next((i for i in range(begin + 1, len(lines)) if lines[i].strip() == end_line), None)
    if end is None:
        raise KeyFileError(f"{source}: no {end_line!r} line")
    try:
        body = base64.b64decode("".join(line.strip() for line in lines[begin + 1 : end]), validate=True)
    except (binascii.Error, ValueError) as e:
        raise KeyFileError(f"{source}: the PEM body is not base64") from e
    return pem_type, body


def _is_pkcs8(der: bytes) -> bool:
    """PrivateKeyInfo ::= SEQUENCE { version INTEGER (0), algorithm SEQUENCE, ... }.

    The traditional SEC1 ``EC PRIVATE KEY`` starts SEQUENCE { INTEGER 1, OCTET STRING }; cryptography
    would load it, cosign would not, so we look at the first two elements ourselves.
    """
    if len(der) < 8 or der[0] != 0x30:
        return False
    length_byte = der[1]
    offset = 2 + (length_byte & 0x7F if length_byte & 0x80 else 0)
    return der[offset : offset + 3] == b"\x02\x01\x00" and der[offset + 3 : offset + 4] == b"\x30"


def _require_p256(key: object, kind: type, source: str, verb: str) -> object:
    """``key`` if it is a P-256 key of ``kind``; anything else is refused by name (RSA, secp384r1, ...)."""
    if isinstance(key, kind) and isinstance(getattr(key, "curve", None), ec.SECP256R1):
        return key
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        described = f"ECDSA {key.curve.name}"
    else:
        described = type(key).__name__.lstrip("_").replace("PrivateKey", "").replace("PublicKey", "") or "unknown"
    raise KeyFileError(
        f"{source}: {described} key: imgforge {verb} ECDSA P-256 keys, cosign's default (cosign generate-key-pair)"
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; it must not add any either
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(data)
    except BaseException:
        if fd != -1:
            os.close(fd)
        path.unlink(missing_ok=True)
        raise


def _as_bytes(password: bytes | str) -> bytes:
    return password.encode("utf-8") if isinstance(password, str) else password
