"""Referrers on both paths: the referrers tag schema on the real distribution 2.8 (no referrers
API), and the referrers API served by a small front that implements only that endpoint.

No registry that implements the OCI 1.1 referrers API can be installed here: Debian bookworm has
``docker-registry`` 2.8 only (no zot, no distribution v3), and PyPI and npm carry no OCI registry
server. So :class:`ReferrersApi` is a deliberately small loopback server before the real registry
that implements the referrers API from the distribution spec's text and passes every other
request through. What it implements, quoted from distribution-spec v1.1 (spec.md):

    "Pushing Manifests with Subject: When processing a request for an image manifest with the
    subject field, a registry implementation that supports the referrers API MUST respond with
    the response header OCI-Subject: <subject digest> to indicate to the client that the
    registry processed the request's subject."

    "Listing Referrers: To fetch the list of referrers, perform a GET request to a path in the
    following format: /v2/<name>/referrers/<digest>. [...] Assuming a repository is found, this
    request MUST return a 200 OK response code. If the registry supports the referrers API, the
    registry MUST NOT return a 404 Not Found to a referrers API requests. [...] Upon success, the
    response MUST be a JSON body with an image index containing a list of descriptors. The
    Content-Type header MUST be set to application/vnd.oci.image.index.v1+json. Each descriptor
    is of an image manifest or index in the same <name> namespace with a subject field that
    specifies the value of <digest>. The descriptors MUST include an artifactType field that is
    set to the value of the artifactType in the image manifest or index, if present. If the
    artifactType is empty or missing in the image manifest, the value of artifactType MUST be set
    to the config descriptor mediaType value. If the artifactType is empty or missing in an
    index, the artifactType MUST be omitted. The descriptors MUST include annotations from the
    image manifest or index. If a query results in no matching referrers, an empty manifest list
    MUST be returned. [...] A Link header MUST be included in the response when the descriptor
    list cannot be returned in a single manifest. [...] If filtering is requested and applied,
    the response MUST include a header OCI-Filters-Applied: artifactType denoting that an
    artifactType filter was applied."

The front keeps no copy of anything: it remembers which manifest digests were pushed with which
subject, and builds each answer from those manifests as the real registry serves them, asking the
registry with the client's own Authorization (so auth is the registry's, challenges included).
"""

from __future__ import annotations

import json
import re

import pytest

from imgforge.errors import RegistryError
from imgforge.registry import Credentials, RegistryClient, referrers_tag
from tests.registry.artifacts import (
    EMPTY,
    EMPTY_TYPE,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest,
    image_config,
    manifest,
)
from tests.registry.fronts import Front, Request, json_answer

pytestmark = pytest.mark.registry
AUTHS = ["basic_registry", "token_registry"]
SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
_REFERRERS = re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>sha(?:256|512):[a-f0-9]+)")


