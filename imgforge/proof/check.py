"""Verify what travels with a digest: signature, attestations, test verdict, SBOM against the image.

Everything is read from the registry and checked with the given public key; nothing local is
trusted. One :class:`Fact` per claim, in a fixed order, so a person, a merge request and a
script all read the same lines:

1. ``signature``: a ``.sig`` layer whose signature verifies and whose payload names this digest
   (and this repository);
2. ``sbom``, ``provenance``, ``tests``: an envelope of that predicate type, from the ``.att`` tag
   or the referrers API, whose DSSE signature verifies and whose statement's subject is this digest;
3. ``tests passed``: the test attestation says every check passed;
4. ``sbom content``: the SBOM's content files are exactly the files under the image's web root,
   with the same sha256 (the image is read again, layer by layer, verified).

The facts are hints until each one is checked: descriptors, tags and blobs from the registry are
hostile input, bounded in size and verified by digest. A planted ``.sig``/``.att`` manifest may
list thousands of layers: at most ``MAX_LAYERS`` of each kind are considered and all blob reads of
one verification share ``MAX_TOTAL`` bytes, so verifying never downloads more than that.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imgforge.errors import (
    FormatError,
    ImgforgeError,
    ManifestNotFound,
    RegistryError,
    RepositoryNotFound,
    SignatureInvalid,
)
from imgforge.proof.keyring import VerifyingKey
from imgforge.signing import dsse, intoto, oci, simplesign

if TYPE_CHECKING:
    from imgforge.registry import RegistryClient

MAX_PAYLOAD = 16 << 20  # an SBOM of a large site is a few MiB; anything far larger is refused unread
MAX_LAYERS = 16  # signature or attestation layers considered per verification (a release writes 1 and 3)
MAX_TOTAL = 4 * MAX_PAYLOAD  # bytes of signature and attestation blobs read per verification
PREDICATES = {
    "sbom": intoto.SPDX_PREDICATE_TYPE,
    "provenance": intoto.SLSA_PROVENANCE_PREDICATE_TYPE,
    "tests": intoto.TEST_REPORT_PREDICATE_TYPE,
}


@dataclass(frozen=True)
class Fact:
    name: str
    ok: bool
    detail: str


@dataclass
class TrustReport:
    reference: str  # repository@digest
    digest: str
    fingerprint: str
    facts: list[Fact] = field(default_factory=list)
    predicates: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return bool(self.facts) and all(f.ok for f in self.facts)

    def fact(self, name: str) -> Fact | None:
        return next((f for f in self.facts if f.name == name), None)

    @property
    def signed(self) -> bool:
        found = self.fact("signature")
        return bool(found and found.ok)

    @property
    def attested(self) -> bool:
        return all((f := self.fact(n)) is not None and f.ok for n in PREDICATES)

    @property
    def test_report(self) -> dict[str, Any] | None:
        return self.predicates.get("tests")

    @property
    def sbom(self) -> dict[str, Any] | None:
        return self.predicates.get("sbom")

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "key_fingerprint": f"sha256:{self.fingerprint}",
            "ok": self.ok,
            "facts": [{"name": f.name, "ok": f.ok, "detail": f.detail} for f in self.facts],
            "tests": self.test_report,
        }


class _Budget:
    """What one verification may still read: ``MAX_LAYERS`` layers of each kind, ``MAX_TOTAL`` bytes."""

    def __init__(self) -> None:
        self.left = MAX_TOTAL
        self.stopped = ""  # why reading stopped early (one line), or "" while within the limits

    def admit(self, layer: oci.LayerRef, considered: int, kind: str) -> bool:
        """True when ``layer`` (the ``considered``-th of its kind, from 0) may be read; else note why."""
        if considered >= MAX_LAYERS:
            self.stopped = f"more than {MAX_LAYERS} {kind} layers: the rest were not read"
        elif self.left < layer.size <= MAX_PAYLOAD:  # (a larger one is refused unread by _blob)
            self.stopped = f"the {MAX_TOTAL >> 20} MiB read budget for signatures and attestations is spent"
        return not self.stopped

    def blob(self, client: RegistryClient, name: str, layer: oci.LayerRef) -> bytes:
        if layer.size <= MAX_PAYLOAD:
            self.left -= layer.size  # spent before reading: a read that fails half way counts too
        return _blob(client, name, layer)


def verify_digest(
    client: RegistryClient, name: str, digest: str, key: VerifyingKey, *, content: bool = True
) -> TrustReport:
    """Check every fact of ``name@digest`` (see the module doc); ``content`` reads the image again."""
    repository = f"{client.registry}/{name}"
    report = TrustReport(f"{repository}@{digest}", digest, key.fingerprint)
    budget = _Budget()
    report.facts.append(_signature(client, name, digest, repository, key, budget))
    budget.stopped = ""  # the attestations get what the signature left, and their own reason
    envelopes = _envelopes(client, name, digest, budget)
    for label, predicate_type in PREDICATES.items():
        fact, predicate = _attestation(envelopes, label, predicate_type, digest, key, budget.stopped)
        report.facts.append(fact)
        if predicate is not None:
            report.predicates[label] = predicate
    report.facts.append(_tests_passed(report.test_report))
    if content:
        report.facts.append(_sbom_content(client, name, digest, report.sbom))
    return report


def verified_predicate(
    client: RegistryClient, name: str, digest: str, key: VerifyingKey, label: str
) -> dict[str, Any] | None:
    """The predicate of ``digest``'s attestation ``label`` (sbom, provenance, tests), verified; else None."""
    budget = _Budget()
    _, predicate = _attestation(_envelopes(client, name, digest, budget), label, PREDICATES[label], digest, key)
    return predicate


