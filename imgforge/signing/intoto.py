"""in-toto Statement v1 and the three predicates imgforge attaches to an image digest.

A Statement binds a predicate to artifacts by digest (in-toto attestation framework v1)::

    {"_type":"https://in-toto.io/Statement/v1",
     "subject":[{"name":"<repository>","digest":{"sha256":"<hex>"}}],
     "predicateType":"<uri>", "predicate":{...}}

and travels in a DSSE envelope of type ``application/vnd.in-toto+json``. The predicates:

- SBOM: the SPDX 2.3 document (``sbom.py``), type ``https://spdx.dev/Document``;
- provenance: SLSA Provenance v1, type ``https://slsa.dev/provenance/v1``
  (``buildDefinition{buildType, externalParameters, internalParameters?, resolvedDependencies}``,
  ``runDetails{builder{id, version?}, metadata{invocationId?, startedOn?, finishedOn?}}``);
- tests: imgforge's own type ``https://imgforge.io/attestation/test-report/v1`` carrying the whole
  ``imgforge test`` report (every check's name, ok and detail) and ``passed``. The SLSA
  verification summary and in-toto's test-result predicate carry only a verdict or test names, and
  a reviewer needs the details (docs/signing.md says why).

Statements are serialized canonically (sorted keys, compact) so the same facts give the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from imgforge.errors import FormatError
from imgforge.signing._json import canonical_json
from imgforge.signing._time import rfc3339
from imgforge.signing.dsse import INTOTO_PAYLOAD_TYPE, dsse_envelope
from imgforge.signing.keys import PrivateKey
from imgforge.signing.oci import digest_hex

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SPDX_PREDICATE_TYPE = "https://spdx.dev/Document"
SLSA_PROVENANCE_PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
TEST_REPORT_PREDICATE_TYPE = "https://imgforge.io/attestation/test-report/v1"
BUILD_TYPE = "https://imgforge.io/buildtypes/site-image/v1"
BUILDER_ID = "https://imgforge.io/builder/imgforge"

_HEX = re.compile(r"[a-f0-9]+")
_ALGORITHM = re.compile(r"[a-zA-Z0-9_-]+")


def subject(name: str, manifest_digest: str) -> dict[str, Any]:
    """The subject for an image: its repository and manifest digest (what cosign attest writes)."""
    if not name:
        raise FormatError("subject.name: must not be empty")
    return {"name": name, "digest": {"sha256": digest_hex(manifest_digest)}}


def statement(
    subjects: Sequence[Mapping[str, Any]], predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    if not subjects:
        raise FormatError("statement: at least one subject is required")
    for i, sub in enumerate(subjects):
        _digest_set(sub.get("digest"), f"subject[{i}].digest")
    if not predicate_type:
        raise FormatError("statement: predicateType must not be empty")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [dict(s) for s in subjects],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def statement_bytes(stmt: Mapping[str, Any]) -> bytes:
    return canonical_json(dict(stmt))


def attestation_envelope(stmt: Mapping[str, Any], private_key: PrivateKey) -> bytes:
    """The statement, canonically serialized, in a signed DSSE envelope (a ``.att`` layer's bytes)."""
    return dsse_envelope(INTOTO_PAYLOAD_TYPE, statement_bytes(stmt), private_key)


def parse_statement(
    payload: bytes, predicate_type: str, manifest_digest: str, source: str = "statement"
) -> dict[str, Any]:
    """A verified envelope's statement, checked to be of ``predicate_type`` and about ``manifest_digest``."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{source}: not JSON") from e
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise FormatError(f"{source}: _type: expected {STATEMENT_TYPE}")
    if doc.get("predicateType") != predicate_type:
        raise FormatError(f"{source}: predicateType {doc.get('predicateType')!r}, expected {predicate_type!r}")
    wanted = digest_hex(manifest_digest)
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or not any(
        isinstance(s, dict) and isinstance(s.get("digest"), dict) and s["digest"].get("sha256") == wanted
        for s in subjects
    ):
        raise FormatError(f"{source}: no subject has digest {manifest_digest}")
    if not isinstance(doc.get("predicate"), dict):
        raise FormatError(f"{source}: predicate: expected an object")
    return doc


def resource_descriptor(
    *,
    uri: str | None = None,
    name: str | None = None,
    digest: Mapping[str, str] | None = None,
    annotations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An in-toto ResourceDescriptor (a dependency, a source): at least a uri or a digest."""
    if not uri and not digest:
        raise FormatError("resource descriptor: needs a uri or a digest")
    out: dict[str, Any] = {}
    if uri:
        out["uri"] = uri
    if name:
        out["name"] = name
    if digest:
        out["digest"] = _digest_set(digest, f"resource {uri or name}: digest")
    if annotations:
        out["annotations"] = dict(annotations)
    return out


def provenance_predicate(
    *,
    builder_id: str,
    external_parameters: Mapping[str, Any],
    resolved_dependencies: Iterable[Mapping[str, Any]] = (),
    build_type: str = BUILD_TYPE,
    internal_parameters: Mapping[str, Any] | None = None,
    builder_version: Mapping[str, str] | None = None,
    invocation_id: str | None = None,
    started_on: datetime | None = None,
    finished_on: datetime | None = None,
) -> dict[str, Any]:
    """A SLSA Provenance v1 predicate; optional fields are left out rather than written empty."""
    if not builder_id or not build_type:
        raise FormatError("provenance: builder id and build type are required")
    definition: dict[str, Any] = {"buildType": build_type, "externalParameters": dict(external_parameters)}
    if internal_parameters:
        definition["internalParameters"] = dict(internal_parameters)
    deps = [dict(d) for d in resolved_dependencies]
    if deps:
        definition["resolvedDependencies"] = deps
    builder: dict[str, Any] = {"id": builder_id}
    if builder_version:
        builder["version"] = dict(builder_version)
    metadata: dict[str, Any] = {}
    if invocation_id:
        metadata["invocationId"] = invocation_id
    if started_on:
        metadata["startedOn"] = rfc3339(started_on)
    if finished_on:
        metadata["finishedOn"] = rfc3339(finished_on)
    run: dict[str, Any] = {"builder": builder}
    if metadata:
        run["metadata"] = metadata
    return {"buildDefinition": definition, "runDetails": run}


def test_report_predicate(
    report: Mapping[str, Any], *, tool_version: str | None = None, tested_on: datetime | None = None
) -> dict[str, Any]:
    """The ``imgforge test`` report (``VerifyReport.to_dict()``) as imgforge's test-report predicate.

    ``passed`` is recomputed from the checks (never copied from the input): true only when there is
    at least one check and every check is ok.
    """
    checks = report.get("checks")
    if not isinstance(checks, list) or not checks:
        raise FormatError("test report: checks: expected a non-empty list")
    out_checks = []
    for i, check in enumerate(checks):
        if (
            not isinstance(check, Mapping)
            or not isinstance(check.get("name"), str)
            or not check["name"]
            or type(check.get("ok")) is not bool
            or not isinstance(check.get("detail"), str)
        ):
            raise FormatError(f"test report: checks[{i}]: expected name (text), ok (true/false), detail (text)")
        out_checks.append({"name": check["name"], "ok": check["ok"], "detail": check["detail"]})
    predicate: dict[str, Any] = {"passed": all(c["ok"] for c in out_checks), "checks": out_checks}
    for key, out_key in (("site", "site"), ("image", "image"), ("image_id", "imageId")):
        if isinstance(report.get(key), str) and report[key]:
            predicate[out_key] = report[key]
    if tool_version:
        predicate["tool"] = {"name": "imgforge", "version": tool_version}
    if tested_on:
        predicate["testedOn"] = rfc3339(tested_on)
    return predicate


def _digest_set(digest: Any, what: str) -> dict[str, str]:
    if not isinstance(digest, Mapping) or not digest:
        raise FormatError(f"{what}: expected {{algorithm: hex}}")
    for algorithm, value in digest.items():
        if (
            not isinstance(algorithm, str)
            or not _ALGORITHM.fullmatch(algorithm)
            or not isinstance(value, str)
            or not _HEX.fullmatch(value)
        ):
            raise FormatError(f"{what}: {algorithm!r}: expected lowercase hex")
    return dict(digest)
