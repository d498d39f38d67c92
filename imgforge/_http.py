"""The one HTTP funnel for every server imgforge talks to: container registries and forges.

Every answer from a registry or forge is hostile until proven otherwise, and CI runs imgforge
holding their credentials. So each exchange passes through :meth:`Client.request`, which holds
the rules in one place:

- **Session.** ``trust_env`` is off (``~/.netrc`` would replace our ``Authorization`` header);
  its two useful parts are applied here: the CA bundle of ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``
  and ``HTTP(S)_PROXY``/``NO_PROXY``, never for loopback hosts.
- **A total deadline per request**, not per read. Socket timeouts only bound each ``recv``: a
  server dripping a byte every half second (in the headers or the body) would hold the process
  forever. A watchdog timer shuts the connection's socket down when the deadline passes, which
  ends any blocked read at once; the watched socket is a duplicate descriptor we own, so the
  watchdog can never touch a socket that was closed and reused meanwhile.
- **A maximum body size**, read in chunks into one buffer: an endless or huge body stops at the
  cap (a declared ``Content-Length`` above it is refused unread). Compressed bodies count
  decoded bytes. Error answers are read up to :data:`MAX_ERROR_BODY` only: they serve a reason.
- **Bounded retries** of 429 and 5xx answers honouring ``Retry-After``, for callers that want them.
- **Redirects** only when the caller allows them, and never with credentials to another origin.
- **Same-origin paging:** :meth:`Answer.next_page` refuses a ``Link: rel="next"`` elsewhere.
- **Short, sanitized reasons:** :func:`reason` gives a fixed phrase for a connection failure;
  :mod:`imgforge._scrub` turns an error body into a reason fit to print (credentials,
  ``Authorization: ...`` look-alikes and control characters removed, length capped), so an
  error message can never echo what a server echoed.

Failures are raised as :class:`TransportError`; the registry and forge clients translate them
into their own typed errors (exit 7 and 9) with messages that name the registry or forge.
"""

from __future__ import annotations

import ipaddress
import json as jsonlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import requests.auth
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

from imgforge.errors import UsageError

MiB = 1024 * 1024
MAX_MANIFEST = 4 * MiB  # what the OCI distribution spec asks registries to accept
MAX_JSON = 8 * MiB  # tag lists, forge lists and objects, token answers
MAX_ERROR_BODY = 64 * 1024  # of an error answer: enough for its reason, the rest is dropped
ENV_TIMEOUT = "IMGFORGE_HTTP_TIMEOUT"  # seconds one registry or forge request may take in total
_CHUNK = 64 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "private-token", "job-token", "cookie")

log = logging.getLogger("imgforge.http")


class TransportError(Exception):
    """No usable answer: ``kind`` is timeout, tls, unreachable, too_large, broken or foreign_link.

    Internal: the registry and forge clients turn it into their typed errors. ``reason`` is short
    and holds nothing the server sent but fixed phrases.
    """

    def __init__(self, kind: str, reason: str, limit: float = 0):
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason
        self.limit = limit  # seconds (timeout) or bytes (too_large)


