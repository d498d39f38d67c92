"""What a hostile or broken registry can do to a blob or manifest transfer, and what we do.

Each attack comes from a real socket on loopback: a :class:`~tests.registry.fronts.Front` before
the real distribution registry that changes the one answer under test (wrong bytes, a redirect
to a storage host, an upload location elsewhere), or a :class:`~tests.registry.fronts.Loopback`
serving a slow or oversized blob. The client is the public one; nothing is patched.
"""

from __future__ import annotations

import os
import time

import pytest

from imgforge.errors import RegistryError
from imgforge.image import RegistrySource, resolve
from imgforge.registry import Credentials, DigestMismatch, RegistryClient, RegistryUnavailable
from tests.registry.artifacts import OCI_CONFIG, OCI_MANIFEST, digest, image_config, manifest
from tests.registry.fronts import Front, Loopback, Request, drip

pytestmark = pytest.mark.registry
REPO = "team/site"
AUTHS = ["basic_registry", "token_registry"]


def _client(reg_or_host, **kw) -> RegistryClient:
    if isinstance(reg_or_host, str):
        return RegistryClient(reg_or_host, credentials=kw.pop("credentials", None), attempts=1, **kw)
    creds = Credentials(reg_or_host.user, reg_or_host.password, "test")
    return RegistryClient(reg_or_host.host, credentials=creds, attempts=1, **kw)


def _seed(reg, repo: str, data: bytes) -> None:
    with _client(reg) as c:
        c.upload_blob(repo, digest(data), len(data), data)


@pytest.fixture
def front(basic_registry):
    f = Front(basic_registry.url)
    yield f
    f.stop()


def _drain(c: RegistryClient, blob: str, size: int | None) -> None:
    with c.open_blob(REPO, blob, size) as stream:
        while stream.read(1024):
            pass


def _blob_get(request: Request, repo: str) -> bool:
    return request.method == "GET" and request.path.startswith(f"/v2/{repo}/blobs/sha256:")


# --------------------------------------------------------------------------- wrong bytes


def test_wrong_bytes_for_a_digest_are_refused_at_the_end(basic_registry, front, unique_repo):
    """Same length, other content: every byte reads, and the read that would end raises."""
    repo, data = unique_repo("evil"), os.urandom(200_000)
    _seed(basic_registry, repo, data)
    forged = bytes(b ^ 0xFF for b in data)
    front.intercept = lambda r: (200, {"Content-Length": str(len(forged))}, forged) if _blob_get(r, repo) else None
    with _client(front.host, credentials=Credentials(basic_registry.user, basic_registry.password, "t")) as c:
        stream = c.open_blob(repo, digest(data), len(data))
        assert len(stream.read(len(data))) == len(data)  # unverified until the end
        with pytest.raises(DigestMismatch) as e:
            stream.read(1)
        stream.close()
    assert str(e.value) == (
        f"registry {front.host} (repository {repo}) blob {digest(data)}: "
        f"served content whose digest is {digest(forged)}; not using it"
    )
    assert e.value.exit_code == 7


def test_wrong_manifest_bytes_and_a_lying_content_digest_are_refused(basic_registry, front, unique_repo):
    repo, config = unique_repo("evil"), image_config("e")
    doc = manifest((OCI_CONFIG, config), [])
    with _client(basic_registry) as c:
        c.upload_blob(repo, digest(config), len(config), config)
        c.put_manifest(repo, "v1", doc, OCI_MANIFEST)
    other = manifest((OCI_CONFIG, config), [], annotations={"evil": "1"})

    def lie(request: Request):
        if request.method == "GET" and "/manifests/" in request.path:
            claim = digest(doc)  # the honest digest of the honest manifest, sent with other bytes
            return 200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": claim}, other
        return None

    front.intercept = lie
    with _client(front.host, credentials=Credentials(basic_registry.user, basic_registry.password, "t")) as c:
        with pytest.raises(DigestMismatch, match=f"served content whose digest is {digest(other)}"):
            c.get_manifest(repo, digest(doc))
        with pytest.raises(DigestMismatch, match=f"the registry claims {digest(doc)}, but the bytes are"):
            c.get_manifest(repo, "v1")
        with pytest.raises(DigestMismatch):  # the image reader over this client refuses it too
            resolve(RegistrySource(c, repo, digest(doc)))


