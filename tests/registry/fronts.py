"""Loopback HTTP servers for the blob, manifest and referrers tests.

:class:`Loopback` answers every method with what a test's ``respond`` says (the body may be an
iterator of chunks, with pauses, for a slow answer) and records each request with its headers and
body. :class:`Front` is a :class:`Loopback` that passes requests through to a real registry
(distribution 2.8 started by ``conftest``) unless the test's ``intercept`` answers them first:
the real registry does the real work, the front adds only the one behaviour under test (a
redirect to a storage host, the referrers API, a concurrent writer, wrong bytes).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from tests.registry.conftest import _QuietServer, free_port

Body = bytes | Iterable[bytes]
Answer = tuple[int, dict[str, str], Body]


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.query).items()}

    @property
    def target(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")


def drip(data: bytes, piece: int, pause: float) -> Iterable[bytes]:
    """``data`` in pieces of ``piece`` bytes with ``pause`` seconds before each: a slow body."""
    for start in range(0, len(data), piece):
        time.sleep(pause)
        yield data[start : start + piece]


class Loopback:
    """An HTTP/1.1 server on ``host`` (any 127.x address) answering with ``respond(request)``.

    A body given as an iterator is sent as it comes (``Content-Length`` from the headers if the
    test sets one, else chunked), so a test can drip it or send more than it declares.
    """

    def __init__(self, respond: Callable[[Request], Answer] | None = None, host: str = "127.0.0.1"):
        self.respond: Callable[[Request], Answer] = respond or (lambda request: (404, {}, b""))
        self.requests: list[Request] = []
        self.port = free_port() if host == "127.0.0.1" else 0
        self._server = _QuietServer((host, self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.host = f"{host}:{self.port}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = self._chunked()
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parts.query, dict(self.headers), body)
                server.requests.append(request)
                status, headers, answer = server.respond(request)
                self.send_response(status)
                sized = isinstance(answer, bytes)
                for k, v in headers.items():
                    self.send_header(k, v)
                if sized and "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(answer)))
                chunked = not sized and "Content-Length" not in headers
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if self.command == "HEAD":
                    return
                for piece in [answer] if isinstance(answer, bytes) else answer:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                    self.wfile.flush()
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")

            def _chunked(self) -> bytes:
                data = b""
                while size := int(self.rfile.readline().strip() or b"0", 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return data

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        return Handler


class Front(Loopback):
    """A :class:`Loopback` passing requests through to ``upstream`` (a real registry's base URL).

    ``intercept(request)`` may answer a request itself (return an answer) or let it through
    (return None). Upstream ``Location`` headers are rewritten to point at the front, as they
    would if the registry were configured behind a proxy. ``passed`` lists (request, status,
    headers) of what went through.
    """

    def __init__(self, upstream: str, host: str = "127.0.0.1"):
        super().__init__(self._pass, host)
        self.upstream = upstream
        self.intercept: Callable[[Request], Answer | None] = lambda request: None
        self.passed: list[tuple[Request, int, dict[str, str]]] = []
        self._session = requests.Session()
        self._session.trust_env = False

    def forward(self, request: Request, **override: Any) -> requests.Response:
        """Send ``request`` (or it with ``method``/``body``/``headers`` replaced) to the registry."""
        keep = ("authorization", "accept", "content-type", "if-match", "if-none-match")
        headers = override.get("headers") or {k: v for k, v in request.headers.items() if k.lower() in keep}
        return self._session.request(
            override.get("method", request.method),
            self.upstream + request.target,
            headers=headers,
            data=override.get("body", request.body) or None,
            allow_redirects=False,
            timeout=30,
        )

    def _pass(self, request: Request) -> Answer:
        answer = self.intercept(request)
        if answer is not None:
            return answer
        r = self.forward(request)
        headers = self.relayed(request, r)
        self.passed.append((request, r.status_code, headers))
        return r.status_code, headers, r.content

    def relayed(self, request: Request, r: requests.Response) -> dict[str, str]:
        """The registry's answer headers as the front passes them on (Location pointing here)."""
        drop = {"transfer-encoding", "connection", "content-encoding"}
        if request.method != "HEAD":  # a HEAD answer keeps the registry's Content-Length: it is the size
            drop.add("content-length")
        headers = {k: v for k, v in r.headers.items() if k.lower() not in drop}
        if "Location" in headers:
            headers["Location"] = headers["Location"].replace(self.upstream, self.url)
        return headers


def json_answer(status: int, doc: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(doc).encode()
