"""Referrers: the manifests (signatures, attestations, SBOMs) that name another one as ``subject``.

The OCI distribution spec 1.1 gives two places to find them, and a client must handle both:

- **The referrers API**, ``GET /v2/<name>/referrers/<digest>``: a registry that has it answers
  200 with an OCI image index of descriptors (``artifactType``, ``annotations``), perhaps in
  pages (``Link: rel="next"``) and perhaps filtered (``OCI-Filters-Applied: artifactType``).
  A registry that has it must never answer 404 there; distribution 2.8 (Debian's
  ``docker-registry``) answers 404 ``page not found``, so **404 means no API** (remembered per
  client), except a 404 ``NAME_UNKNOWN``, which only says the repository does not exist.
- **The referrers tag schema** (the fallback): an OCI index tagged ``<alg>-<hex>``
  (:func:`referrers_tag`) that clients maintain themselves. When a manifest with a ``subject``
  is pushed and the registry does not answer ``OCI-Subject: <subject digest>`` (the spec's
  sign that it processed the subject), :meth:`ReferrerCalls.attach_referrer` adds it to that
  index. Reading, an index that is not valid means "no referrers", as the spec says; writing, a
  tag that holds something else is an error and is left alone.

Concurrent writers of the fallback index can lose each other's entries (the spec says so). We
read, merge, write with ``If-Match`` on the ETag we read (``If-None-Match: *`` when the tag was
absent), so a registry that honours conditions refuses a stale write (412) and we merge again;
then we read the tag back, and if a writer replaced it without our entry we merge again, up to
:data:`FALLBACK_ATTEMPTS` times. A writer that replaces the index after that read can still drop
our entry (distribution ignores conditions): adding is idempotent, so running it again repairs it.

Descriptors from either place are hints, not proof: whoever verifies a signature fetches the
listed manifest by digest (which :meth:`get_manifest` verifies) and checks its ``subject``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from imgforge import _http, _scrub
from imgforge._deadline import TransportError
from imgforge._stream import digest_of, is_digest
from imgforge.errors import RegistryError
from imgforge.registry.api import TAG, ManifestNotFound, RepositoryNotFound, path, pull_scope
from imgforge.registry.manifests import MANIFEST_TYPES, OCI_INDEX, ManifestCalls

if TYPE_CHECKING:
    from imgforge.image.model import Descriptor

log = logging.getLogger("imgforge.registry")

FALLBACK_ATTEMPTS = 5  # read-merge-write rounds before giving up on a fallback index that keeps changing


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: algorithm (first 32 characters), ``-``,
    encoded part (first 64), characters a tag may not hold replaced by ``-``."""
    algorithm, _, encoded = digest.partition(":")
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{algorithm[:32]}-{encoded[:64]}")


def referrer_descriptor(data: bytes, media_type: str) -> dict[str, Any]:
    """The descriptor the spec lists for a pushed manifest: its type, digest and size, its
    ``artifactType`` (else, for an image manifest, its config's media type) and its annotations."""
    doc = _json_object(data)
    if doc is None:
        raise ValueError("referrer_descriptor: the manifest is not a JSON object")
    descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}
    config = doc.get("config")
    artifact_type = doc.get("artifactType") or (config.get("mediaType") if isinstance(config, dict) else None)
    if isinstance(artifact_type, str) and artifact_type:
        descriptor["artifactType"] = artifact_type
    annotations = doc.get("annotations")
    if isinstance(annotations, dict) and annotations:
        descriptor["annotations"] = annotations
    return descriptor


@dataclass(frozen=True)
class Attached:
    """Where :meth:`ReferrerCalls.attach_referrer` put a referrer."""

    digest: str  # the referrer manifest's digest
    subject: str  # the digest it refers to
    via: Literal["referrers-api", "referrers-tag"]
    index_digest: str | None = None  # the fallback index written (referrers-tag only)

    @property
    def tag(self) -> str | None:
        return referrers_tag(self.subject) if self.via == "referrers-tag" else None


@dataclass(frozen=True)
class _Fallback:
    entries: list[dict[str, Any]]  # the index's manifests, as they were written
    digest: str | None  # None: the tag does not exist
    etag: str | None


