"""The one HTTP funnel for every server imgforge talks to: container registries and forges.

Every answer from a registry or forge is hostile until proven otherwise, and CI runs imgforge
holding their credentials. So each exchange passes through :meth:`Client.request`, which holds
the rules in one place:

- **Session.** ``trust_env`` is off (``~/.netrc`` would replace our ``Authorization`` header);
  its two useful parts are applied here: the CA bundle of ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``
  and ``HTTP(S)_PROXY``/``NO_PROXY``, never for loopback hosts.
- **A total deadline per request**, not per read, kept by a watchdog that shuts the socket down
  (:mod:`imgforge._deadline`): a server dripping a byte every half second is cut off there.
- **A maximum body size**, read in chunks into one buffer: an endless or huge body stops at the
  cap (a declared ``Content-Length`` above it is refused unread). Compressed bodies count
  decoded bytes. Error answers are read up to :data:`MAX_ERROR_BODY` only: they serve a reason.
- **Large bodies** (registry blobs) go through :meth:`Client.stream` and ``data=Upload(...)``
  (:mod:`imgforge._stream`): bounded by the size the caller expects, a deadline that scales with
  it, constant memory, the digest verified as the bytes pass.
- **Bounded retries** of 429 and 5xx answers honouring ``Retry-After``, for callers that want them.
- **Redirects** only when the caller allows them, and never with credentials to another origin.
- **Same-origin paging:** :meth:`Answer.next_page` refuses a ``Link: rel="next"`` elsewhere.
- **Short, sanitized reasons:** :func:`reason` gives a fixed phrase for a connection failure;
  :mod:`imgforge._scrub` turns an error body into a reason fit to print (credentials,
  ``Authorization: ...`` look-alikes and control characters removed, length capped), so an
  error message can never echo what a server echoed.

Failures are raised as :class:`~imgforge._deadline.TransportError`; the registry and forge clients translate them
into their own typed errors (exit 7 and 9) with messages that name the registry or forge.
"""

from __future__ import annotations

import ipaddress
import json as jsonlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.auth
from requests.structures import CaseInsensitiveDict

from imgforge._deadline import WATCH, TransportError, Watchdog, WatchedAdapter, reason, translate
from imgforge._stream import MIN_RATE, Download, Upload, deadline_for
from imgforge.errors import UsageError

__all__ = ["Answer", "Client", "Retry", "TransportError", "Upload", "reason"]

MiB = 1024 * 1024
MAX_MANIFEST = 4 * MiB  # what the OCI distribution spec asks registries to accept
MAX_JSON = 8 * MiB  # tag lists, forge lists and objects, token answers
MAX_ERROR_BODY = 64 * 1024  # of an error answer: enough for its reason, the rest is dropped
ENV_TIMEOUT = "IMGFORGE_HTTP_TIMEOUT"  # seconds one registry or forge request may take in total
_CHUNK = 64 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "private-token", "job-token", "cookie")

Auth = requests.auth.AuthBase | tuple[str, str] | None