def test_a_stored_digest_other_than_the_bytes_is_an_error(basic_registry, front, unique_repo):
    repo, config = unique_repo("evil"), image_config("s")
    with _client(basic_registry) as c:
        c.upload_blob(repo, digest(config), len(config), config)

    def relabel(request: Request):
        if request.method == "PUT" and "/manifests/" in request.path:
            r = front.forward(request)
            headers = {k: v for k, v in r.headers.items() if k.lower() in ("www-authenticate", "location")}
            return r.status_code, {**headers, "Docker-Content-Digest": digest(b"something else")}, r.content
        return None

    front.intercept = relabel
    with (
        _client(front.host, credentials=Credentials(basic_registry.user, basic_registry.password, "t")) as c,
        pytest.raises(DigestMismatch, match="stored it as sha256:"),
    ):
        c.put_manifest(repo, "v1", manifest((OCI_CONFIG, config), []), OCI_MANIFEST)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("declared", [True, False])
def test_more_bytes_than_the_descriptor_are_refused(declared):
    """Declared: refused before the body is read. Chunked: refused at the first byte past it."""
    size, body = 1000, os.urandom(4 * 1024 * 1024)
    headers = {"Content-Length": str(len(body))} if declared else {}
    server = Loopback(lambda r: (200, headers, iter([body[i : i + 65536] for i in range(0, len(body), 65536)])))
    try:
        with _client(server.host) as c, pytest.raises(RegistryError) as e:
            _drain(c, digest(body[:size]), size)
    finally:
        server.stop()
    where = f"registry {server.host} (repository {REPO}) blob {digest(body[:size])}"
    expected = "declared 4194304 bytes where 1000 were expected; not reading it"
    if not declared:
        expected = "served more than the 1000 bytes expected"
    assert str(e.value) == f"{where}: {expected}"


def test_a_blob_without_size_or_length_is_not_read(unique_repo):
    server = Loopback(lambda r: (200, {}, iter([b"x" * 10])))
    try:
        with _client(server.host) as c, pytest.raises(RegistryError, match="sent no Content-Length"):
            c.open_blob(REPO, digest(b"x" * 10))
    finally:
        server.stop()


def test_a_blob_over_max_blob_is_refused_unread():
    server = Loopback(lambda r: (200, {"Content-Length": str(1 << 40)}, b""))
    try:
        with (
            _client(server.host, max_blob=1 << 20) as c,
            pytest.raises(RegistryError, match="above the limit of 1 MiB"),
        ):
            c.open_blob(REPO, digest(b"y"))
    finally:
        server.stop()


def test_an_encoded_blob_is_refused_unread():
    """Blob bytes are hashed as stored: we ask for no transfer encoding and refuse one anyway."""
    import gzip

    packed = gzip.compress(b"z" * 1000)
    server = Loopback(lambda r: (200, {"Content-Encoding": "gzip", "Content-Length": str(len(packed))}, packed))
    try:
        with _client(server.host) as c, pytest.raises(RegistryError, match="sent an encoded body"):
            c.open_blob(REPO, digest(b"z" * 1000), 1000)
    finally:
        server.stop()
    assert server.requests[0].headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("where", ["head-size", "head-digest", "mount-digest", "upload-digest"])
def test_headers_that_contradict_the_blob_are_errors(where, basic_registry, front, unique_repo):
    """A registry whose answers name another digest or size than the blob asked about."""
    source, repo, data = unique_repo("lies"), unique_repo("lies"), os.urandom(2000)
    _seed(basic_registry, source, data)
    other = digest(b"another blob")

    def lie(request: Request):
        if "Authorization" not in request.headers:
            return None
        r = front.forward(request)
        headers = front.relayed(request, r)
        blob_head = request.method == "HEAD" and "/blobs/sha256:" in request.path
        if where == "head-size" and blob_head:
            headers["Content-Length"] = "5"
        elif (
            (where == "head-digest" and blob_head)
            or (where == "mount-digest" and request.method == "POST" and r.status_code == 201)
            or (where == "upload-digest" and request.method == "PUT" and r.status_code == 201)
        ):
            headers["Docker-Content-Digest"] = other
        return r.status_code, headers, r.content

    calls = {
        "head-size": lambda c: c.upload_blob(source, digest(data), len(data), data),
        "head-digest": lambda c: c.upload_blob(source, digest(data), len(data), data),
        "mount-digest": lambda c: c.mount_blob(repo, digest(data), source),
        "upload-digest": lambda c: c.upload_blob(repo, digest(data), len(data), data),
    }
    front.intercept = lie
    with (
        _client(front.host, credentials=Credentials(basic_registry.user, basic_registry.password, "t")) as c,
        pytest.raises(RegistryError) as e,
    ):
        calls[where](c)
    expected = {
        "head-size": f"holds blob {digest(data)} with 5 bytes, not 2000",
        "head-digest": f"the registry answered for {other}",
        "mount-digest": f"mounted {other} for blob {digest(data)}",
        "upload-digest": f"stored blob {digest(data)} as {other}",
    }[where]
    assert expected in str(e.value)
    assert e.value.exit_code == 7