class ReferrersApi(Front):
    """The referrers API (and only it) of distribution-spec 1.1 before a real registry."""

    def __init__(self, upstream: str, page_size: int = 0):
        super().__init__(upstream)
        self.page_size = page_size  # 0: one page
        self.subjects: dict[tuple[str, str], list[str]] = {}
        self.answered: list[bytes] = []  # each referrers page served, in order
        self.intercept = self._serve

    def _serve(self, request: Request):
        if request.method == "PUT" and "/manifests/" in request.path:
            return self._put(request)
        match = _REFERRERS.fullmatch(request.path)
        if request.method == "GET" and match:
            return self._list(request, match["name"], match["digest"])
        return None

    def _put(self, request: Request):
        r = self.forward(request)
        headers = {k: v for k, v in r.headers.items() if k.lower() in ("location", "docker-content-digest")}
        headers.update({k: v for k, v in r.headers.items() if k.lower() == "www-authenticate"})
        subject = (json.loads(request.body).get("subject") or {}).get("digest") if r.status_code == 201 else None
        if subject:
            name = request.path.split("/manifests/")[0][len("/v2/") :]
            self.subjects.setdefault((name, subject), []).append(digest(request.body))
            headers["OCI-Subject"] = subject
        return r.status_code, headers, r.content

    def _list(self, request: Request, name: str, subject: str):
        auth = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        # Access is the registry's to decide: the same Authorization, a pull of the same repository.
        probe = self._session.get(f"{self.upstream}/v2/{name}/tags/list", headers=auth, timeout=10)
        if probe.status_code in (401, 403, 404):
            challenge = {k: v for k, v in probe.headers.items() if k.lower() == "www-authenticate"}
            return probe.status_code, {"Content-Type": "application/json", **challenge}, probe.content
        wanted = request.params.get("artifactType")
        listed = []
        for ref in dict.fromkeys(self.subjects.get((name, subject), [])):
            r = self._session.get(
                f"{self.upstream}/v2/{name}/manifests/{ref}",
                headers={**auth, "Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
                timeout=10,
            )
            if r.status_code != 200:
                continue  # deleted since: no longer a referrer
            doc = json.loads(r.content)
            entry = {"mediaType": doc.get("mediaType", OCI_MANIFEST), "size": len(r.content), "digest": ref}
            kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
            if kind:
                entry["artifactType"] = kind
            if doc.get("annotations"):
                entry["annotations"] = doc["annotations"]
            if wanted is None or entry.get("artifactType") == wanted:
                listed.append(entry)
        start = int(request.params.get("page", "0"))
        size = self.page_size or len(listed) or 1
        page = listed[start : start + size]
        headers = {"Content-Type": OCI_INDEX}
        if wanted is not None:
            headers["OCI-Filters-Applied"] = "artifactType"
        if start + size < len(listed):
            more = f"page={start + size}" + (f"&artifactType={wanted}" if wanted else "")
            headers["Link"] = f'<{request.path}?{more}>; rel="next"'
        answer = json_answer(200, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": page}, headers)
        self.answered.append(answer[2])
        return answer


def _client(reg, host: str | None = None) -> RegistryClient:
    return RegistryClient(host or reg.host, credentials=Credentials(reg.user, reg.password, "test"))


def _subject(c: RegistryClient, repo: str) -> tuple[str, dict]:
    """An image to refer to: pushed, tagged v1; (digest, descriptor)."""
    config, layer = image_config(repo), b"subject layer of " + repo.encode()
    for blob in (config, layer, EMPTY):
        c.upload_blob(repo, digest(blob), len(blob), blob)
    doc = manifest((OCI_CONFIG, config), [(OCI_LAYER, layer)])
    c.put_manifest(repo, "v1", doc, OCI_MANIFEST)
    return digest(doc), descriptor(OCI_MANIFEST, doc)


def _artifact(c: RegistryClient, repo: str, subject: dict, payload: bytes, **kw) -> bytes:
    """A referrer of ``subject``: one layer holding ``payload``, config empty or typed."""
    c.upload_blob(repo, digest(payload), len(payload), payload)
    config = kw.pop("config", (EMPTY_TYPE, EMPTY))
    c.upload_blob(repo, digest(config[1]), len(config[1]), config[1])
    return manifest(config, [("application/octet-stream", payload)], subject=subject, **kw)


# --------------------------------------------------------------------------- the tag schema on 2.8


def test_referrers_tag_is_the_spec_table():
    """The three rows of the spec's Referrers Tag Schema table."""
    assert referrers_tag("sha256:" + "a" * 64) == "sha256-" + "a" * 64
    assert referrers_tag("sha512:" + "a" * 128) == "sha512-" + "a" * 64
    odd = (
        "test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation:"
        "alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation"
    )
    assert referrers_tag(odd) == (
        "test-algorithm-using-algorithm-s-alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot"
    )


@pytest.mark.parametrize("which", AUTHS)
def test_fallback_tag_on_a_registry_without_the_api(which, request, unique_repo):
    reg, repo = request.getfixturevalue(which), unique_repo("refs")
    with _client(reg) as c:
        subject_digest, subject = _subject(c, repo)
        sig = _artifact(c, repo, subject, b"signature", artifact_type=SIG, annotations={"k": "sig"})
        sbom = _artifact(c, repo, subject, b"{}\n", config=(SBOM, b'{"spdxVersion":"SPDX-2.3"}'))
        first = c.attach_referrer(repo, sig, OCI_MANIFEST)
        second = c.attach_referrer(repo, sbom, OCI_MANIFEST)
        again = c.attach_referrer(repo, sig, OCI_MANIFEST)  # idempotent: no second entry
        found = c.referrers(repo, subject_digest)
        assert c.referrers_api is False  # learned from distribution's 404 on the endpoint
        signatures = c.referrers(repo, subject_digest, artifact_type=SIG)
        index, media_type, index_digest = c.get_manifest(repo, referrers_tag(subject_digest), [OCI_INDEX])
    assert (first.via, first.digest, first.subject) == ("referrers-tag", digest(sig), subject_digest)
    assert first.tag == "sha256-" + subject_digest.split(":")[1]
    assert second.index_digest == again.index_digest == index_digest
    assert media_type == OCI_INDEX
    assert json.loads(index) == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {**descriptor(OCI_MANIFEST, sig), "artifactType": SIG, "annotations": {"k": "sig"}},
            {**descriptor(OCI_MANIFEST, sbom), "artifactType": SBOM},  # the config's type, as the spec says
        ],
    }
    assert [(d.digest, d.artifact_type, d.annotations) for d in found] == [
        (digest(sig), SIG, {"k": "sig"}),
        (digest(sbom), SBOM, {}),
    ]
    assert [d.digest for d in signatures] == [digest(sig)]


