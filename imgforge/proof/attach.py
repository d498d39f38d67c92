"""Sign a pushed digest and attach its SBOM, provenance and test report, as cosign lays them out.

What is written for a manifest digest ``D`` of repository ``R`` (docs/signing.md):

- ``R:sha256-<hex>.sig``: one simple-signing layer naming ``R`` and ``D``, its signature in the
  ``dev.cosignproject.cosign/signature`` annotation (what ``cosign verify``, Kyverno and
  policy-controller read);
- ``R:sha256-<hex>.att``: three DSSE envelopes of in-toto statements about ``D`` (SPDX SBOM,
  SLSA provenance v1, imgforge test report), signed with the same key (``cosign verify-attestation``);
- where the registry has the OCI 1.1 referrers API (detected by asking it), each envelope also as
  an artifact manifest whose ``subject`` is ``D``, so referrers-aware tools find it too.

Tags are written last, after every blob, so a reader never sees a manifest whose blobs are missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

from imgforge.proof.facts import ImageFacts, read_facts  # the image reader: signing reads the image
from imgforge.proof.keyring import SigningKey
from imgforge.signing import intoto, oci, sbom, simplesign

if TYPE_CHECKING:
    from imgforge.registry import RegistryClient

VERSION = metadata.version("imgforge")  # the installed distribution's version (pyproject.toml)
EMPTY_CONFIG = b"{}"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
_INTERNAL_LABELS = ("io.imgforge.inputs-digest", "io.imgforge.manifest-digest")


@dataclass(frozen=True)
class BuildInputs:
    """What the provenance names beyond the image itself (all optional: ``sign REF`` knows less)."""

    site: str | None = None
    catalog_commit: str | None = None
    templates_digest: str | None = None
    base_image: str | None = None
    base_digest: str | None = None
    started: datetime | None = None


@dataclass(frozen=True)
class Signed:
    """What :func:`sign_and_attest` wrote."""

    reference: str  # repository@digest
    digest: str
    fingerprint: str
    signature_tag: str
    attestation_tag: str
    predicates: list[str]
    via: str  # "tag" or "tag+referrers-api"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sign_and_attest(
    client: RegistryClient,
    name: str,
    digest: str,
    key: SigningKey,
    *,
    test_report: Mapping[str, Any] | None,
    inputs: BuildInputs | None = None,
) -> Signed:
    """Read the image's facts, then write its signature and attestations (see the module doc)."""
    inputs = inputs or BuildInputs()
    repository = f"{client.registry}/{name}"
    facts = read_facts(client, name, digest)
    now = datetime.now(UTC)
    subject = [intoto.subject(repository, digest)]
    statements = [
        intoto.statement(subject, intoto.SPDX_PREDICATE_TYPE, sbom_of(repository, facts, now)),
        intoto.statement(subject, intoto.SLSA_PROVENANCE_PREDICATE_TYPE, provenance_of(facts, inputs, now)),
    ]
    notes = []
    if test_report is not None:
        predicate = intoto.test_report_predicate(test_report, tool_version=VERSION, tested_on=now)
        statements.append(intoto.statement(subject, intoto.TEST_REPORT_PREDICATE_TYPE, predicate))
    else:
        notes.append("no `imgforge test` report of this digest is known here: no test attestation written")
    payload = simplesign.simple_signing_payload(repository, digest)
    signature = oci.cosign_artifact([oci.signature_layer(payload, simplesign.sign(key.private, payload))])
    layers = [
        oci.attestation_layer(intoto.attestation_envelope(s, key.private), s["predicateType"]) for s in statements
    ]
    attestations = oci.cosign_artifact(layers)
    _push(client, name, signature, oci.signature_tag(digest))
    _push(client, name, attestations, oci.attestation_tag(digest))
    via = "tag"
    client.referrers(name, digest)  # asks once: does this registry have the referrers API?
    if client.referrers_api:
        _attach_referrers(client, name, digest, layers)
        via = "tag+referrers-api"
    return Signed(
        f"{repository}@{digest}",
        digest,
        key.fingerprint,
        oci.signature_tag(digest),
        oci.attestation_tag(digest),
        [s["predicateType"] for s in statements],
        via,
        notes,
    )