# --------------------------------------------------------------------------- the scaled deadline


@pytest.mark.parametrize("size_given", [True, False])
def test_a_slow_blob_ends_at_the_deadline_scaled_by_its_size(size_given):
    """4 KiB at a floor of 2 KiB/s after a 1 s base: 3 s. The server needs 16 s (256 bytes
    every second), each read is quick, so only the scaled total deadline ends it, once."""
    data = os.urandom(4096)
    server = Loopback(lambda r: (200, {"Content-Length": str(len(data))}, drip(data, 256, 1.0)))
    started = time.monotonic()
    try:
        with _client(server.host, timeout=(1.0, 1.0), min_rate=2048) as c, pytest.raises(RegistryUnavailable) as e:
            _drain(c, digest(data), len(data) if size_given else None)
    finally:
        server.stop()
    elapsed = time.monotonic() - started
    assert str(e.value) == f"registry {server.host} (repository {REPO}) blob {digest(data)} timed out (limit 3s)"
    assert e.value.exit_code == 7
    assert 2.5 < elapsed < 8  # past the 1 s base deadline, well before the 16 s the server needs


# --------------------------------------------------------------------------- where credentials go


@pytest.mark.parametrize("which", AUTHS)
def test_a_blob_redirected_to_another_host_gets_no_credentials(which, request, unique_repo):
    """Registries send blob GETs to storage (S3, a CDN) with a 307. The storage host here is
    127.0.0.2, another loopback address; it records what arrives and serves the real bytes."""
    reg, repo, data = request.getfixturevalue(which), unique_repo("redir"), os.urandom(100_000)
    _seed(reg, repo, data)
    storage = Loopback(lambda r: (200, {"Content-Length": str(len(data))}, data), host="127.0.0.2")
    front = Front(reg.url)
    location = f"{storage.url}/blobs/{digest(data)}?X-Signature=abc"
    front.intercept = lambda r: (
        (307, {"Location": location}, b"") if _blob_get(r, repo) and "Authorization" in r.headers else None
    )
    try:
        creds = Credentials(reg.user, reg.password, "t")
        with RegistryClient(front.host, credentials=creds) as c, c.open_blob(repo, digest(data), len(data)) as s:
            assert s.read() == data
    finally:
        front.stop()
        storage.stop()
    assert [r.path for r in storage.requests] == [f"/blobs/{digest(data)}"]
    arrived = {k.lower(): v for k, v in storage.requests[0].headers.items()}
    assert "authorization" not in arrived
    assert reg.password not in str(arrived)
    assert [r for r in front.requests if _blob_get(r, repo) and "Authorization" in r.headers]  # it did ask


def test_an_upload_location_on_another_host_gets_no_credentials(basic_registry, front, unique_repo):
    """The spec lets a registry hand out an upload location elsewhere; our Authorization stays home."""
    repo, data = unique_repo("loc"), os.urandom(1000)
    elsewhere = Loopback(lambda r: (201, {"Location": f"/v2/{repo}/blobs/{digest(data)}"}, b""), host="127.0.0.2")
    front.intercept = lambda r: (
        (202, {"Location": f"{elsewhere.url}/upload/1?_state=x"}, b"")
        if r.method == "POST" and "Authorization" in r.headers
        else None
    )
    try:
        with _client(front.host, credentials=Credentials(basic_registry.user, basic_registry.password, "t")) as c:
            assert c.upload_blob(repo, digest(data), len(data), data) is True
    finally:
        elsewhere.stop()
    assert [(r.method, r.params.get("digest")) for r in elsewhere.requests] == [("PUT", digest(data))]
    assert elsewhere.requests[0].body == data
    assert "authorization" not in {k.lower() for k in elsewhere.requests[0].headers}
