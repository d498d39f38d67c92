"""Real registries for the registry tests: Debian's ``docker-registry`` (distribution 2.8) started
on 127.0.0.1 free ports, one with htpasswd basic auth and one with token auth served by a small
Python token server signing JWTs with a key made here. Plus a scriptable fake registry for the
faults a real one will not produce on demand. Every process and server is stopped on teardown.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SERVICE = "imgforge-test-registry"
ISSUER = "imgforge-test-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningRegistry:
    host: str  # 127.0.0.1:PORT
    user: str
    password: str = field(repr=False)
    proc: subprocess.Popen = field(repr=False)
    log: Path
    tokens: "TokenServer | None" = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def admin(self, repo: str) -> requests.Session:
        """A session allowed to push to ``repo`` (basic auth, or a token fetched directly)."""
        s = requests.Session()
        s.trust_env = False
        if self.tokens is None:
            s.auth = (self.user, self.password)
        else:
            r = requests.get(self.tokens.url, params={"service": SERVICE, "scope": f"repository:{repo}:pull,push"},
                             auth=(self.user, self.password), timeout=5)
            r.raise_for_status()
            s.headers["Authorization"] = "Bearer " + r.json()["token"]
        return s


def _start_registry(tmp: Path, auth: dict, user: str, password: str) -> RunningRegistry:
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(8)},
        "auth": auth,
    }
    (tmp / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log = tmp / "registry.log"
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(tmp / "config.yml")], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return RunningRegistry(f"127.0.0.1:{port}", user, password, proc, log)
        except requests.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("docker-registry did not start within 15 s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory) -> RunningRegistry:
    """distribution with htpasswd (bcrypt) basic auth."""
    tmp = tmp_path_factory.mktemp("basic-registry")
    user, password = "ci-bot", "pw-" + secrets.token_hex(12)
    hashed = subprocess.run(["htpasswd", "-nbB", "-C", "5", user, password], check=True,
                            capture_output=True, text=True).stdout.strip()
    (tmp / "htpasswd").write_text(hashed + "\n")
    reg = _start_registry(tmp, {"htpasswd": {"realm": "imgforge-test", "path": str(tmp / "htpasswd")}},
                          user, password)
    yield reg
    _stop(reg.proc)


# --------------------------------------------------------------------------- token auth


class TokenServer:
    """Issues registry JWTs (ES256, ``x5c`` header) for correct basic credentials.

    Knobs the tests turn: ``key_name`` (``token`` or ``access_token``), ``expires_in``,
    ``expired_next`` (issue tokens already past exp+leeway, so the registry rejects them),
    ``anonymous_pull`` (grant pull without credentials).
    """

    def __init__(self, tmp: Path, user: str, password: str):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.user, self.password = user, password
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imgforge-test-token-signer")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.cert_pem = tmp / "token-signer.pem"
        self.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.key_name = "token"
        self.expires_in = 300
        self.expired_next = 0
        self.anonymous_pull = False
        self.issued: list[str] = []
        self.requests: list[dict] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/token"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        self.key_name, self.expires_in, self.expired_next, self.anonymous_pull = "token", 300, 0, False
        self.requests.clear()

    def sign(self, scope: str, authorized: bool) -> str:
        import jwt

        access = []
        for item in scope.split(" ") if scope else []:
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = actions.split(",")
            granted = wanted if authorized else [a for a in wanted if a == "pull" and self.anonymous_pull]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        exp = now + self.expires_in
        if self.expired_next > 0:
            self.expired_next -= 1
            exp = now - 600  # past the registry's 60 s leeway: it must answer 401
        claims = {"iss": ISSUER, "sub": self.user if authorized else "", "aud": SERVICE, "exp": exp,
                  "nbf": now - 10, "iat": now - 10, "jti": uuid.uuid4().hex, "access": access}
        token = jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": self.x5c})
        self.issued.append(token)
        return token

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                header = self.headers.get("Authorization", "")
                authorized = False
                if header.startswith("Basic "):
                    user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
                    if (user, pw) != (server.user, server.password):
                        return self._send(401, {"details": "bad credentials"})
                    authorized = True
                server.requests.append({"authorized": authorized, **query})
                token = server.sign(query.get("scope", ""), authorized)
                self._send(200, {server.key_name: token, "expires_in": server.expires_in})

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory) -> RunningRegistry:
    """distribution with ``auth.token`` trusting the certificate of a test token server."""
    tmp = tmp_path_factory.mktemp("token-registry")
    user, password = "robot$ci", "tk-" + secrets.token_hex(12)
    tokens = TokenServer(tmp, user, password)
    auth = {"token": {"realm": tokens.url, "service": SERVICE, "issuer": ISSUER,
                      "rootcertbundle": str(tokens.cert_pem)}}
    try:
        reg = _start_registry(tmp, auth, user, password)
    except Exception:
        tokens.stop()
        raise
    reg.tokens = tokens
    yield reg
    _stop(reg.proc)
    tokens.stop()


@pytest.fixture
def tokens(token_registry) -> TokenServer:
    """The token server of ``token_registry``, its knobs reset for this test."""
    token_registry.tokens.reset()
    yield token_registry.tokens
    token_registry.tokens.reset()


# --------------------------------------------------------------------------- seeding tags


def _blob(s: requests.Session, base: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = s.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=10)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    location = location if "://" in location else base + location
    sep = "&" if "?" in location else "?"
    r = s.put(f"{location}{sep}digest={digest}", data=data,
              headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert r.status_code == 201, r.text
    return digest


def seed_tags(reg: RunningRegistry, repo: str, tags: list[str]) -> str:
    """Upload one tiny image through the API, then PUT its manifest under every tag. Returns its digest."""
    s = reg.admin(repo)
    layer = b"imgforge test layer"  # content does not matter to the registry for a manifest PUT
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {}}).encode()
    config_digest = _blob(s, reg.url, repo, config)
    layer_digest = _blob(s, reg.url, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                    "digest": layer_digest}],
    }).encode()
    def put(tag: str) -> None:
        r = s.put(f"{reg.url}/v2/{repo}/manifests/{tag}", data=manifest, timeout=10,
                  headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
        assert r.status_code == 201, r.text

    with ThreadPoolExecutor(4) as pool:  # the registry checks a bcrypt hash per request: overlap them
        list(pool.map(put, tags))
    s.close()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


@pytest.fixture
def seed() -> Callable[[RunningRegistry, str, list[str]], str]:
    return seed_tags


@pytest.fixture
def unique_repo() -> Callable[[str], str]:
    """A repository name no other test uses (registries are shared by the whole session)."""
    return lambda prefix="t": f"{prefix}/r{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- fake registry and paging front


@dataclass
class Call:
    method: str
    path: str
    query: dict
    headers: dict = field(repr=False)


class FakeRegistry:
    """A tiny HTTP server whose answers a test scripts: ``respond(call) -> (status, headers, body)``.

    Used for faults a real registry will not produce on demand, and (see :func:`paging_front`)
    for the ``n``/``last`` paging that distribution 2.8 does not implement.
    """

    def __init__(self):
        self.calls: list[Call] = []
        self.respond: Callable[[Call], tuple[int, dict, object]] = lambda call: (404, {}, {})
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                call = Call(self.command, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                            dict(self.headers))
                fake.calls.append(call)
                status, headers, body = fake.respond(call)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = _answer

        return Handler


@pytest.fixture
def fake_registry() -> FakeRegistry:
    fake = FakeRegistry()
    yield fake
    fake.stop()


def paging_front(upstream: RunningRegistry) -> FakeRegistry:
    """Distribution 2.8 ignores ``n`` and ``last`` on tags/list (paging arrived in v3), so this
    front pages the upstream's REAL tag list as v3 does: sorted, ``n``/``last``, and a relative
    ``Link: </v2/...?last=..&n=..>; rel="next"``. Auth is the upstream's: the client's
    Authorization header is passed through and challenges are passed back."""
    front = FakeRegistry()
    session = requests.Session()
    session.trust_env = False

    def respond(call: Call) -> tuple[int, dict, object]:
        headers = {k: v for k, v in call.headers.items() if k.lower() in ("authorization", "accept")}
        r = session.request(call.method, upstream.url + call.path, headers=headers, timeout=10)
        passed = {k: v for k, v in r.headers.items() if k.lower() in ("www-authenticate", "docker-content-digest")}
        if r.status_code != 200 or not call.path.endswith("/tags/list"):
            return r.status_code, passed, r.content
        tags = sorted(r.json().get("tags") or [])
        if "last" in call.query:
            tags = [t for t in tags if t > call.query["last"]]
        if "n" in call.query and len(tags) > int(call.query["n"]):
            n = int(call.query["n"])
            tags = tags[:n]
            passed["Link"] = f'<{call.path}?last={tags[-1]}&n={n}>; rel="next"'
        return 200, passed, {"name": call.path[4:-10], "tags": tags}

    front.respond = respond
    return front


# --------------------------------------------------------------------------- images and catalogs


@pytest.fixture
def tiny_image(docker_client):
    """``tiny_image("127.0.0.1:PORT/repo:tag")`` builds a one-file image (distinct content per call,
    so each test has its own image id and verify record) and removes everything it tagged."""
    import io
    import tarfile

    made: list[str] = []

    def build(reference: str):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in (("Dockerfile", b"FROM scratch\nCOPY hello /hello\n"),
                               ("hello", f"hello {uuid.uuid4()}\n".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        image, _ = docker_client.images.build(fileobj=buf, custom_context=True, tag=reference, rm=True)
        made.append(image.id)
        return image

    yield build
    for image_id in made:
        try:
            docker_client.images.remove(image_id, force=True)
        except Exception:  # already gone
            pass


@pytest.fixture
def registry_env(monkeypatch, tmp_path):
    """Point credentials at a test registry through the documented environment variables."""

    def use(reg: RunningRegistry) -> None:
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
        monkeypatch.setenv("IMGFORGE_REGISTRY_USER", reg.user)
        monkeypatch.setenv("IMGFORGE_REGISTRY_PASSWORD", reg.password)
        monkeypatch.setenv("IMGFORGE_REGISTRY_HOST", reg.host)

    return use
