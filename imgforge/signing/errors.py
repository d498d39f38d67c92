"""The signing package's failures, each a subclass of a class in ``imgforge/errors.py``.

They carry the exit code of the class they extend (README's table), so the CLI reports them like
any other error. Messages name the file or field at fault and never quote key material, a
password or a decrypted byte: they may end up in CI logs.
"""

from __future__ import annotations

from imgforge.errors import Refused, UsageError, VerifyFailed


class KeyFileError(UsageError):
    """A key file that cannot be read as a cosign key: bad PEM, bad JSON, unsupported parameters."""


class WrongPassword(KeyFileError):
    """The password does not open ``cosign.key`` (or the file was changed after it was written)."""


class PasswordMissing(UsageError):
    """Neither IMGFORGE_SIGNING_PASSWORD nor COSIGN_PASSWORD is set, or it is empty where that is refused."""


class KeyExists(Refused):
    """``keys generate`` never overwrites a key pair: a lost private key cannot be recovered."""


class FormatError(UsageError):
    """Input for a payload, statement or SBOM that does not have the documented shape."""


class SignatureInvalid(VerifyFailed):
    """A signature, envelope or payload that does not verify against the given public key."""