log = logging.getLogger("imgforge.http")


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
    """A complete, bounded answer: status, headers and the whole body, except for a 2xx answer of
    :meth:`Client.stream`, whose body is ``stream`` (unread; the caller reads and closes it)."""

    status: int
    headers: CaseInsensitiveDict[str]
    url: str
    body: bytes
    request_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    attempts: int = 1
    truncated: bool = False  # an error answer's body cut at MAX_ERROR_BODY
    stream: Download | None = field(default=None, repr=False)

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
        adapter = WatchedAdapter()
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
        data: bytes | Upload | None = None,
        auth: Auth = None,
        max_body: int = MAX_JSON,
        retry: Retry | None = None,
        redirects: int = 0,
        deadline: float | None = None,
    ) -> Answer:
        """One request, its answer read whole within the deadline and ``max_body`` bytes.

        ``data`` is a body of bytes or an :class:`~imgforge._stream.Upload` (streamed, verified);
        ``deadline`` replaces the client's for this request (an upload's scales with its size).
        ``redirects`` > 0 follows that many redirects; ``headers`` and ``auth`` only go along to
        the same origin. ``retry`` retries 429 and 5xx answers. One deadline covers a request and
        its redirects; each retry has its own.
        """
        body = {"json": json, "data": data}

        def once() -> Answer:
            watch = Watchdog(deadline or self.deadline)
            response: requests.Response | None = None
            try:
                response = self._open(method, url, params, dict(headers or {}), body, auth, redirects, watch)
                content, truncated = _read_body(response, max_body)
            except Exception as e:  # requests, urllib3, http.client and socket errors: one translation
                raise translate(e, watch) from e
            finally:
                if response is not None:
                    response.close()
                watch.stop()
            if watch.fired:  # a close-delimited body cut by the watchdog looks complete: it is not
                raise TransportError("timeout", "the deadline passed", watch.seconds)
            return _answer(response, content, truncated)

        return self._retrying(method, once, retry)

    def stream(
        self,
        url: str,
        *,
        size: int | None,
        digest: str,
        max_size: int,
        errors: Callable[[TransportError], Exception],
        headers: Mapping[str, str] | None = None,
        auth: Auth = None,
        retry: Retry | None = None,
        redirects: int = 0,
        rate: float = MIN_RATE,
    ) -> Answer:
        """GET a body too large to hold (a blob): a 2xx answer carries it unread as ``.stream``.

        The body must be ``size`` bytes (None: what ``Content-Length`` declares, which is then
        required), at most ``max_size``, with the digest ``digest`` (see :mod:`imgforge._stream`
        for what that guarantees and when). The whole exchange, redirects and body included, has
        the deadline ``deadline + size / rate``. Redirects drop credentials on the way to another
        origin, as :meth:`request` does; compressed transfer is not asked for, so the bytes are
        the blob's own. Other answers come back read whole (an error's first 64 KiB).
        Failures while reading the stream are handed to ``errors`` to raise.
        """
        if size is not None and size > max_size:
            raise TransportError("too_large", f"is {size} bytes, above the limit of {size_text(max_size)}", max_size)
        sent = {**(headers or {}), "Accept-Encoding": "identity"}

        def once() -> Answer:
            longest = deadline_for(self.deadline, max_size if size is None else size, rate)
            watch = Watchdog(self.deadline if size is None else longest, ceiling=longest)
            response: requests.Response | None = None
            try:
                response = self._open("GET", url, None, sent, {}, auth, redirects, watch)
                if not 200 <= response.status_code < 300:
                    content, truncated = _read_body(response, MAX_ERROR_BODY)
                    response.close()
                    watch.stop()
                    return _answer(response, content, truncated)
                expected = _expected_size(response, size, max_size)
                watch.extend(deadline_for(self.deadline, expected, rate))
                body = Download(response, watch, size=expected, digest=digest, errors=errors)
            except Exception as e:  # one translation, as in request()
                if response is not None:
                    response.close()
                watch.stop()
                raise translate(e, watch) from e
            return replace(_answer(response, b"", False), stream=body)

        return self._retrying("GET", once, retry)

    def _retrying(self, method: str, once: Callable[[], Answer], retry: Retry | None) -> Answer:
        attempt = 0
        while True:
            attempt += 1
            answer = once()
            self._log.debug("%s %s -> %s (attempt %d)", method, urlsplit(answer.url).path, answer.status, attempt)
            if retry is None or attempt >= retry.attempts or not (answer.status == 429 or answer.status >= 500):
                return replace(answer, attempts=attempt)
            retry.sleep(retry.delay(answer, attempt))

    def _open(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: dict[str, str],
        body: dict[str, Any],
        auth: Auth,
        redirects: int,
        watch: Watchdog,
    ) -> requests.Response:
        """Send, following up to ``redirects`` redirects under one watchdog; the answer is unread."""
        for hop in range(redirects + 1):
            response = self._send(method, url, params, headers, body, auth, watch)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location or hop == redirects:
                return response
            response.close()
            target = urljoin(response.url, location)
            if not same_origin(target, response.url):
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
                auth = None
            if response.status_code == 303 and method != "HEAD":
                method, body = "GET", {}
            url, params = target, None
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        body: dict[str, Any],
        auth: Auth,
        watch: Watchdog,
    ) -> requests.Response:
        if isinstance(body.get("data"), Upload):
            body["data"].rewind()  # a retry, redirect or auth challenge sends the data again
        token = WATCH.set(watch)
        try:
            proxies = {} if is_loopback(urlsplit(url).hostname or "") else requests.utils.get_environ_proxies(url)
            return self._session.request(
                method,
                url,
                params=params,
                headers=headers,
                auth=auth,
                proxies=proxies,
                timeout=(min(self.connect, watch.remaining()), watch.read_timeout()),
                allow_redirects=False,
                stream=True,
                **body,
            )
        finally:
            WATCH.reset(token)


def _answer(response: requests.Response, body: bytes, truncated: bool) -> Answer:
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
    A HEAD answer's ``Content-Length`` is the size of what a GET would send (a blob's, gigabytes
    maybe), not of a body: it is not held against the cap.
    """
    error = response.status_code >= 300
    cap = MAX_ERROR_BODY if error else limit
    declared = response.headers.get("Content-Length", "").strip()
    head = response.request is not None and response.request.method == "HEAD"
    if not error and not head and declared.isdigit() and int(declared) > cap:
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


def _expected_size(response: requests.Response, size: int | None, max_size: int) -> int:
    """The size a streamed body must have: ``size``, which ``Content-Length`` must agree with."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise TransportError("broken", "sent an encoded body though none was asked for; not reading it")
    declared = response.headers.get("Content-Length", "").strip()
    if not declared:
        if size is None:
            raise TransportError("broken", "sent no Content-Length and the caller gave no size; not reading it")
        return size
    if not declared.isdigit():
        raise TransportError("broken", "sent an invalid Content-Length")
    length = int(declared)
    if length > max_size:
        raise TransportError(
            "too_large", f"declared {length} bytes, above the limit of {size_text(max_size)}", max_size
        )
    if size is not None and length != size:
        kind = "too_large" if length > size else "broken"
        raise TransportError(kind, f"declared {length} bytes where {size} were expected; not reading it", size)
    return length
