"""Blob calls against real distribution 2.8 registries (basic auth and token auth): upload,
skip when present, mount across repositories, stream back, in constant memory."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc

import pytest

from imgforge.errors import RegistryError
from imgforge.registry import BlobNotFound, Credentials, DigestMismatch, RegistryClient
from tests.registry.artifacts import digest

pytestmark = pytest.mark.registry

MiB = 1024 * 1024
AUTHS = ["basic_registry", "token_registry"]


def _client(reg, host: str | None = None, **kw) -> RegistryClient:
    return RegistryClient(host or reg.host, credentials=Credentials(reg.user, reg.password, "test"), **kw)


def _access(scope: str) -> dict[str, set[str]]:
    """``repository:a:push,pull repository:b:pull`` → {a: {pull, push}, b: {pull}} (order varies)."""
    return {item.split(":")[1]: set(item.split(":")[2].split(",")) for item in scope.split()}


def _read(stream, chunk: int = 64 * 1024) -> bytes:
    parts = []
    with stream:
        while piece := stream.read(chunk):
            parts.append(piece)
    return b"".join(parts)


@pytest.mark.parametrize("which", AUTHS)
def test_upload_skip_and_read_back(which, request, unique_repo):
    reg, repo = request.getfixturevalue(which), unique_repo("blobs")
    data = os.urandom(100_000)
    with _client(reg) as c:
        assert c.blob_exists(repo, digest(data)) is None
        assert c.upload_blob(repo, digest(data), len(data), data) is True
        assert c.upload_blob(repo, digest(data), len(data), data) is False  # HEAD says it is there
        assert c.blob_exists(repo, digest(data)) == len(data)
        assert _read(c.open_blob(repo, digest(data), len(data))) == data
        assert _read(c.open_blob(repo, digest(data))) == data  # size from Content-Length


def test_present_blob_and_mount_send_no_bytes(basic_registry, unique_repo):
    """Through a recording front before the real registry: a blob the repository holds costs one
    HEAD; a mount is one POST; neither sends the blob's bytes."""
    from tests.registry.fronts import Front

    source, target, data = unique_repo("rec"), unique_repo("rec"), os.urandom(30_000)
    front = Front(basic_registry.url)
    try:
        with _client(basic_registry, host=front.host) as c:
            c.upload_blob(source, digest(data), len(data), data)
            front.requests.clear()
            assert c.upload_blob(source, digest(data), len(data), data) is False
            assert c.mount_blob(target, digest(data), source) == "mounted"
    finally:
        front.stop()
    sent = [(r.method, r.path, r.params.get("mount")) for r in front.requests if "Authorization" in r.headers]
    assert sent == [
        ("HEAD", f"/v2/{source}/blobs/{digest(data)}", None),
        ("POST", f"/v2/{target}/blobs/uploads/", digest(data)),
    ]
    assert all(not r.body for r in front.requests)


@pytest.mark.parametrize("which", AUTHS)
def test_mount_across_repositories_sends_no_bytes(which, request, unique_repo):
    reg = request.getfixturevalue(which)
    source, target = unique_repo("mount"), unique_repo("mount")
    data = os.urandom(50_000)
    with _client(reg) as c:
        c.upload_blob(source, digest(data), len(data), io.BytesIO(data))
        assert c.mount_blob(target, digest(data), source) == "mounted"
        assert c.blob_exists(target, digest(data)) == len(data)
        assert _read(c.open_blob(target, digest(data), len(data))) == data
    if reg.tokens is not None:  # one token for both repositories: push here, pull there
        granted = [_access(q["scope"]) for q in reg.tokens.requests]
        assert {target: {"pull", "push"}, source: {"pull"}} in granted  # what the registry's challenge asked


@pytest.mark.parametrize("which", AUTHS)
def test_mount_declined_uploads_through_the_session_or_cancels_it(which, request, unique_repo):
    """distribution answers 202 (an upload session) when the source does not hold the blob."""
    reg = request.getfixturevalue(which)
    empty, target, other = unique_repo("mount"), unique_repo("mount"), unique_repo("mount")
    data = os.urandom(10_000)
    with _client(reg) as c:
        c.upload_blob(empty, digest(b"something else"), 14, b"something else")
        assert c.mount_blob(target, digest(data), empty) == "declined"
        assert c.blob_exists(target, digest(data)) is None
        assert c.mount_blob(other, digest(data), empty, size=len(data), data=data) == "uploaded"
        assert _read(c.open_blob(other, digest(data), len(data))) == data


def test_empty_blob_round_trip(basic_registry, unique_repo):
    repo = unique_repo("blobs")
    with _client(basic_registry) as c:
        assert c.upload_blob(repo, digest(b""), 0, b"") is True
        assert c.blob_exists(repo, digest(b"")) == 0
        assert _read(c.open_blob(repo, digest(b""), 0)) == b""