def sbom_of(repository: str, facts: ImageFacts, created: datetime) -> dict[str, Any]:
    return sbom.spdx_document(
        name=repository,
        image_digest=facts.digest,
        packages=facts.packages,
        files=facts.files,
        created=created,
        tool_version=VERSION,
        repository=repository.rsplit("/", 1)[0],
    )


def provenance_of(facts: ImageFacts, inputs: BuildInputs, finished: datetime) -> dict[str, Any]:
    """SLSA v1: what was built from what; the image's own labels fill in what the caller does not know."""
    labels = facts.labels
    external: dict[str, Any] = {"site": inputs.site or labels.get("io.imgforge.site") or "unknown"}
    if inputs.catalog_commit:
        external["catalogCommit"] = inputs.catalog_commit
    if inputs.templates_digest:
        external["templatesDigest"] = inputs.templates_digest
    internal: dict[str, Any] = {k: labels[k] for k in _INTERNAL_LABELS if k in labels}
    deps = []
    base = inputs.base_image or labels.get("org.opencontainers.image.base.name")
    if base:
        digest = _sha256_hex(inputs.base_digest or labels.get("org.opencontainers.image.base.digest"))
        deps.append(
            intoto.resource_descriptor(
                uri=f"oci://{base}", name="base image", digest={"sha256": digest} if digest else None
            )
        )
    source, revision = (
        labels.get("org.opencontainers.image.source", ""),
        labels.get("org.opencontainers.image.revision"),
    )
    content = _sha256_hex(labels.get("io.imgforge.manifest-digest"))
    commit = {"gitCommit": revision} if revision and len(revision) in (40, 64) and revision.isalnum() else None
    image = _sha256_hex(revision)  # content taken from an image: the revision is that image's digest
    if image:
        commit = {"sha256": image}
    if commit or content:
        deps.append(
            intoto.resource_descriptor(
                uri=(f"oci://{source}" if image else source) if source and source != "unknown" else None,
                name="site content",
                digest=commit or {"sha256": content or ""},
            )
        )
    return intoto.provenance_predicate(
        builder_id=intoto.BUILDER_ID,
        builder_version={"imgforge": VERSION},
        external_parameters=external,
        internal_parameters=internal or None,
        resolved_dependencies=deps,
        started_on=inputs.started,
        finished_on=finished,
    )


def _sha256_hex(digest: str | None) -> str | None:
    if digest and digest.startswith("sha256:") and len(digest) == 71:
        return digest[7:]
    return None


def _push(client: RegistryClient, name: str, artifact: oci.Artifact, tag: str) -> None:
    for digest, data in artifact.blobs().items():
        client.upload_blob(name, digest, len(data), data)
    client.put_manifest(name, tag, artifact.manifest, artifact.media_type)


def _attach_referrers(client: RegistryClient, name: str, digest: str, layers: Sequence[oci.Layer]) -> None:
    """Each envelope as an OCI 1.1 artifact whose ``subject`` is the image (referrers API only)."""
    data, media_type, _ = client.get_manifest(name, digest)
    subject = {"mediaType": media_type, "digest": digest, "size": len(data)}
    config_digest = "sha256:" + hashlib.sha256(EMPTY_CONFIG).hexdigest()
    client.upload_blob(name, config_digest, len(EMPTY_CONFIG), EMPTY_CONFIG)
    for layer in layers:
        client.upload_blob(name, layer.digest, len(layer.data), layer.data)
        manifest = {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST_MEDIA_TYPE,
            "artifactType": oci.DSSE_MEDIA_TYPE,
            "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": config_digest, "size": len(EMPTY_CONFIG)},
            "layers": [layer.descriptor()],
            "subject": subject,
            "annotations": {oci.PREDICATE_TYPE_ANNOTATION: layer.annotations[oci.PREDICATE_TYPE_ANNOTATION]},
        }
        client.attach_referrer(name, json.dumps(manifest, separators=(",", ":")).encode(), oci.OCI_MANIFEST_MEDIA_TYPE)