class ReferrerCalls(ManifestCalls):
    """``referrers``, ``attach_referrer`` and ``update_referrers_fallback``."""

    referrers_api: bool | None = None  # learned from the first answer: does this registry have the API?

    def referrers(self, name: str, digest: str, artifact_type: str | None = None) -> list[Descriptor]:
        """The descriptors of manifests in ``name`` whose ``subject`` is ``digest``, from the
        referrers API where the registry has it, else from the referrers tag schema's index.
        ``artifact_type`` keeps only that type (filtered here when the registry did not)."""
        from imgforge.image.model import Index, validate_json

        where = f"{self._where(name)} referrers of {digest}"
        raw = self._from_api(name, digest, artifact_type)
        if raw is None:
            fallback = self._read_fallback(name, digest, strict=False)
            raw = json.dumps({"schemaVersion": 2, "manifests": fallback.entries}).encode(), False
        data, filtered = raw
        found: tuple[Descriptor, ...] = validate_json(Index, data, where).manifests
        return [d for d in found if filtered or artifact_type is None or d.artifact_type == artifact_type]

    def _from_api(self, name: str, digest: str, artifact_type: str | None) -> tuple[bytes, bool] | None:
        """The API's index (all pages merged) and whether it applied the filter; None: no API."""
        if not is_digest(digest):
            raise ValueError(f"{digest[:80]!r} is not a sha256 or sha512 digest")
        if self.referrers_api is False:
            return None
        target = path(name, "referrers", digest)
        params = {"artifactType": artifact_type} if artifact_type else None
        manifests: list[Any] = []
        filtered = artifact_type is not None
        where = f"{self._where(name)} referrers of {digest}"
        total = 0  # all pages together are held to the cap of one JSON answer
        for _ in range(self.max_pages):
            r = self._request(
                "GET",
                target,
                repo=name,
                scope=pull_scope(name),
                params=params,
                headers={"Accept": OCI_INDEX},
                allow=(200, 404),
            )
            if r.status == 404:
                if _scrub.error_detail(r)[0] == "NAME_UNKNOWN":  # no repository: nothing refers to anything
                    return json.dumps({"schemaVersion": 2, "manifests": []}).encode(), True
                self.referrers_api = False
                log.debug("%s has no referrers API (404); using the referrers tag schema", self.registry)
                return None
            self.referrers_api = True
            total += len(r.body)
            if total > self.max_json:
                raise RegistryError(f"{where}: the pages add up to more than {_http.size_text(self.max_json)}")
            page = _json_object(r.body)
            listed = page.get("manifests") if page is not None else None
            if not isinstance(listed, list):
                raise RegistryError(f"{where}: the registry answered without an image index")
            manifests += listed
            applied = {f.strip() for f in r.headers.get("OCI-Filters-Applied", "").split(",")}
            filtered = filtered and "artifactType" in applied
            try:
                link = r.next_page(self.base)
            except TransportError as e:
                raise RegistryError(f"{where}: {e.reason}") from None
            if not link:
                return json.dumps({"schemaVersion": 2, "manifests": manifests}).encode(), filtered
            target, params = link, None
        raise RegistryError(f"{self._where(name)}: referrers of {digest} did not end after {self.max_pages} pages")

    def attach_referrer(self, name: str, data: bytes, media_type: str) -> Attached:
        """Push the manifest ``data`` (which has a ``subject``) by digest and make it findable:
        done by the registry when it answers ``OCI-Subject``, else added to the fallback index."""
        doc = _json_object(data)
        subject = doc.get("subject") if doc is not None else None
        subject_digest = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(subject_digest, str) or not is_digest(subject_digest):
            raise ValueError("attach_referrer: the manifest has no subject with a sha256/sha512 digest")
        digest, answer = self._put_manifest(name, digest_of(data), data, media_type)
        if answer.headers.get("OCI-Subject", "").strip() == subject_digest:
            self.referrers_api = True
            return Attached(digest, subject_digest, "referrers-api")
        index = self.update_referrers_fallback(name, subject_digest, referrer_descriptor(data, media_type))
        return Attached(digest, subject_digest, "referrers-tag", index)

    def update_referrers_fallback(self, name: str, subject: str, descriptor: Mapping[str, Any]) -> str:
        """Add ``descriptor`` to the referrers tag schema's index of ``subject``; returns the
        index's digest. Idempotent (a listed digest is not added twice); see the module's note
        on concurrent writers."""
        tag = referrers_tag(subject)
        if not TAG.fullmatch(tag) or not is_digest(str(descriptor.get("digest", ""))):
            raise ValueError("update_referrers_fallback: needs a subject digest and a descriptor with a digest")
        wanted = descriptor["digest"]
        for attempt in range(1, FALLBACK_ATTEMPTS + 1):
            current = self._read_fallback(name, subject, strict=True)
            if any(e.get("digest") == wanted for e in current.entries):
                return current.digest or ""
            data = _index_bytes([*current.entries, dict(descriptor)])
            condition = {"If-Match": current.etag} if current.etag else {}
            if current.digest is None:
                condition = {"If-None-Match": "*"}
            written, r = self._put_manifest(name, tag, data, OCI_INDEX, headers=condition, allow=(201, 412))
            if r.status == 201:
                after = self._read_fallback(name, subject, strict=False)
                if after.digest == written or any(e.get("digest") == wanted for e in after.entries):
                    return after.digest or written
            log.debug("referrers tag %s of %s changed while we wrote it (round %d); merging again", tag, name, attempt)
        raise RegistryError(
            f"{self._where(name)}: the referrers tag {tag} kept changing under other writers; "
            f"gave up after {FALLBACK_ATTEMPTS} rounds (run again to add {wanted})"
        )

    def _read_fallback(self, name: str, subject: str, *, strict: bool) -> _Fallback:
        """The fallback index of ``subject``; an invalid one raises when ``strict``, else is empty."""
        from imgforge.image.errors import ImageInvalid
        from imgforge.image.model import Index, validate_json

        tag = referrers_tag(subject)
        try:
            # Accept every manifest type: asked for an index only, distribution answers 404 for a
            # tag that holds an image manifest, and we would overwrite what is there.
            data, media_type, digest, r = self._fetch_manifest(name, tag, MANIFEST_TYPES)
        except (ManifestNotFound, RepositoryNotFound):
            return _Fallback([], None, None)
        where = f"{self._where(name)} referrers tag {tag}"
        doc = _json_object(data)
        problem = ""
        if media_type != OCI_INDEX or doc is None or doc.get("mediaType", OCI_INDEX) != OCI_INDEX:
            problem = f"{where}: holds {_scrub.sanitize(media_type, limit=80) or 'a document'}, not an OCI image index"
        else:
            try:
                validate_json(Index, data, where)
            except ImageInvalid as e:
                problem = str(e)
        if problem or doc is None:
            if strict:
                raise RegistryError(f"{problem}; not changing it")
            log.debug("%s; counting no referrers", problem)
            return _Fallback([], None, None)
        return _Fallback(list(doc["manifests"]), digest, r.headers.get("ETag"))


def _index_bytes(entries: list[dict[str, Any]]) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None
