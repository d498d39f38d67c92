"""A Docker Registry HTTP API v2 client: one request funnel, typed errors that name where.

Every call goes through :meth:`RegistryClient._request`, which answers auth challenges
(:mod:`.auth`) and sends through the shared HTTP funnel (:mod:`imgforge._http`: a total deadline
per request, bounded bodies, bounded retries of 429 and 5xx honouring ``Retry-After``,
credentials never sent to another origin), and turns every failure into a
:class:`~imgforge.errors.RegistryError` whose one-line message names the registry and the
repository. A server's explanation is shown only sanitized: an echoed ``Authorization`` header
or password never reaches a message.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from imgforge import _http, _scrub
from imgforge._http import MAX_JSON, MAX_MANIFEST, Answer, TransportError
from imgforge.errors import RegistryError
from imgforge.registry import credentials as creds
from imgforge.registry.auth import AuthFailed, RegistryAuth

log = logging.getLogger("imgforge.registry")

ENV_PLAIN_HTTP = "IMGFORGE_INSECURE_REGISTRIES"  # comma-separated hosts spoken to over plain HTTP
ENV_TLS = "IMGFORGE_TLS_REGISTRIES"  # comma-separated hosts spoken to over HTTPS, loopback ones too
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MAX_PAGES = 10_000  # a registry that pages forever must not hang us
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")  # the OCI distribution spec's tag grammar
DEFAULT_TIMEOUT = (5.0, 30.0)  # seconds to connect, seconds for a whole request (headers and body)
_REDIRECTS = 5


class RegistryUnavailable(RegistryError):
    """Connection refused, timeout, TLS failure, or 429/5xx past the retry budget."""


class AuthRejected(RegistryError):
    """401/403: credentials missing, wrong, or without access to the repository."""


class RepositoryNotFound(RegistryError):
    """404 on a repository-level call: the repository does not exist (yet)."""


class BadRequest(RegistryError):
    """400: the registry rejected the request's parameters (Harbor: ``last`` must be a tag)."""


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