def test_no_referrers_and_no_repository(basic_registry, unique_repo):
    repo = unique_repo("refs")
    with _client(basic_registry) as c:
        subject_digest, _ = _subject(c, repo)
        assert c.referrers(repo, subject_digest) == []
        assert c.referrers(unique_repo("refs"), subject_digest) == []


def test_a_tag_holding_something_else_is_left_alone(basic_registry, unique_repo):
    """Spec: "If that pull returns a manifest other than the expected image index, the client
    SHOULD report a failure and skip the remaining steps." Reading, it means no referrers."""
    repo = unique_repo("refs")
    with _client(basic_registry) as c:
        subject_digest, subject = _subject(c, repo)
        squatter = manifest((OCI_CONFIG, image_config(repo)), [])
        c.put_manifest(repo, referrers_tag(subject_digest), squatter, OCI_MANIFEST)
        sig = _artifact(c, repo, subject, b"sig", artifact_type=SIG)
        with pytest.raises(RegistryError, match=r"is not an OCI image index|not an OCI image index; not changing it"):
            c.attach_referrer(repo, sig, OCI_MANIFEST)
        assert c.referrers(repo, subject_digest) == []
        assert c.get_manifest(repo, referrers_tag(subject_digest))[0] == squatter


def test_a_concurrent_writer_does_not_lose_our_entry(basic_registry, unique_repo):
    """Another client rewrites the fallback index right after our write (a front before the real
    registry does it at that moment, with an index holding only its own entry). We read back,
    see our entry gone, merge again: both entries end up in the index."""
    repo = unique_repo("refs")
    front = Front(basic_registry.url)
    with _client(basic_registry) as c:
        subject_digest, subject = _subject(c, repo)
        theirs = _artifact(c, repo, subject, b"theirs", artifact_type=SBOM)
        c.put_manifest(repo, digest(theirs), theirs, OCI_MANIFEST)
        ours = _artifact(c, repo, subject, b"ours", artifact_type=SIG)
    tag = referrers_tag(subject_digest)
    their_index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{**descriptor(OCI_MANIFEST, theirs)}]}
    ).encode()
    raced: list[int] = []

    def race(request: Request):
        if request.method == "PUT" and request.path.endswith(f"/manifests/{tag}") and not raced:
            r = front.forward(request)
            if r.status_code == 201:  # ours landed; now the other writer's lands on top
                raced.append(front.forward(request, body=their_index).status_code)
            headers = {k: v for k, v in r.headers.items() if k.lower() in ("www-authenticate", "location")}
            return r.status_code, {**headers, "Docker-Content-Digest": digest(request.body)}, r.content
        return None

    front.intercept = race
    try:
        with _client(basic_registry, front.host) as c:
            attached = c.attach_referrer(repo, ours, OCI_MANIFEST)
            found = {d.digest for d in c.referrers(repo, subject_digest)}
    finally:
        front.stop()
    assert raced == [201]
    assert found == {digest(theirs), digest(ours)}
    puts = [r for r in front.requests if r.method == "PUT" and r.path.endswith(tag) and "Authorization" in r.headers]
    assert len(puts) == 2  # ours, then ours merged into theirs
    assert puts[0].headers.get("If-None-Match") == "*"  # the tag did not exist: create-only, where honoured
    assert puts[1].headers.get("If-Match", "").strip('"').startswith("sha256:")
    assert attached.via == "referrers-tag"


