"""Proof that travels with an image: cosign-compatible keys, signatures, attestations and SBOMs.

Formats only: this package builds and checks bytes (key files, simple-signing payloads, DSSE
envelopes, in-toto statements, SPDX documents, the ``.sig``/``.att`` OCI objects) and never talks
to a registry or a Docker engine, so the workers that push, release and update can use it with
whichever client they have. Every format is the one cosign and its verifiers (Kyverno,
policy-controller, containers/image) read; docs/signing.md describes them.
"""

from imgforge.signing.dsse import dsse_envelope, pae, verify_envelope
from imgforge.signing.intoto import (
    SLSA_PROVENANCE_PREDICATE_TYPE,
    SPDX_PREDICATE_TYPE,
    TEST_REPORT_PREDICATE_TYPE,
    attestation_envelope,
    provenance_predicate,
    statement,
    subject,
    test_report_predicate,
)
from imgforge.signing.keys import fingerprint, generate, load_private_key, load_public_key, password_from_env
from imgforge.signing.oci import attestation_tag, cosign_artifact, signature_tag
from imgforge.signing.sbom import sbom_diff, spdx_document
from imgforge.signing.simplesign import sign, simple_signing_payload, verify, verify_simple_signing

__all__ = [
    "SLSA_PROVENANCE_PREDICATE_TYPE",
    "SPDX_PREDICATE_TYPE",
    "TEST_REPORT_PREDICATE_TYPE",
    "attestation_envelope",
    "attestation_tag",
    "cosign_artifact",
    "dsse_envelope",
    "fingerprint",
    "generate",
    "load_private_key",
    "load_public_key",
    "pae",
    "password_from_env",
    "provenance_predicate",
    "sbom_diff",
    "sign",
    "signature_tag",
    "simple_signing_payload",
    "spdx_document",
    "statement",
    "subject",
    "test_report_predicate",
    "verify",
    "verify_envelope",
    "verify_simple_signing",
]
