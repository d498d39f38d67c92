"""``imgforge keys generate``: a cosign-compatible signing key pair, written once, never overwritten.

The password comes from the environment only (IMGFORGE_SIGNING_PASSWORD, else COSIGN_PASSWORD),
never from a flag, so it stays out of shell history and process listings. The private key is never
printed; the public key's fingerprint is, so it can be compared with the one a merge request shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgforge.cli._app import app, console

keys_app = typer.Typer(help="cosign-compatible signing keys (cosign.key, cosign.pub).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@keys_app.command("generate")
def generate_cmd(
    out: Annotated[
        Path,
        typer.Option(
            "--out", metavar="DIR", help="Folder for cosign.key and cosign.pub.", show_default="current directory"
        ),
    ] = Path("."),
    allow_empty_password: Annotated[
        bool,
        typer.Option("--allow-empty-password", help="Accept an empty password (the private key is then unprotected)."),
    ] = False,
) -> None:
    """Write cosign.key (encrypted, mode 0600) and cosign.pub; refuse to overwrite either."""
    from imgforge.errors import PasswordMissing
    from imgforge.signing import keys

    password = keys.password_from_env()
    if password is None:
        raise PasswordMissing(
            "set IMGFORGE_SIGNING_PASSWORD (or COSIGN_PASSWORD) to the password that will encrypt cosign.key"
        )
    if not password.value and not allow_empty_password:
        raise PasswordMissing(
            f"{password.variable} is empty: an empty password leaves cosign.key "
            "unprotected; pass --allow-empty-password if that is really wanted"
        )
    pair = keys.write_key_pair(out, password.value)
    _say(f"wrote {pair.private_path} (private key, mode 0600: keep it out of images, logs and commits)")
    _say(f"wrote {pair.public_path}")
    _say(f"public key fingerprint: sha256:{pair.fingerprint}")
