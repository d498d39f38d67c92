"""``imgforge sign`` and ``imgforge verify``: proof that travels with an image, made and checked.

Both read keys from the environment or files only (never a flag holding a secret); the private
key never reaches output. ``verify`` prints one line per fact and exits 1 when any fact fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgforge.cli._app import JsonOpt, RootOpt, app, console, print_json

KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key",
        metavar="COSIGN_PUB",
        help="Public key to verify with.",
        show_default="IMGFORGE_SIGNING_KEY_PUB, else [signing] public_key in imgforge.toml",
    ),
]


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _is_reference(target: str) -> bool:
    return "/" in target or "@" in target or ":" in target


@app.command("sign")
def sign_cmd(
    target: Annotated[str, typer.Argument(metavar="SITE|REF", help="A site (its catalog tag) or an image reference.")],
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sign an image's digest and attach its SBOM, provenance and test report (key: IMGFORGE_SIGNING_KEY)."""
    from imgforge import proof

    if _is_reference(target):
        key = proof.signing_key()
        if key is None:
            from imgforge.errors import UsageError

            raise UsageError(f"nothing to sign with: set {proof.keyring.ENV_KEY} to a cosign.key (docs/signing.md)")
        signed = proof.sign_reference(target, key)
    else:
        from imgforge import config, release

        signed = release.sign_site(config.load_catalog(root), target)
    if json_out:
        print_json(signed.to_dict())
        return
    _say(f"signed {signed.reference} with key sha256:{signed.fingerprint} ({signed.signature_tag})")
    _say(f"attached {len(signed.predicates)} attestations ({signed.attestation_tag}, via {signed.via}):")
    for predicate in signed.predicates:
        _say(f"  {predicate}")
    for note in signed.notes:
        _say(f"note: {note}")


@app.command("verify")
def verify_cmd(
    reference: Annotated[str, typer.Argument(metavar="REF", help="Image reference: registry/path:tag or @sha256:….")],
    key: KeyOpt = None,
    no_content: Annotated[
        bool, typer.Option("--no-content", help="Skip reading the image to compare its files with the SBOM.")
    ] = False,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check REF's signature, its SBOM, provenance and test attestations, and the SBOM against the image."""
    from imgforge import proof
    from imgforge.errors import UsageError

    catalog_key = None
    if key is None:
        from imgforge import config

        catalog_key = config.catalog_public_key(root)
    found = proof.verifying_key(key, catalog_key)
    if found is None:
        raise UsageError(
            "no public key: pass --key cosign.pub, set IMGFORGE_SIGNING_KEY_PUB, "
            "or [signing] public_key in imgforge.toml"
        )
    report = proof.verify_reference(reference, found, content=not no_content)
    if json_out:
        print_json(report.to_dict())
    else:
        _say(f"{report.reference} (key sha256:{report.fingerprint}, from {found.source})")
        for fact in report.facts:
            _say(f"{'ok  ' if fact.ok else 'FAIL'} {fact.name}: {fact.detail}")
        _say("verified" if report.ok else "NOT verified")
    if not report.ok:
        raise typer.Exit(1)