def test_large_blob_streams_both_ways_in_constant_memory(basic_registry, unique_repo, tmp_path):
    """24 MiB, three times the JSON cap: uploaded from a file and read back 64 KiB at a time,
    each way with a traced peak far below the blob's size."""
    repo, size = unique_repo("large"), 24 * MiB
    source, hasher = tmp_path / "layer.bin", hashlib.sha256()
    with source.open("wb") as f:
        for _ in range(size // MiB):
            piece = os.urandom(MiB)
            hasher.update(piece)
            f.write(piece)
    blob = "sha256:" + hasher.hexdigest()
    with _client(basic_registry) as c:
        c.ping()
        with source.open("rb") as f:
            up_peak = _peak(lambda: c.upload_blob(repo, blob, size, f))
        got = hashlib.sha256()

        def download() -> None:
            with c.open_blob(repo, blob, size) as stream:
                while piece := stream.read(64 * 1024):
                    got.update(piece)

        down_peak = _peak(download)
    assert "sha256:" + got.hexdigest() == blob
    assert up_peak < 2 * MiB, up_peak
    assert down_peak < 2 * MiB, down_peak


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_data_that_is_not_the_digest_is_never_stored(basic_registry, unique_repo):
    repo = unique_repo("blobs")
    data, other = os.urandom(200_000), os.urandom(200_000)
    with _client(basic_registry) as c:
        with pytest.raises(DigestMismatch) as e:
            c.upload_blob(repo, digest(data), len(other), io.BytesIO(other))
        assert f"has digest {digest(other)}; not sending it" in str(e.value)
        assert e.value.exit_code == 7
        with pytest.raises(RegistryError, match="ended after 1000 of 200000 bytes"):
            c.upload_blob(repo, digest(data), len(data), io.BytesIO(data[:1000]))
        with pytest.raises(RegistryError, match="longer than 1000 bytes"):
            c.upload_blob(repo, digest(data[:1000]), 1000, io.BytesIO(data))
        assert c.blob_exists(repo, digest(data)) is None
        assert c.blob_exists(repo, digest(data[:1000])) is None


@pytest.mark.parametrize("seekable", [True, False])
def test_a_challenge_on_the_put_rewinds_a_file_and_refuses_a_pipe(seekable, token_registry, tokens, unique_repo):
    """The registry (a front before the real one) answers the blob PUT with a fresh Bearer
    challenge, as a registry does when a token expires mid-push. A file is rewound and sent
    again whole; a pipe cannot be, and that is an error rather than a truncated second send."""
    from tests.registry.conftest import SERVICE
    from tests.registry.fronts import Front

    repo, data = unique_repo("rewind"), os.urandom(300_000)
    front = Front(token_registry.url)
    challenge = f'Bearer realm="{tokens.url}",service="{SERVICE}",scope="repository:{repo}:pull,push"'
    seen: list[int] = []

    def once(request):
        if request.method == "PUT" and not seen:
            seen.append(len(request.body))
            return 401, {"WWW-Authenticate": f'{challenge},error="invalid_token"'}, b"{}"
        return None

    front.intercept = once

    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return seekable

    try:
        with _client(token_registry, host=front.host) as c:
            if seekable:
                assert c.upload_blob(repo, digest(data), len(data), Pipe(data)) is True
                assert _read(c.open_blob(repo, digest(data))) == data
            else:
                with pytest.raises(RegistryError, match="a stream that cannot be read twice"):
                    c.upload_blob(repo, digest(data), len(data), Pipe(data))
    finally:
        front.stop()
    assert seen == [len(data)]
    puts = [r for r in front.requests if r.method == "PUT"]
    assert [len(r.body) for r in puts] == ([len(data), len(data)] if seekable else [len(data)])


def test_missing_blob_is_blob_not_found(basic_registry, unique_repo):
    repo = unique_repo("blobs")
    with _client(basic_registry) as c:
        c.upload_blob(repo, digest(b"x"), 1, b"x")
        with pytest.raises(BlobNotFound) as e:
            c.open_blob(repo, digest(b"y"))
    assert str(e.value) == f"blob {digest(b'y')} not found in repository {repo} on registry {basic_registry.host}"
    assert e.value.exit_code == 7


def test_names_and_digests_cannot_reshape_the_url(basic_registry):
    from imgforge.errors import UsageError

    with _client(basic_registry) as c:
        with pytest.raises(UsageError, match="not a valid repository name"):
            c.blob_exists("team/../admin", digest(b"x"))
        with pytest.raises(ValueError, match="not a sha256 or sha512 digest"):
            c.open_blob("team/site", "sha256:../../v2/_catalog")
        with pytest.raises(UsageError, match="not a tag or a sha256/sha512 digest"):
            c.get_manifest("team/site", "v1?n=1")