class RegistryClient:
    """Talks to one registry. Use as a context manager, or call :meth:`close`.

    ``timeout`` is (seconds to connect, seconds for a whole request), or one number for both;
    by default (5, 30), the second taken from ``IMGFORGE_HTTP_TIMEOUT`` when set. ``max_json``
    caps a tag-list page or other JSON answer, ``max_manifest`` a manifest (4 MiB, what the OCI
    distribution spec asks registries to accept), ``max_pages`` the pages of one tag listing.
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
    ):
        self.registry = registry
        api_host = Repository(registry, "x").api_host
        self.scheme = scheme or default_scheme(api_host)
        self.base = f"{self.scheme}://{api_host}"
        self.credentials = creds.lookup(registry) if credentials == "lookup" else credentials
        if timeout is None:
            timeout = (DEFAULT_TIMEOUT[0], _http.deadline_from_env(DEFAULT_TIMEOUT[1]))
        self.timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self.page_size = page_size
        self.max_json, self.max_manifest, self.max_pages = max_json, max_manifest, max_pages
        self._retry = _http.Retry(attempts=max(1, attempts), backoff=backoff, sleep=sleep)
        self._http = _http.Client(connect=self.timeout[0], deadline=self.timeout[1], logger=log)
        self.auth = RegistryAuth(self.credentials, allow_plain_http_realm=self.scheme == "http")

    def __repr__(self) -> str:
        return f"RegistryClient({self.base!r}, auth={self.auth!r})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ----------------------------------------------------------------- API calls

    def ping(self) -> None:
        """``GET /v2/``: the registry answers and accepts our credentials (or needs none)."""
        self._request("GET", "/v2/", repo=None, scope="")

    def list_tags(self, name: str) -> list[str]:
        """Every tag of ``name``, following ``Link: <...>; rel="next"`` pages of ``page_size``.

        Without a Link header, asks again from the page's last tag while pages are full (a longer
        page means the registry ignored ``n``, as distribution 2.8 does: that was all). If the
        registry rejects ``last`` with 400 (Harbor insists it is an existing tag, which breaks
        when tags change between pages), the whole list is fetched once without paging.
        """
        path = f"/v2/{name}/tags/list"
        tags: list[str] = []
        seen: set[str] = set()
        target: str = path
        params: dict[str, Any] | None = {"n": self.page_size}
        for _ in range(self.max_pages):
            try:
                r = self._request("GET", target, repo=name, scope=_pull(name), params=params)
            except BadRequest:
                if "last" not in (params or {}) and "last=" not in urlsplit(target).query:
                    raise
                log.debug("%s rejected 'last'; listing %s without paging", self.registry, name)
                return _merge(tags, self._tags_page(self._request("GET", path, repo=name, scope=_pull(name)), name))
            page = self._tags_page(r, name)
            new = [t for t in page if t not in seen]
            seen.update(new)
            tags.extend(new)
            try:
                link = r.next_page(self.base)
            except TransportError as e:
                raise RegistryError(f"{self._where(name)} {e.reason}") from None
            if link:
                target, params = link, None
            elif page and new and len(page) == self.page_size:
                target, params = path, {"n": self.page_size, "last": page[-1]}
            else:
                return tags
            if not new:
                return tags  # the registry repeated a page: stop rather than loop
        raise RegistryError(f"registry {self.registry}: tag list of {name} did not end after {self.max_pages} pages")

    def manifest_digest(self, name: str, reference: str) -> str | None:
        """The registry's digest for ``name:reference`` (``sha256:...``), None if the tag is absent."""
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        path = f"/v2/{name}/manifests/{reference}"
        r = self._request("HEAD", path, repo=name, scope=_pull(name), headers=headers, allow=(200, 404))
        if r.status == 404:
            return None
        digest = r.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        # Some registries omit the header on HEAD: hash the body of a GET instead (what it is).
        r = self._request("GET", path, repo=name, scope=_pull(name), headers=headers, max_body=self.max_manifest)
        return "sha256:" + hashlib.sha256(r.body).hexdigest()

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
    ) -> Answer:
        """Send one API call: auth challenges, then the funnel's deadline, caps and retries."""
        url = target if "://" in target else self.base + target
        allow = tuple(allow)
        auth_answers = 0
        while True:
            hdrs = dict(headers or {})
            value = self.auth.header(scope)
            if value:
                hdrs["Authorization"] = value
            try:
                r = self._http.request(
                    method,
                    url,
                    params=params,
                    headers=hdrs,
                    retry=self._retry,
                    max_body=self.max_json if max_body is None else max_body,
                    redirects=_REDIRECTS,
                )
            except TransportError as e:
                raise self._unavailable(e, repo) from None
            if r.status == 401 and auth_answers < 2:
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

    def _unavailable(self, e: TransportError, repo: str | None) -> RegistryError:
        where = self._where(repo)
        if e.kind == "timeout":
            return RegistryUnavailable(f"{where} timed out (limit {self.timeout[1]:g}s)")
        if e.kind == "tls":
            return RegistryUnavailable(f"TLS failure talking to {where}: {e.reason}")
        if e.kind == "unreachable":
            return RegistryUnavailable(f"{where} unreachable at {self.base} ({e.reason})")
        if e.kind == "too_large":
            return RegistryError(f"{where} sent an answer larger than {_http.size_text(e.limit)}; not reading it")
        return RegistryError(f"{where}: request failed ({e.reason})")

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

    @staticmethod
    def _tags_page(r: Answer, repo: str) -> list[str]:
        try:
            data = r.json()
        except ValueError:
            raise RegistryError(f"tag list of {repo}: the registry did not answer JSON") from None
        tags = data.get("tags") if isinstance(data, dict) else None
        if tags is None:
            return []  # distribution answers {"tags": null} for a repository without tags
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise RegistryError(f"tag list of {repo}: 'tags' is not a list of strings")
        bad = next((t for t in tags if not _TAG.fullmatch(t)), None)
        if bad is not None:  # no registry accepts such a push: this answer is broken or hostile
            raise RegistryError(f"tag list of {repo}: {_scrub.sanitize(repr(bad), limit=60)} is not a valid tag name")
        return tags


def _pull(name: str) -> str:
    return f"repository:{name}:pull"


def _merge(first: list[str], more: list[str]) -> list[str]:
    """``first`` then the tags of ``more`` not already in it, order kept."""
    known = set(first)
    return first + [t for t in dict.fromkeys(more) if t not in known]
