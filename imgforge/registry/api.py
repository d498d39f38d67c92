"""The registry client's one request funnel, its typed errors and how a registry is addressed.

Every call of :class:`~imgforge.registry.client.RegistryClient` goes through
:meth:`RegistryApi._call`, which answers auth challenges (:mod:`.auth`) and sends through the
shared HTTP funnel (:mod:`imgforge._http`: a total deadline per request, bounded bodies, bounded
retries of 429 and 5xx honouring ``Retry-After``, credentials never sent to another origin), and
turns every failure into a :class:`~imgforge.errors.RegistryError` whose one-line message names the
registry and the repository. A server's explanation is shown only sanitized: an echoed
``Authorization`` header or password never reaches a message.

The client's calls are grouped by what they touch, in the style of docker-py's API mix-ins:
manifests (:mod:`.manifests`), blobs (:mod:`.blobs`), referrers (:mod:`.referrers`), tags and
the rest (:mod:`.client`); each group is a subclass of :class:`RegistryApi` and the client joins them.
Names, references and digests are checked against the distribution spec's grammar before they
become part of a URL path, so no value can add a path segment or a query.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from imgforge import _http, _scrub
from imgforge._http import MAX_JSON, MAX_MANIFEST, Answer, TransportError
from imgforge._stream import MIN_RATE, is_digest
from imgforge.errors import RegistryError, UsageError
from imgforge.registry import credentials as creds
from imgforge.registry.auth import AuthFailed, RegistryAuth

log = logging.getLogger("imgforge.registry")

ENV_PLAIN_HTTP = "IMGFORGE_INSECURE_REGISTRIES"  # comma-separated hosts spoken to over plain HTTP
ENV_TLS = "IMGFORGE_TLS_REGISTRIES"  # comma-separated hosts spoken to over HTTPS, loopback ones too
MAX_PAGES = 10_000  # a registry that pages forever must not hang us
MAX_BLOB = 8 << 30  # a blob whose size the caller does not give may declare at most this (8 GiB)
DEFAULT_TIMEOUT = (5.0, 30.0)  # seconds to connect, seconds for a whole request (headers and body)
_REDIRECTS = 5
# The OCI distribution spec's grammar for repository names and tags.
_NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class RegistryUnavailable(RegistryError):
    """Connection refused, timeout, TLS failure, or 429/5xx past the retry budget."""


class AuthRejected(RegistryError):
    """401/403: credentials missing, wrong, or without access to the repository."""


class RepositoryNotFound(RegistryError):
    """404 on a repository-level call: the repository does not exist (yet)."""


class BadRequest(RegistryError):
    """400: the registry rejected the request's parameters (Harbor: ``last`` must be a tag)."""


class ManifestNotFound(RegistryError):
    """404 for a manifest: no such tag or digest in an existing repository."""


class BlobNotFound(RegistryError):
    """404 for a blob: the repository does not hold it."""


class DigestMismatch(RegistryError):
    """The registry served or stored bytes whose digest is not the one that named them."""


@dataclass(frozen=True)
class Repository:
    """An image repository split into registry host and path, as the v2 API addresses it."""

    registry: str  # as written in the catalog: cr.example.com, 127.0.0.1:5000, docker.io
    name: str  # prplanit/sofmeright.com

    @classmethod
    def parse(cls, image: str) -> Repository:
        """``cr.pcfae.com/prplanit/x.com`` → (cr.pcfae.com, prplanit/x.com); ``nginx`` → Docker Hub."""
        image = image.split("@", 1)[0]
        first, sep, rest = image.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            return cls(first, rest)
        path = image if sep else f"library/{image}"
        return cls(creds.DOCKER_HUB, path)

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.registry == creds.DOCKER_HUB else self.registry

    def __str__(self) -> str:
        return f"{self.registry}/{self.name}"


def _hosts(env: str) -> set[str]:
    return {h.strip() for h in os.environ.get(env, "").split(",") if h.strip()}


def default_scheme(host: str) -> str:
    """HTTPS, except plain HTTP for loopback registries (as Docker does) and hosts listed in
    IMGFORGE_INSECURE_REGISTRIES; a host listed in IMGFORGE_TLS_REGISTRIES is HTTPS even on loopback."""
    bare = _http.bare_host(host)
    if host in _hosts(ENV_TLS) or bare in _hosts(ENV_TLS):
        return "https"
    plain = _hosts(ENV_PLAIN_HTTP)
    return "http" if host in plain or bare in plain or _http.is_loopback(host) else "https"


def pull_scope(name: str) -> str:
    return f"repository:{name}:pull"


