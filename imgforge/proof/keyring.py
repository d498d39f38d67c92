"""Where the signing key and the verifying key come from, once for every command.

Private: ``IMGFORGE_SIGNING_KEY`` (a path to ``cosign.key``) with its password in
``IMGFORGE_SIGNING_PASSWORD`` (else ``COSIGN_PASSWORD``). No path means "do not sign"; a path
without a password is an error, never a silent skip. Public: ``--key``, else
``IMGFORGE_SIGNING_KEY_PUB``, else ``[signing] public_key`` of ``imgforge.toml``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imgforge.errors import KeyFileError, PasswordMissing
from imgforge.signing import keys

ENV_KEY = "IMGFORGE_SIGNING_KEY"
ENV_PUBLIC_KEY = "IMGFORGE_SIGNING_KEY_PUB"
_MAX_READ = 64 * 1024 + 1  # the key parser refuses anything over 64 KiB; reading more is pointless


@dataclass(frozen=True)
class SigningKey:
    private: keys.PrivateKey = field(repr=False)
    fingerprint: str
    path: Path


@dataclass(frozen=True)
class VerifyingKey:
    public: keys.PublicKey = field(repr=False)
    fingerprint: str
    source: str  # where it came from, for messages: "--key cosign.pub", "IMGFORGE_SIGNING_KEY_PUB"


def signing_key(environ: Mapping[str, str] | None = None) -> SigningKey | None:
    """The private key named by IMGFORGE_SIGNING_KEY, decrypted; None when the variable is unset."""
    env = os.environ if environ is None else environ
    location = env.get(ENV_KEY, "").strip()
    if not location:
        return None
    password = keys.password_from_env(env)
    if password is None:
        raise PasswordMissing(f"{ENV_KEY} is set: set IMGFORGE_SIGNING_PASSWORD (or COSIGN_PASSWORD) to open it")
    path = Path(location)
    private = keys.load_private_key(_read(path, ENV_KEY), password.value, str(path))
    return SigningKey(private, keys.fingerprint(private), path)


def verifying_key(
    flag: Path | None = None, catalog_key: Path | None = None, environ: Mapping[str, str] | None = None
) -> VerifyingKey | None:
    """The public key to verify with: the flag, the environment, the catalog's setting, or None."""
    env = os.environ if environ is None else environ
    candidates = [
        (flag, f"--key {flag}"),
        (Path(env[ENV_PUBLIC_KEY]) if env.get(ENV_PUBLIC_KEY, "").strip() else None, ENV_PUBLIC_KEY),
        (catalog_key, f"imgforge.toml [signing] public_key ({catalog_key})"),
    ]
    for path, source in candidates:
        if path is not None:
            public = keys.load_public_key(_read(path, source), str(path))
            return VerifyingKey(public, keys.fingerprint(public), source)
    return None


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(_MAX_READ)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read the key named by {what}: {e.strerror}") from e