def size_text(n: float) -> str:
    """``4194304`` → ``4 MiB``; ``262144`` → ``256 KiB`` (for messages about caps)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n:g} bytes"


def deadline_from_env(default: float) -> float:
    """Seconds a request may take: :data:`ENV_TIMEOUT` when set, else ``default``."""
    raw = os.environ.get(ENV_TIMEOUT, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{ENV_TIMEOUT}: expected a number of seconds above 0, got {raw!r}")
    return value


def bare_host(host: str) -> str:
    """``127.0.0.1:5000`` → ``127.0.0.1``; ``[::1]:5000`` → ``::1``; ``::1`` and names stay."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.split(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """``127.0.0.1:5000``, ``[::1]``, ``localhost`` → True (host with or without a port)."""
    bare = bare_host(host)
    if bare.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def same_origin(a: str, b: str) -> bool:
    """Same scheme, host and port: the only place a credential may follow a link."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme.lower(), pa.netloc.lower()) == (pb.scheme.lower(), pb.netloc.lower())


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answer:
    """A complete, bounded answer: status, headers and the whole body (never a stream)."""

    status: int
    headers: CaseInsensitiveDict[str]
    url: str
    body: bytes
    request_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    attempts: int = 1
    truncated: bool = False  # an error answer's body cut at MAX_ERROR_BODY

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not (also for absurd nesting)."""
        try:
            return jsonlib.loads(self.body)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def next_page(self, origin: str) -> str | None:
        """The absolute URL of ``Link: <...>; rel="next"``, or None. A link to another origin than
        ``origin`` raises ``TransportError("foreign_link")``: the credentials would go with it."""
        for link in requests.utils.parse_header_links(self.headers.get("Link", "")):
            if "next" in (link.get("rel") or "").split() and link.get("url"):
                target = urljoin(self.url, link["url"])
                if not same_origin(target, origin):
                    raise TransportError("foreign_link", "sent a next-page link to another host; not following it")
                return target
        return None


# --------------------------------------------------------------------------- the deadline watchdog


class _Watchdog:
    """Shuts down the sockets of one request when its total deadline passes."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(self.expires - time.monotonic(), 0.001)

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None or sock.fileno() < 0:
            return
        dup = socket.fromfd(sock.fileno(), sock.family, sock.type)  # ours to shut down and close
        with self._lock:
            self._socks.append(dup)
            if self.fired:
                self._shutdown(dup)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._socks:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            socks, self._socks = self._socks, []
        for sock in socks:
            sock.close()


_WATCH: ContextVar[_Watchdog | None] = ContextVar("imgforge_http_watchdog", default=None)


class _Watched:
    """Connection mix-in: the current request's watchdog learns the socket when the connection is
    about to read an answer. (Connecting and the TLS handshake are bounded by the connect timeout,
    which is never above the deadline: CPython applies a socket's timeout to a whole handshake.)"""

    sock: socket.socket | None

    def getresponse(self) -> Any:
        watch = _WATCH.get()
        if watch is not None:
            watch.watch(self.sock)
        return super().getresponse()  # type: ignore[misc]


class _Conn(_Watched, urllib3.connection.HTTPConnection):
    pass


class _TLSConn(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _Pool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _Conn


class _TLSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _TLSConn


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter with the watched connection classes in every pool it makes."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
        return manager


# --------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class Retry:
    """Retry 429 and 5xx answers: ``attempts`` in all, waiting ``Retry-After`` (at most
    ``max_after`` seconds) when the server sends it, ``backoff`` doubling otherwise."""

    attempts: int = 4
    backoff: float = 0.5
    max_after: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, answer: Answer, attempt: int) -> float:
        after = answer.headers.get("Retry-After", "").strip()
        if after.isdigit():
            return min(float(after), self.max_after)
        return float(self.backoff * 2 ** (attempt - 1))


def _ca_bundle() -> str | bool:
    """The private CA bundle named by REQUESTS_CA_BUNDLE or SSL_CERT_FILE, else the default store."""
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(name, "").strip()
        if path:
            if not os.path.exists(path):
                raise UsageError(f"{name}: CA bundle {path} does not exist")
            return path
    return True