def _signature(
    client: RegistryClient, name: str, digest: str, repository: str, key: VerifyingKey, budget: _Budget
) -> Fact:
    tag = oci.signature_tag(digest)
    try:
        layers = oci.read_layers(client.get_manifest(name, tag)[0], tag)
    except (ManifestNotFound, RepositoryNotFound):
        return Fact("signature", False, f"not signed: no {tag} in {repository}")
    problems: list[str] = []
    for layer in layers:
        if layer.media_type != oci.SIMPLE_SIGNING_MEDIA_TYPE:
            continue
        if not budget.admit(layer, len(problems), "signature"):
            break
        try:
            payload = budget.blob(client, name, layer)
            simplesign.verify_simple_signing(
                key.public, payload, layer.annotations.get(oci.SIGNATURE_ANNOTATION, ""), digest, repository
            )
        except (SignatureInvalid, FormatError, RegistryError) as e:
            problems.append(str(e))
            continue
        return Fact("signature", True, f"signed by key sha256:{key.fingerprint[:16]}… ({tag})")
    why = budget.stopped or (problems[0] if problems else "no simple-signing layer")
    return Fact("signature", False, f"no valid signature by key sha256:{key.fingerprint[:16]}… in {tag}: {why}")


def _envelopes(client: RegistryClient, name: str, digest: str, budget: _Budget) -> list[tuple[str, bytes]]:
    """(where, envelope bytes) from the ``.att`` tag and, where the registry has it, the referrers API.

    At most ``MAX_LAYERS`` DSSE layers in all, within ``budget``; ``budget.stopped`` says when it cut.
    """
    found: list[tuple[str, bytes]] = []
    tag = oci.attestation_tag(digest)
    manifests: list[tuple[str, bytes]] = []
    with contextlib.suppress(ManifestNotFound, RepositoryNotFound):
        manifests.append((tag, client.get_manifest(name, tag)[0]))
    try:
        listed = client.referrers(name, digest, oci.DSSE_MEDIA_TYPE) if client.referrers_api is not False else []
    except RegistryError:
        listed = []
    if client.referrers_api:
        for desc in listed[:32]:
            try:
                manifests.append((f"referrer {desc.digest}", client.get_manifest(name, desc.digest)[0]))
            except RegistryError:
                continue
    considered = 0
    for where, data in manifests:
        try:
            layers = oci.read_layers(data, where)
        except FormatError:
            continue
        for layer in layers:
            if layer.media_type != oci.DSSE_MEDIA_TYPE:
                continue
            if not budget.admit(layer, considered, "attestation"):
                return found
            considered += 1
            try:
                found.append((where, budget.blob(client, name, layer)))
            except (FormatError, RegistryError):
                continue
    return found