# --------------------------------------------------------------------------- the referrers API


@pytest.mark.parametrize("which", AUTHS)
def test_the_api_when_the_registry_has_it(which, request, unique_repo):
    reg, repo = request.getfixturevalue(which), unique_repo("api")
    api = ReferrersApi(reg.url, page_size=1)
    try:
        with _client(reg, api.host) as c:
            subject_digest, subject = _subject(c, repo)
            sig = _artifact(c, repo, subject, b"signature", artifact_type=SIG, annotations={"k": "v"})
            sbom = _artifact(c, repo, subject, b"{}", config=(SBOM, b"{}"))
            attached = [c.attach_referrer(repo, doc, OCI_MANIFEST) for doc in (sig, sbom)]
            assert c.referrers_api is True  # learned from OCI-Subject on the PUT
            found = c.referrers(repo, subject_digest)
            sboms = c.referrers(repo, subject_digest, artifact_type=SBOM)
            tags = c.list_tags(repo)
        pages = [r for r in api.requests if "/referrers/" in r.path and "Authorization" in r.headers]
        api.requests.clear()
        with _client(reg, api.host) as fresh:  # no token or scheme yet: the front's answer challenges it
            assert [d.digest for d in fresh.referrers(repo, subject_digest, artifact_type=SIG)] == [digest(sig)]
    finally:
        api.stop()
    asked = [("Authorization" in r.headers) for r in api.requests if "/referrers/" in r.path]
    assert asked == [False, True]
    assert [a.via for a in attached] == ["referrers-api", "referrers-api"]
    assert [(d.digest, d.artifact_type, d.annotations) for d in found] == [
        (digest(sig), SIG, {"k": "v"}),
        (digest(sbom), SBOM, {}),
    ]
    assert [d.digest for d in sboms] == [digest(sbom)]
    assert tags == ["v1"]  # no fallback tag was written
    assert [r.params.get("page") for r in pages] == [None, "1", None]  # two pages of one, then filtered


def test_a_missing_repository_is_not_taken_for_a_missing_api(basic_registry, unique_repo):
    """A registry with the API answers 404 NAME_UNKNOWN for a repository that does not exist:
    that says nothing about the API, so the next call still asks it."""
    repo = unique_repo("api")
    api = ReferrersApi(basic_registry.url)
    try:
        with _client(basic_registry, api.host) as c:
            assert c.referrers(unique_repo("api"), "sha256:" + "1" * 64) == []
            assert c.referrers_api is None
            subject_digest, subject = _subject(c, repo)
            c.attach_referrer(repo, _artifact(c, repo, subject, b"s", artifact_type=SIG), OCI_MANIFEST)
            assert [d.artifact_type for d in c.referrers(repo, subject_digest)] == [SIG]
    finally:
        api.stop()
    assert c.referrers_api is True