def push_scope(name: str) -> str:
    return f"repository:{name}:pull,push"


def path(name: str, kind: str, reference: str = "") -> str:
    """``/v2/<name>/<kind>/<reference>`` with ``name`` and ``reference`` checked against the
    spec's grammar (a tag or a sha256/sha512 digest) so neither can reshape the URL."""
    if len(name) >= 256 or not _NAME.fullmatch(name):
        raise UsageError(f"{name[:80]!r} is not a valid repository name (lowercase path components like team/site)")
    if reference and not (TAG.fullmatch(reference) or is_digest(reference)):
        raise UsageError(f"{reference[:80]!r} is not a tag or a sha256/sha512 digest")
    return f"/v2/{name}/{kind}/{reference}"


def seconds_text(limit: float) -> str:
    return f"{limit:.1f}".rstrip("0").rstrip(".")


class RegistryApi:
    """Talks to one registry. Use as a context manager, or call :meth:`close`.

    ``timeout`` is (seconds to connect, seconds for a whole request), or one number for both;
    by default (5, 30), the second taken from ``IMGFORGE_HTTP_TIMEOUT`` when set. ``max_json``
    caps a tag-list page or other JSON answer, ``max_manifest`` a manifest (4 MiB, what the OCI
    distribution spec asks registries to accept), ``max_pages`` the pages of one listing,
    ``max_blob`` a blob whose size the caller does not know. A blob transfer's deadline is the
    request deadline plus its size divided by ``min_rate`` (bytes per second, 1 MiB/s).
    """

    def __init__(
        self,
        registry: str,
        *,
        credentials: creds.Credentials | str | None = "lookup",
        timeout: float | tuple[float, float] | None = None,
        attempts: int = 4,
        backoff: float = 0.5,
        page_size: int = 100,
        scheme: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_json: int = MAX_JSON,
        max_manifest: int = MAX_MANIFEST,
        max_pages: int = MAX_PAGES,
        max_blob: int = MAX_BLOB,
        min_rate: float = MIN_RATE,
    ):
        self.registry = registry
        api_host = Repository(registry, "x").api_host
        self.scheme = scheme or default_scheme(api_host)
        self.base = f"{self.scheme}://{api_host}"
        found = creds.lookup(registry) if credentials == "lookup" else credentials
        self.credentials = found if isinstance(found, creds.Credentials) else None
        if timeout is None:
            timeout = (DEFAULT_TIMEOUT[0], _http.deadline_from_env(DEFAULT_TIMEOUT[1]))
        self.timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self.page_size = page_size
        self.max_json, self.max_manifest, self.max_pages = max_json, max_manifest, max_pages
        self.max_blob, self.min_rate = max_blob, min_rate
        self._retry = _http.Retry(attempts=max(1, attempts), backoff=backoff, sleep=sleep)
        self._http = _http.Client(connect=self.timeout[0], deadline=self.timeout[1], logger=log)
        self.auth = RegistryAuth(self.credentials, allow_plain_http_realm=self.scheme == "http")

    def __repr__(self) -> str:
        return f"RegistryClient({self.base!r}, auth={self.auth!r})"

    def __enter__(self) -> RegistryApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ----------------------------------------------------------------- the funnel

    def _request(
        self,
        method: str,
        target: str,
        *,
        repo: str | None,
        scope: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        allow: Iterable[int] = (200,),
        max_body: int | None = None,
        data: bytes | _http.Upload | None = None,
        deadline: float | None = None,
        retry: bool = True,
    ) -> Answer:
        """Send one API call whose answer is read whole (see :meth:`_call`)."""
        url = self.url(target)
        cap = self.max_json if max_body is None else max_body
        return self._call(
            lambda sent: self._http.request(
                method,
                url,
                params=params,
                headers=sent,
                data=data,
                retry=self._retry if retry else None,
                max_body=cap,
                redirects=_REDIRECTS,
                deadline=deadline,
            ),
            url,
            headers,
            repo=repo,
            scope=scope,
            allow=allow,
        )

    def _stream(self, target: str, *, repo: str, scope: str, digest: str, size: int | None) -> Answer:
        """GET a blob: a 200 answer carries the body unread as ``.stream``; 404 comes back too."""
        url = self.url(target)
        return self._call(
            lambda sent: self._http.stream(
                url,
                size=size,
                digest=digest,
                max_size=self.max_blob,
                errors=lambda e: self._unavailable(e, repo, f"blob {digest}"),
                headers=sent,
                retry=self._retry,
                redirects=_REDIRECTS,
                rate=self.min_rate,
            ),
            url,
            None,
            repo=repo,
            scope=scope,
            allow=(200, 404),
            what=f"blob {digest}",
        )

    def _call(
        self,
        send: Callable[[dict[str, str]], Answer],
        url: str,
        headers: dict[str, str] | None,
        *,
        repo: str | None,
        scope: str,
        allow: Iterable[int],
        what: str = "",
    ) -> Answer:
        """Auth challenges, then ``send``; an answer outside ``allow`` becomes a RegistryError.

        The Authorization header goes only to this registry's own origin: an upload location or
        a pagination link elsewhere (which a hostile registry can name) gets no credentials.
        """
        allow = tuple(allow)
        ours = _http.same_origin(url, self.base)
        auth_answers = 0
        while True:
            sent = dict(headers or {})
            value = self.auth.header(scope) if ours else None
            if value:
                sent["Authorization"] = value
            try:
                r = send(sent)
            except TransportError as e:
                raise self._unavailable(e, repo, what) from None
            if r.status == 401 and ours and auth_answers < 2:
                auth_answers += 1
                try:
                    if self.auth.answer(r, scope, self._http):
                        continue
                except AuthFailed as e:
                    if e.status in (401, 403):
                        raise AuthRejected(self._rejected(repo)) from None
                    raise RegistryError(f"registry {self.registry}: {e}") from None
            if r.status in allow:
                return r
            raise self._error(r, repo)

    def url(self, target: str) -> str:
        """An absolute URL for a path of this registry or a location it answered with."""
        return target if "://" in target else urljoin(self.base, target)

    def _unavailable(self, e: TransportError, repo: str | None, what: str = "") -> RegistryError:
        where = self._where(repo) + (f" {what}" if what else "")
        if e.kind == "timeout":
            return RegistryUnavailable(f"{where} timed out (limit {seconds_text(e.limit or self.timeout[1])}s)")
        if e.kind == "tls":
            return RegistryUnavailable(f"TLS failure talking to {where}: {e.reason}")
        if e.kind == "unreachable":
            return RegistryUnavailable(f"{where} unreachable at {self.base} ({e.reason})")
        if e.kind == "digest":
            return DigestMismatch(f"{where}: {e.reason}")
        if e.kind == "data":
            return RegistryError(f"{where}: {e.reason}")
        if e.kind == "too_large" and not what:
            return RegistryError(f"{where} sent an answer larger than {_http.size_text(e.limit)}; not reading it")
        return RegistryError(f"{where}: {e.reason}" if what else f"{where}: request failed ({e.reason})")

    def _error(self, r: Answer, repo: str | None) -> RegistryError:
        where = self._where(repo)
        code, detail = _scrub.error_detail(r, self.auth.secrets())
        if r.status in (401, 403):
            return AuthRejected(self._rejected(repo) + (f" ({detail})" if r.status == 403 and detail else ""))
        if r.status == 404 and repo is not None and code in ("NAME_UNKNOWN", "NOT_FOUND", ""):
            return RepositoryNotFound(f"repository {repo} not found on registry {self.registry}")
        if r.status == 400:
            return BadRequest(f"{where} rejected the request: {detail or 'HTTP 400'}")
        if r.status == 429 or r.status >= 500:
            return RegistryUnavailable(
                f"{where} answered HTTP {r.status} {r.attempts} times; giving up" + (f" ({detail})" if detail else "")
            )
        return RegistryError(f"{where} answered HTTP {r.status}" + (f": {detail}" if detail else ""))

    def _missing(self, r: Answer, repo: str, what: str) -> RegistryError:
        """The error for a 404 on ``what`` (``manifest v1.0.0``, ``blob sha256:...``)."""
        code, _ = _scrub.error_detail(r, self.auth.secrets())
        if code == "NAME_UNKNOWN":
            return RepositoryNotFound(f"repository {repo} not found on registry {self.registry}")
        kind = BlobNotFound if what.startswith("blob") else ManifestNotFound
        return kind(f"{what} not found in repository {repo} on registry {self.registry}")

    def _rejected(self, repo: str | None) -> str:
        what = f"repository {repo} on registry {self.registry}" if repo else f"registry {self.registry}"
        if self.credentials is None:
            hint = creds.unsupported_reason(self.registry)
            return (
                f"{what} needs credentials and none were found: set {creds.ENV_USER} and "
                f"{creds.ENV_PASSWORD} or `docker login {self.registry}`" + (f" ({hint})" if hint else "")
            )
        return f"credentials rejected for {what} (user '{self.credentials.username}' from {self.credentials.source})"

    def _where(self, repo: str | None) -> str:
        return f"registry {self.registry} (repository {repo})" if repo else f"registry {self.registry}"