def _attestation(
    envelopes: list[tuple[str, bytes]],
    label: str,
    predicate_type: str,
    digest: str,
    key: VerifyingKey,
    stopped: str = "",
) -> tuple[Fact, dict[str, Any] | None]:
    problems = []
    for where, data in envelopes:
        try:
            payload = dsse.verify_envelope(data, key.public, source=where)
            doc = intoto.parse_statement(payload, predicate_type, digest, where)
        except (SignatureInvalid, FormatError) as e:
            problems.append(str(e))
            continue
        return Fact(label, True, f"{predicate_type} attestation verified ({where})"), doc["predicate"]
    if stopped:
        return Fact(label, False, f"no verified {predicate_type} attestation within the limits ({stopped})"), None
    if not envelopes:
        return Fact(label, False, f"no {predicate_type} attestation: no attestations at all"), None
    signed_other = [p for p in problems if "predicateType" in p]
    why = "none of that type" if len(signed_other) == len(problems) else problems[0]
    return Fact(label, False, f"no verified {predicate_type} attestation ({why})"), None


def _tests_passed(predicate: dict[str, Any] | None) -> Fact:
    if predicate is None:
        return Fact("tests passed", False, "no verified test attestation")
    listed = predicate.get("checks")
    checks: list[Any] = listed if isinstance(listed, list) else []
    good = [c for c in checks if isinstance(c, dict) and c.get("ok") is True]
    failed = [str(c.get("name")) for c in checks if not (isinstance(c, dict) and c.get("ok") is True)]
    if predicate.get("passed") is True and checks and not failed:
        return Fact("tests passed", True, f"all {len(checks)} checks of `imgforge test` passed")
    return Fact("tests passed", False, f"{len(good)}/{len(checks)} checks passed; failed: {', '.join(failed) or '-'}")


def _sbom_content(client: RegistryClient, name: str, digest: str, document: dict[str, Any] | None) -> Fact:
    if document is None:
        return Fact("sbom content", False, "no verified SBOM to compare with the image")
    from imgforge.proof.facts import read_facts  # the image reader: only when content is checked

    try:
        facts = read_facts(client, name, digest)
    except ImgforgeError as e:
        return Fact("sbom content", False, f"cannot read the image to compare: {e}")
    actual = {f.path: f.sha256 for f in facts.files}
    claimed: dict[str, str] = {}
    for entry in document.get("files") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("fileName"), str):
            continue
        sums = {c.get("algorithm"): c.get("checksumValue") for c in entry.get("checksums") or [] if isinstance(c, dict)}
        claimed[entry["fileName"].removeprefix("./")] = str(sums.get("SHA256", ""))
    if claimed == actual:
        return Fact("sbom content", True, f"{len(actual)} content files match the SBOM's sha256 digests")
    missing = sorted(actual.keys() - claimed.keys())
    extra = sorted(claimed.keys() - actual.keys())
    changed = sorted(p for p in actual.keys() & claimed.keys() if actual[p] != claimed[p])
    parts = [
        f"{what}: {', '.join(paths[:3])}"
        for what, paths in (("not in the SBOM", missing), ("not in the image", extra), ("different bytes", changed))
        if paths
    ]
    return Fact("sbom content", False, "SBOM and image differ (" + "; ".join(parts) + ")")


def _blob(client: RegistryClient, name: str, layer: oci.LayerRef) -> bytes:
    if layer.size > MAX_PAYLOAD:
        raise FormatError(f"layer {layer.digest}: {layer.size} bytes is over the {MAX_PAYLOAD >> 20} MiB limit")
    with client.open_blob(name, layer.digest, layer.size) as stream:
        return stream.read()