def test_referrer_pages_add_up_to_one_json_cap(basic_registry, unique_repo):
    """A registry paging one descriptor at a time cannot make the listing grow without bound."""
    repo = unique_repo("api")
    api = ReferrersApi(basic_registry.url, page_size=1)
    try:
        with _client(basic_registry, api.host) as c:
            subject_digest, subject = _subject(c, repo)
            for n in range(3):
                c.attach_referrer(repo, _artifact(c, repo, subject, b"%d" % n, artifact_type=SIG), OCI_MANIFEST)
            assert len(c.referrers(repo, subject_digest)) == 3
        pages = [len(r) for r in api.answered]
        creds = Credentials(basic_registry.user, basic_registry.password, "t")
        cap = pages[-3] + pages[-2] + pages[-1] // 2  # two pages fit, the third does not
        with (
            RegistryClient(api.host, credentials=creds, max_json=cap) as small,
            pytest.raises(RegistryError, match="the pages add up to more than"),
        ):
            small.referrers(repo, subject_digest)
    finally:
        api.stop()


def test_the_api_filter_is_applied_here_when_the_registry_did_not(basic_registry, unique_repo):
    """A registry may ignore artifactType (no OCI-Filters-Applied): the client filters."""
    repo = unique_repo("api")
    api = ReferrersApi(basic_registry.url)
    plain = api._list

    def unfiltered(request: Request, name: str, subject: str):
        request.query = ""  # drop the filter before the registry sees it
        return plain(request, name, subject)

    api._list = unfiltered
    try:
        with _client(basic_registry, api.host) as c:
            subject_digest, subject = _subject(c, repo)
            for doc in (_artifact(c, repo, subject, b"a", artifact_type=SIG), _artifact(c, repo, subject, b"b")):
                c.attach_referrer(repo, doc, OCI_MANIFEST)
            assert [d.artifact_type for d in c.referrers(repo, subject_digest)] == [SIG, EMPTY_TYPE]
            assert [d.artifact_type for d in c.referrers(repo, subject_digest, artifact_type=SIG)] == [SIG]
    finally:
        api.stop()


def test_the_spec_example_answer_is_read(basic_registry, unique_repo):
    """The Listing Referrers example of the spec, served as the answer. The spec abbreviates its
    digests (``sha256:a1a1a1...``) and leaves a trailing comma in the third entry's annotations;
    those are completed and removed so the answer is JSON with real digests."""
    example = """{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "size": 1234,
          "digest": "sha256:a1a1a1...",
          "artifactType": "application/vnd.example.sbom.v1",
          "annotations": {
            "org.opencontainers.image.created": "2022-01-01T14:42:55Z",
            "org.example.sbom.format": "json"
          }
        },
        {
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "size": 1234,
          "digest": "sha256:a2a2a2...",
          "artifactType": "application/vnd.example.signature.v1",
          "annotations": {
            "org.opencontainers.image.created": "2022-01-01T07:21:33Z",
            "org.example.signature.fingerprint": "abcd"
          }
        },
        {
          "mediaType": "application/vnd.oci.image.index.v1+json",
          "size": 1234,
          "digest": "sha256:a3a3a3...",
          "annotations": {
            "org.opencontainers.image.created": "2023-01-01T07:21:33Z"
          }
        }
      ]
    }"""
    for short in ("a1", "a2", "a3"):
        example = example.replace(f"sha256:{short * 3}...", f"sha256:{short * 32}")
    api = Front(basic_registry.url)
    api.intercept = lambda r: (
        (200, {"Content-Type": OCI_INDEX}, example.encode()) if _REFERRERS.fullmatch(r.path) else None
    )
    try:
        with _client(basic_registry, api.host) as c:
            found = c.referrers("team/site", "sha256:" + "0" * 64)
    finally:
        api.stop()
    assert [(d.media_type, d.digest[:9], d.size, d.artifact_type) for d in found] == [
        (OCI_MANIFEST, "sha256:a1", 1234, "application/vnd.example.sbom.v1"),
        (OCI_MANIFEST, "sha256:a2", 1234, "application/vnd.example.signature.v1"),
        (OCI_INDEX, "sha256:a3", 1234, ""),
    ]
    assert found[1].annotations["org.example.signature.fingerprint"] == "abcd"