class Client:
    """One session for one caller (a registry client, a forge). Use :meth:`close` when done."""

    def __init__(self, *, deadline: float, connect: float = 5.0, logger: logging.Logger = log):
        self.deadline = deadline
        self.connect = min(connect, deadline)
        self._log = logger
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.headers["User-Agent"] = "imgforge"
        self._session.verify = _ca_bundle()
        adapter = _Adapter()
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        auth: requests.auth.AuthBase | tuple[str, str] | None = None,
        max_body: int = MAX_JSON,
        retry: Retry | None = None,
        redirects: int = 0,
    ) -> Answer:
        """One request, its answer read whole within the deadline and ``max_body`` bytes.

        ``redirects`` > 0 follows that many redirects; ``headers`` and ``auth`` only go along to
        the same origin. ``retry`` retries 429 and 5xx answers.
        """
        attempt = 0
        while True:
            attempt += 1
            answer = self._follow(method, url, params, dict(headers or {}), json, auth, max_body, redirects)
            self._log.debug("%s %s -> %s (attempt %d)", method, urlsplit(answer.url).path, answer.status, attempt)
            if retry is None or attempt >= retry.attempts or not (answer.status == 429 or answer.status >= 500):
                return replace(answer, attempts=attempt)
            retry.sleep(retry.delay(answer, attempt))

    def _follow(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: dict[str, str],
        json: Any,
        auth: requests.auth.AuthBase | tuple[str, str] | None,
        max_body: int,
        redirects: int,
    ) -> Answer:
        for _ in range(redirects + 1):
            answer = self._exchange(method, url, params, headers, json, auth, max_body)
            location = answer.headers.get("Location")
            if answer.status not in _REDIRECTS or not location or redirects == 0:
                return answer
            target = urljoin(answer.url, location)
            if not same_origin(target, answer.url):
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
                auth = None
            if answer.status == 303 and method != "HEAD":
                method, json = "GET", None
            url, params = target, None
        return answer

    def _exchange(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        json: Any,
        auth: requests.auth.AuthBase | tuple[str, str] | None,
        max_body: int,
    ) -> Answer:
        watch = _Watchdog(self.deadline)
        token = _WATCH.set(watch)
        response: requests.Response | None = None
        try:
            proxies = {} if is_loopback(urlsplit(url).hostname or "") else requests.utils.get_environ_proxies(url)
            response = self._session.request(
                method,
                url,
                params=params,
                headers=headers,
                json=json,
                auth=auth,
                proxies=proxies,
                timeout=(min(self.connect, watch.remaining()), watch.remaining()),
                allow_redirects=False,
                stream=True,
            )
            body, truncated = _read_body(response, max_body)
        except TransportError:
            raise
        except Exception as e:  # requests, urllib3, http.client and socket errors: one translation
            raise _translate(e, watch) from e
        finally:
            _WATCH.reset(token)
            if response is not None:
                response.close()
            watch.stop()
        if watch.fired:  # a close-delimited body cut by the watchdog looks complete: it is not
            raise TransportError("timeout", "the deadline passed", self.deadline)
        return Answer(
            response.status_code,
            CaseInsensitiveDict(response.headers),
            response.url,
            body,
            dict(response.request.headers),
            truncated=truncated,
        )


def _read_body(response: requests.Response, limit: int) -> tuple[bytes, bool]:
    """The body, at most ``limit`` bytes for a success; an error answer is cut at MAX_ERROR_BODY.

    Read to the end (a HEAD answer's end comes at once) so the connection goes back to the pool.
    """
    error = response.status_code >= 300
    cap = MAX_ERROR_BODY if error else limit
    declared = response.headers.get("Content-Length", "").strip()
    if not error and declared.isdigit() and int(declared) > cap:
        raise TransportError("too_large", f"declared {declared} bytes", cap)
    buf = bytearray()
    while len(buf) <= cap:
        chunk = response.raw.read(_CHUNK, decode_content=True)
        if not chunk:
            return bytes(buf), False
        buf += chunk
    if error:
        return bytes(buf[:cap]), True
    raise TransportError("too_large", f"more than {cap} bytes", cap)


_MARKERS = (
    "CERTIFICATE_VERIFY_FAILED",
    "certificate verify failed",
    "hostname mismatch",
    "WRONG_VERSION_NUMBER",
    "Connection refused",
    "Connection reset",
    "No route to host",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "timed out",
)


def reason(e: BaseException) -> str:
    """A short, fixed phrase for a connection failure (never text a server sent, never a URL)."""
    text = ""
    seen: BaseException | None = e
    while seen is not None and len(text) < 10_000:
        text += f" {seen!s}"
        seen = seen.__cause__ or seen.__context__
    for marker in _MARKERS:
        if marker in text:
            return marker.lower().replace("_", " ")
    return type(e).__name__


def _translate(e: Exception, watch: _Watchdog) -> TransportError:
    if watch.fired or isinstance(e, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return TransportError("timeout", "the deadline passed", watch.seconds)
    if isinstance(e, requests.exceptions.SSLError):
        return TransportError("tls", reason(e))
    if isinstance(e, requests.ConnectionError):
        return TransportError("unreachable", reason(e))
    return TransportError("broken", reason(e))
