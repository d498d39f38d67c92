"""Proof that travels with an image: sign and attest a pushed digest, verify it anywhere.

A worker: it joins the registry (where the proof lives), the image reader (what the image
holds), the signing formats and the local test record. ``release.push`` signs through
``sign_and_attest``; ``imgforge sign`` and ``imgforge verify`` call :func:`sign_reference` and
:func:`verify_reference`; ``update``/``pr`` verify through ``check.verify_digest`` (evidence.py),
``fleet --registry`` through :func:`trust_verdict`.
docs/signing.md describes the formats and the keys.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from imgforge.errors import NotFound, UsageError
from imgforge.image_ref import ImageRef
from imgforge.proof.check import Fact, TrustReport, verify_digest
from imgforge.proof.keyring import SigningKey, VerifyingKey, signing_key, verifying_key

if TYPE_CHECKING:
    from imgforge.proof.attach import BuildInputs, Signed, sign_and_attest

__all__ = [
    "BuildInputs",
    "Fact",
    "Signed",
    "SigningKey",
    "TrustReport",
    "VerifyingKey",
    "local_test_report",
    "resolve_digest",
    "sign_and_attest",
    "sign_reference",
    "signing_key",
    "templates_digest",
    "trust_verdict",
    "verify_reference",
    "verifying_key",
]


def __getattr__(name: str) -> Any:
    """``BuildInputs``, ``Signed``, ``sign_and_attest``: loaded on first use, with the image reader and
    the SBOM writer they need, so verifying (``update --dry-run``) does not pay for signing."""
    if name in ("BuildInputs", "Signed", "sign_and_attest"):
        from imgforge.proof import attach

        return getattr(attach, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def templates_digest() -> str:
    """sha256 over the running imgforge's templates (each file's path and sha256, sorted): which
    templates rendered the image, for the provenance."""
    from imgforge._resources import templates_dir

    root = templates_dir()
    lines = [
        f"{p.relative_to(root).as_posix()}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n"
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    ]
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def _parse(ref: str) -> ImageRef:
    parsed = ImageRef.parse(ref)
    if not parsed.name or not parsed.registry or parsed.name.startswith(("/", ".")) or " " in parsed.name:
        raise UsageError(f"{ref!r}: not an image reference (registry/path:tag or registry/path@sha256:…)")
    return parsed


def resolve_digest(ref: str) -> tuple[str, str, str]:
    """(registry, repository path, manifest digest) of ``ref``: a digest as given, a tag resolved.

    The tag's manifest is fetched and hashed here (not the registry's word in a header).
    """
    from imgforge.registry import ManifestNotFound, RegistryClient

    parsed = _parse(ref)
    if parsed.digest:
        return parsed.registry, parsed.path, parsed.digest
    with RegistryClient(parsed.registry) as client:
        try:
            digest = client.get_manifest(parsed.path, parsed.tag or "latest")[2]
        except ManifestNotFound as e:
            raise NotFound(str(e)) from e
    return parsed.registry, parsed.path, digest


def sign_reference(
    ref: str, key: SigningKey, *, test_report: dict[str, object] | None = None, inputs: BuildInputs | None = None
) -> Signed:
    """Sign and attest the image ``ref`` names (a tag is resolved to its digest first)."""
    from imgforge.proof.attach import sign_and_attest
    from imgforge.registry import RegistryClient

    registry, name, digest = resolve_digest(ref)
    if test_report is None:
        test_report = local_test_report(ref, digest)
    with RegistryClient(registry) as client:
        return sign_and_attest(client, name, digest, key, test_report=test_report, inputs=inputs)


def verify_reference(ref: str, key: VerifyingKey, *, content: bool = True) -> TrustReport:
    """Every fact of the image ``ref`` names, checked with ``key`` (see :mod:`imgforge.proof.check`)."""
    from imgforge.registry import RegistryClient

    registry, name, digest = resolve_digest(ref)
    with RegistryClient(registry) as client:
        return verify_digest(client, name, digest, key, content=content)


def trust_verdict(ref: str, key: VerifyingKey) -> str:
    """One cell for ``fleet --registry``: is ``ref`` signed by ``key`` and does it carry imgforge's
    three attestations (with a passing test report)? Never raises: a failure is the verdict."""
    from imgforge.errors import ImgforgeError

    try:
        report = verify_reference(ref, key, content=False)
    except ImgforgeError as e:
        return f"unknown ({e})"
    if not report.signed:
        return "not signed by the key"
    missing = [f.name for f in report.facts[1:] if not f.ok]
    return "signed, attested" if not missing else f"signed; missing or failing: {', '.join(missing)}"


def local_test_report(reference: str, digest: str) -> dict[str, object] | None:
    """The recorded `imgforge test` report of the local image whose RepoDigests include ``digest``.

    Test records are keyed by local image id; an image counts only when the engine says it was
    pushed as exactly this digest. No engine, no image: None (the proof is only weaker).
    """
    import contextlib

    import docker.errors

    from imgforge.engine import docker_client
    from imgforge.errors import ImgforgeError
    from imgforge.verify.state import last_result

    try:
        client = docker_client()
        candidates = []
        if "@" not in reference:
            with contextlib.suppress(docker.errors.ImageNotFound):
                candidates.append(client.images.get(reference))
        if not candidates:  # by digest, or the tag is not here: any local image pushed as that digest
            candidates = [
                i
                for i in client.images.list()
                if any(d.endswith("@" + digest) for d in i.attrs.get("RepoDigests") or [])
            ]
    except (ImgforgeError, docker.errors.DockerException):
        return None
    for image in candidates:
        if image.id and any(d.endswith("@" + digest) for d in image.attrs.get("RepoDigests") or []):
            return last_result(image.id)
    return None
