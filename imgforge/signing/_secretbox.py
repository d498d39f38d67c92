"""The "encrypted" container cosign puts inside ``cosign.key``: scrypt + NaCl secretbox, as JSON.

This is go-securesystemslib's ``encrypted`` package (from go-tuf), which cosign's
``pkg/cosign/keys.go`` calls to wrap the PKCS#8 private key:

    {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<b64>"},
     "cipher":{"name":"nacl/secretbox","nonce":"<b64>"},"ciphertext":"<b64>"}

Go's ``json.Marshal`` writes ``[]byte`` fields as standard base64 with padding, so that is what we
write and accept. The salt is 32 random bytes, the nonce 24, the secretbox key the 32-byte scrypt
output; the ciphertext is secretbox's 16-byte Poly1305 tag followed by the encrypted bytes. Writing
uses the "legacy" parameters (N=32768, r=8, p=1) that ``encrypted.Encrypt`` still uses; reading
accepts the three parameter sets that package accepts and nothing else, because unbounded scrypt
parameters in a hostile file would let it take any amount of memory and time.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

import nacl.bindings
import nacl.exceptions
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from imgforge.errors import KeyFileError, WrongPassword
from imgforge.signing._json import go_json

SALT_SIZE = 32
NONCE_SIZE = nacl.bindings.crypto_secretbox_NONCEBYTES  # 24
KEY_SIZE = nacl.bindings.crypto_secretbox_KEYBYTES  # 32
WRITE_PARAMS = (32768, 8, 1)
# go-securesystemslib's Legacy, Standard and OWASP strengths: the only ones it decrypts.
ACCEPTED_PARAMS = frozenset({(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)})


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_SIZE, n=n, r=r, p=p).derive(password)


def encrypt(plaintext: bytes, password: bytes) -> bytes:
    """The JSON document go-securesystemslib's ``encrypted.Encrypt`` writes, fresh salt and nonce."""
    salt = os.urandom(SALT_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    n, r, p = WRITE_PARAMS
    key = _scrypt(password, salt, n, r, p)
    sealed = nacl.bindings.crypto_secretbox_easy(plaintext, nonce, key)
    doc = {
        "kdf": {"name": "scrypt", "params": {"N": n, "r": r, "p": p}, "salt": _b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(sealed),
    }
    return go_json(doc)


def decrypt(data: bytes, password: bytes, source: str) -> bytes:
    """The plaintext inside an ``encrypted`` JSON document; ``source`` names the file in errors."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise KeyFileError(f"{source}: the encrypted key is not JSON ({type(e).__name__})") from e
    kdf = _field(doc, "kdf", dict, source)
    cipher = _field(doc, "cipher", dict, source)
    if kdf.get("name") != "scrypt":
        raise KeyFileError(f'{source}: kdf.name: expected "scrypt"')
    if cipher.get("name") != "nacl/secretbox":
        raise KeyFileError(f'{source}: cipher.name: expected "nacl/secretbox"')
    params = _field(kdf, "params", dict, source, "kdf.")
    triple = tuple(params.get(k) for k in ("N", "r", "p"))
    if triple not in ACCEPTED_PARAMS or not all(type(v) is int for v in triple):
        raise KeyFileError(
            f"{source}: kdf.params: unsupported scrypt parameters (accepted: N 32768, 65536 or 131072 with r 8, p 1)"
        )
    n, r, p = triple
    salt = _b64field(kdf, "salt", source, "kdf.")
    nonce = _b64field(cipher, "nonce", source, "cipher.")
    sealed = _b64field(doc, "ciphertext", source, "")
    if len(nonce) != NONCE_SIZE:
        raise KeyFileError(f"{source}: cipher.nonce: expected {NONCE_SIZE} bytes, got {len(nonce)}")
    key = _scrypt(password, salt, int(n), int(r), int(p))
    try:
        return bytes(nacl.bindings.crypto_secretbox_open_easy(sealed, nonce, key))
    except nacl.exceptions.CryptoError as e:
        raise WrongPassword(f"{source}: wrong password, or the key file was changed after it was written") from e


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _field(doc: Any, name: str, kind: type, source: str, prefix: str = "") -> Any:
    value = doc.get(name) if isinstance(doc, dict) else None
    if not isinstance(value, kind):
        raise KeyFileError(f"{source}: {prefix}{name}: missing or not a {kind.__name__}")
    return value


def _b64field(doc: dict[str, Any], name: str, source: str, prefix: str) -> bytes:
    value = _field(doc, name, str, source, prefix)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise KeyFileError(f"{source}: {prefix}{name}: not standard base64") from e
