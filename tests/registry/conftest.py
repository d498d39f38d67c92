"""Real registries for the registry tests: Debian's ``docker-registry`` (distribution 2.8) started
on 127.0.0.1 free ports, one with htpasswd basic auth and one with token auth served by a small
Python token server signing JWTs with a key made here. Plus a scriptable fake registry for the
faults a real one will not produce on demand. Every process and server is stopped on teardown.
"""

from __future__ import annotations

import base64
import contextlib
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import remove_test_image

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
    tokens: TokenServer | None = None
    ca: Path | None = None  # the CA that signed its certificate when it serves TLS

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://{self.host}"

    def admin(self, repo: str) -> requests.Session:
        """A session allowed to push to ``repo`` (basic auth, or a token fetched directly)."""
        s = requests.Session()
        s.trust_env = False
        s.verify = str(self.ca) if self.ca else True
        if self.tokens is None:
            s.auth = (self.user, self.password)
        else:
            r = requests.get(
                self.tokens.url,
                params={"service": SERVICE, "scope": f"repository:{repo}:pull,push"},
                auth=(self.user, self.password),
                timeout=5,
            )
            r.raise_for_status()
            s.headers["Authorization"] = "Bearer " + r.json()["token"]
        return s


def _start_registry(
    tmp: Path, auth: dict, user: str, password: str, tls: tuple[Path, Path, Path] | None = None
) -> RunningRegistry:
    """``tls``: (CA certificate, server certificate, server key) to serve HTTPS instead of HTTP."""
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(8)},
        "auth": auth,
    }
    if tls:
        config["http"]["tls"] = {"certificate": str(tls[1]), "key": str(tls[2])}
    (tmp / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log = tmp / "registry.log"
    proc = subprocess.Popen(
        [REGISTRY_BIN, "serve", str(tmp / "config.yml")], stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            requests.get(
                f"{'https' if tls else 'http'}://127.0.0.1:{port}/v2/", timeout=1, verify=str(tls[0]) if tls else True
            )
            return RunningRegistry(f"127.0.0.1:{port}", user, password, proc, log, ca=tls[0] if tls else None)
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
    hashed = subprocess.run(
        ["htpasswd", "-nbB", "-C", "5", user, password], check=True, capture_output=True, text=True
    ).stdout.strip()
    (tmp / "htpasswd").write_text(hashed + "\n")
    reg = _start_registry(tmp, {"htpasswd": {"realm": "imgforge-test", "path": str(tmp / "htpasswd")}}, user, password)
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
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = tmp / "token-signer.pem"
        self.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.key_name = "token"
        self.expires_in = 300
        self.expired_next = 0
        self.anonymous_pull = False
        self.issued: list[str] = []
        self.requests: list[dict] = []  # granted requests: authorized or not, and the query
        self.arrived: list[dict] = []  # every request that reached the server, with its headers
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
        self.arrived.clear()

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
        claims = {
            "iss": ISSUER,
            "sub": self.user if authorized else "",
            "aud": SERVICE,
            "exp": exp,
            "nbf": now - 10,
            "iat": now - 10,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": self.x5c})
        self.issued.append(token)
        return token

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                server.arrived.append(dict(self.headers))
                parsed = parse_qs(urlsplit(self.path).query)
                query = {k: v[0] for k, v in parsed.items()}
                query["scope"] = " ".join(parsed.get("scope", []))  # one parameter per scope (a mount asks two)
                header = self.headers.get("Authorization", "")
                authorized = False
                if header.startswith("Basic "):
                    user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
                    if (user, pw) != (server.user, server.password):
                        return self._send(401, {"details": "bad credentials"})
                    authorized = True
                server.requests.append({"authorized": authorized, **{k: v for k, v in query.items() if v}})
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


def _token_registry(tmp: Path, user: str, password: str, tls: bool = False):
    """distribution with ``auth.token`` trusting a test token server (plain HTTP) as its realm."""
    tokens = TokenServer(tmp, user, password)
    auth = {
        "token": {"realm": tokens.url, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(tokens.cert_pem)}
    }
    try:
        reg = _start_registry(tmp, auth, user, password, tls=make_tls(tmp) if tls else None)
    except Exception:
        tokens.stop()
        raise
    reg.tokens = tokens
    yield reg
    _stop(reg.proc)
    tokens.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory) -> RunningRegistry:
    """distribution with ``auth.token`` trusting the certificate of a test token server."""
    yield from _token_registry(tmp_path_factory.mktemp("token-registry"), "robot$ci", "tk-" + secrets.token_hex(12))


@pytest.fixture
def tokens(token_registry) -> TokenServer:
    """The token server of ``token_registry``, its knobs reset for this test."""
    token_registry.tokens.reset()
    yield token_registry.tokens
    token_registry.tokens.reset()


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate it signs for 127.0.0.1 and localhost: (ca, cert, key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer: x509.Name | None, key, signer, *, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("imgforge test CA", None, ca_key, ca_key, ca=True)
    cert = build("127.0.0.1", ca_cert.subject, key, ca_key, ca=False)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture(scope="session")
def tls_token_registry(tmp_path_factory) -> RunningRegistry:
    """distribution served over TLS (a CA made here signs its certificate, ``ca`` on the result)
    whose token realm is a plain-HTTP token server: credentials must never be sent there."""
    yield from _token_registry(
        tmp_path_factory.mktemp("tls-registry"), "robot$tls", "tls-" + secrets.token_hex(12), tls=True
    )


@pytest.fixture
def trust_tls_registry(monkeypatch, tls_token_registry) -> RunningRegistry:
    """The TLS registry, trusted the documented way: its host in IMGFORGE_TLS_REGISTRIES (it is on
    loopback, plain HTTP otherwise) and its CA in REQUESTS_CA_BUNDLE. Token server knobs reset."""
    monkeypatch.setenv("IMGFORGE_TLS_REGISTRIES", tls_token_registry.host)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_token_registry.ca))
    tls_token_registry.tokens.reset()
    yield tls_token_registry
    tls_token_registry.tokens.reset()


# --------------------------------------------------------------------------- seeding tags


def _blob(s: requests.Session, base: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = s.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=10)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    location = location if "://" in location else base + location
    sep = "&" if "?" in location else "?"
    r = s.put(
        f"{location}{sep}digest={digest}", data=data, headers={"Content-Type": "application/octet-stream"}, timeout=10
    )
    assert r.status_code == 201, r.text
    return digest


def seed_tags(reg: RunningRegistry, repo: str, tags: list[str]) -> str:
    """Upload one tiny image through the API, then PUT its manifest under every tag. Returns its digest."""
    s = reg.admin(repo)
    layer = b"imgforge test layer"  # content does not matter to the registry for a manifest PUT
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "config": {}}
    ).encode()
    config_digest = _blob(s, reg.url, repo, config)
    layer_digest = _blob(s, reg.url, repo, layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": config_digest,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": layer_digest,
                }
            ],
        }
    ).encode()

    def put(tag: str) -> None:
        r = s.put(
            f"{reg.url}/v2/{repo}/manifests/{tag}",
            data=manifest,
            timeout=10,
            headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"},
        )
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


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (a cap doing its job) is not an error worth a traceback."""

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


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
        self._server = _QuietServer(("127.0.0.1", self.port), self._handler())
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
                call = Call(
                    self.command, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}, dict(self.headers)
                )
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


class BrokenServer:
    """A deliberately broken HTTP server on 127.0.0.1 for the funnel's limits (registry and forge).

    Modes (``mode``): ``drip_body`` (headers, then one body byte every ``interval`` seconds,
    forever), ``drip_unsized`` (the same without a length: the body ends when the connection
    does), ``drip_headers`` (the status line, then one header byte every ``interval``),
    ``drip_raw`` (reads nothing, drips the start of a TLS record: a handshake that never ends),
    ``endless`` (a chunked body that never ends), ``huge_length`` (declares a terabyte, sends a
    little, then waits), ``gzip_bomb`` (a small gzip body that inflates to 64 MiB), ``ok``
    (answers ``{}``). ``status`` is the status line's code. ``heads`` records each request's
    head (request line and headers, decoded); ``sent`` counts body bytes written.

    So that a client without a working guard fails its test instead of hanging it or filling the
    machine's memory, a drip ends after ``give_up`` seconds and an endless body after 64 MiB.
    """

    GIVE_UP_BYTES = 64 << 20

    def __init__(self, mode: str, status: int = 200, interval: float = 0.5, give_up: float = 10.0):
        self.mode, self.status, self.interval, self.give_up = mode, status, interval, give_up
        self.heads: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            if self.mode == "drip_raw":
                return self._drip_raw(conn)
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            self.heads.append(head.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
            with contextlib.suppress(OSError):  # the client hung up: what a working deadline or cap does
                getattr(self, f"_{self.mode}")(conn, f"HTTP/1.1 {self.status} X\r\n".encode())

    def _write(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def _drip(self, conn: socket.socket) -> None:
        ends = time.monotonic() + self.give_up
        while not self._stop.wait(self.interval) and time.monotonic() < ends:
            self._write(conn, b" ")

    def _drip_body(self, conn: socket.socket, status: bytes) -> None:
        conn.sendall(status + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        self._drip(conn)

    def _drip_unsized(self, conn: socket.socket, status: bytes) -> None:
        conn.sendall(status + b"Content-Type: application/json\r\nConnection: close\r\n\r\n")
        self._drip(conn)

    def _drip_raw(self, conn: socket.socket) -> None:
        try:
            conn.sendall(b"\x16\x03\x03\x40\x00")  # a TLS handshake record of 16 KiB is coming...
            self._drip(conn)  # ...one byte at a time
        except OSError:
            pass

    def _drip_headers(self, conn: socket.socket, status: bytes) -> None:
        conn.sendall(status + b"X-Slow: ")
        self._drip(conn)

    def _endless(self, conn: socket.socket, status: bytes) -> None:
        conn.sendall(status + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        while not self._stop.is_set() and self.sent < self.GIVE_UP_BYTES:
            self._write(conn, chunk)
        conn.sendall(b"0\r\n\r\n")

    def _huge_length(self, conn: socket.socket, status: bytes) -> None:
        conn.sendall(status + b"Content-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n")
        self._write(conn, b"[" * 1024)
        self._stop.wait(30)

    def _gzip_bomb(self, conn: socket.socket, status: bytes) -> None:
        import zlib

        packer, blank = zlib.compressobj(9, wbits=31), b" " * (1 << 20)  # gzip, built 1 MiB at a time
        body = b"".join(packer.compress(blank) for _ in range(64)) + packer.flush()
        conn.sendall(
            status
            + b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        self._write(conn, body)
        self._stop.wait(30)

    def _ok(self, conn: socket.socket, status: bytes) -> None:
        conn.sendall(status + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


@pytest.fixture
def broken_server():
    """``broken_server(mode, status=200, interval=0.5)`` starts a :class:`BrokenServer`; all stop after the test."""
    started: list[BrokenServer] = []

    def start(mode: str, status: int = 200, interval: float = 0.5) -> BrokenServer:
        started.append(BrokenServer(mode, status, interval))
        return started[-1]

    yield start
    for server in started:
        server.stop()


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

    made: list[tuple[str, str]] = []

    def build(reference: str):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in (
                ("Dockerfile", b"FROM scratch\nCOPY hello /hello\n"),
                ("hello", f"hello {uuid.uuid4()}\n".encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        image, _ = docker_client.images.build(fileobj=buf, custom_context=True, tag=reference, rm=True)
        made.append((image.id, reference.rsplit(":", 1)[0]))
        return image

    yield build

    for image_id, repository in made:
        remove_test_image(docker_client, image_id, repository)


@pytest.fixture
def registry_env(monkeypatch, tmp_path):
    """Point credentials at a test registry through the documented environment variables."""

    def use(reg: RunningRegistry) -> None:
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
        monkeypatch.setenv("IMGFORGE_REGISTRY_USER", reg.user)
        monkeypatch.setenv("IMGFORGE_REGISTRY_PASSWORD", reg.password)
        monkeypatch.setenv("IMGFORGE_REGISTRY_HOST", reg.host)

    return use
