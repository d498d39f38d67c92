"""A Docker Registry HTTP API v2 client: one request funnel, typed errors that name where.

Every call goes through :meth:`RegistryClient._request`, which sets the timeout, answers auth
challenges (:mod:`.auth`), retries 429 and 5xx a bounded number of times with backoff (honouring
``Retry-After``), and turns every failure into a :class:`~imgforge.errors.RegistryError` whose
one-line message names the registry and the repository. Nothing outside this module calls
requests for registry traffic, so those rules cannot be forgotten by a new call site.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import urljoin, urlsplit

import requests

from imgforge.errors import RegistryError
from imgforge.registry import credentials as creds
from imgforge.registry.auth import AuthFailed, RegistryAuth

log = logging.getLogger("imgforge.registry")

ENV_PLAIN_HTTP = "IMGFORGE_INSECURE_REGISTRIES"  # comma-separated hosts spoken to over plain HTTP
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_MAX_PAGES = 10_000  # a registry that pages forever must not hang us
_MAX_RETRY_AFTER = 30.0


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
    def parse(cls, image: str) -> "Repository":
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


def _bare(host: str) -> str:
    """``127.0.0.1:5000`` → ``127.0.0.1``; ``[::1]:5000`` → ``::1``."""
    return host.strip("[]") if host.endswith("]") else host.rsplit(":", 1)[0].strip("[]")


def _is_loopback(host: str) -> bool:
    bare = _bare(host)
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def default_scheme(host: str) -> str:
    """Plain HTTP for loopback registries (as Docker does) and hosts in IMGFORGE_INSECURE_REGISTRIES."""
    plain = {h.strip() for h in os.environ.get(ENV_PLAIN_HTTP, "").split(",") if h.strip()}
    return "http" if host in plain or _bare(host) in plain or _is_loopback(host) else "https"


class RegistryClient:
    """Talks to one registry. Use as a context manager, or call :meth:`close`."""

    def __init__(self, registry: str, *, credentials: creds.Credentials | None | str = "lookup",
                 timeout: float | tuple[float, float] = (5.0, 30.0), attempts: int = 4,
                 backoff: float = 0.5, page_size: int = 100, scheme: str | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.registry = registry
        api_host = Repository(registry, "x").api_host
        self.scheme = scheme or default_scheme(api_host)
        self.base = f"{self.scheme}://{api_host}"
        self.credentials = creds.lookup(registry) if credentials == "lookup" else credentials
        self.timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.page_size = page_size
        self._sleep = sleep
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "imgforge"
        # No trust_env: ~/.netrc would overwrite our Authorization header. Its two useful parts,
        # a private CA bundle and HTTP(S)_PROXY/NO_PROXY (never for loopback), are applied here.
        self._session.trust_env = False
        self._session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True
        if not _is_loopback(api_host):
            self._session.proxies = requests.utils.get_environ_proxies(self.base)
        self.auth = RegistryAuth(self.credentials, allow_plain_http_realm=self.scheme == "http")

    def __repr__(self) -> str:
        return f"RegistryClient({self.base!r}, auth={self.auth!r})"

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

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
        target, params = path, {"n": self.page_size}
        for _ in range(_MAX_PAGES):
            try:
                r = self._request("GET", target, repo=name, scope=_pull(name), params=params)
            except BadRequest:
                if "last=" not in _query(target, params):
                    raise
                log.debug("%s rejected 'last'; listing %s without paging", self.registry, name)
                return _merge(tags, self._tags_page(self._request("GET", path, repo=name, scope=_pull(name)), name))
            page = self._tags_page(r, name)
            new = [t for t in page if t not in seen]
            seen.update(new)
            tags.extend(new)
            link = r.links.get("next", {}).get("url")
            if link:
                target, params = self._same_origin(urljoin(r.url, link), name), None
            elif page and new and len(page) == self.page_size:
                target, params = path, {"n": self.page_size, "last": page[-1]}
            else:
                return tags
            if not new:
                return tags  # the registry repeated a page: stop rather than loop
        raise RegistryError(f"registry {self.registry}: tag list of {name} did not end after {_MAX_PAGES} pages")

    def manifest_digest(self, name: str, reference: str) -> str | None:
        """The registry's digest for ``name:reference`` (``sha256:...``), None if the tag is absent."""
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        path = f"/v2/{name}/manifests/{reference}"
        r = self._request("HEAD", path, repo=name, scope=_pull(name), headers=headers, allow=(200, 404))
        if r.status_code == 404:
            return None
        digest = r.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        # Some registries omit the header on HEAD: hash the body of a GET instead (what it is).
        r = self._request("GET", path, repo=name, scope=_pull(name), headers=headers)
        return "sha256:" + hashlib.sha256(r.content).hexdigest()

    # ----------------------------------------------------------------- the funnel

    def _request(self, method: str, target: str, *, repo: str | None, scope: str,
                 params: dict | None = None, headers: dict | None = None, data: bytes | None = None,
                 allow: Iterable[int] = (200,)) -> requests.Response:
        """Send one API call: timeout, auth challenges, bounded retries, translated errors."""
        url = target if "://" in target else self.base + target
        allow = tuple(allow)
        auth_answers = 0
        attempt = 0
        while True:
            attempt += 1
            hdrs = dict(headers or {})
            value = self.auth.header(scope)
            if value:
                hdrs["Authorization"] = value
            r = self._send(method, url, repo, params=params, headers=hdrs, data=data)
            log.debug("%s %s -> %s (attempt %d)", method, urlsplit(r.url).path, r.status_code, attempt)
            if r.status_code == 401 and auth_answers < 2:
                auth_answers += 1
                attempt -= 1  # an auth round trip is not a failed attempt
                try:
                    if self.auth.answer(r, scope, self._session, self.timeout):
                        continue
                except AuthFailed as e:
                    if e.status in (401, 403):
                        raise AuthRejected(self._rejected(repo)) from None
                    raise RegistryError(f"registry {self.registry}: {e}") from None
            if r.status_code in allow:
                return r
            if (r.status_code == 429 or r.status_code >= 500) and attempt < self.attempts:
                self._sleep(self._delay(r, attempt))
                continue
            raise self._error(r, repo, attempt)

    def _send(self, method: str, url: str, repo: str | None, **kw: object) -> requests.Response:
        where = self._where(repo)
        try:
            return self._session.request(method, url, timeout=self.timeout, allow_redirects=True, **kw)
        except requests.exceptions.SSLError as e:
            raise RegistryUnavailable(f"TLS failure talking to {where}: {_reason(e)}") from None
        except requests.Timeout:
            raise RegistryUnavailable(f"{where} timed out (limit {self.timeout[1]:g}s)") from None
        except requests.ConnectionError as e:
            raise RegistryUnavailable(f"{where} unreachable at {self.base} ({_reason(e)})") from None
        except requests.RequestException as e:
            raise RegistryError(f"{where}: request failed ({type(e).__name__})") from None

    def _delay(self, r: requests.Response, attempt: int) -> float:
        after = r.headers.get("Retry-After", "")
        if after.strip().isdigit():
            return min(float(after), _MAX_RETRY_AFTER)
        return self.backoff * 2 ** (attempt - 1)

    def _error(self, r: requests.Response, repo: str | None, attempt: int) -> RegistryError:
        where = self._where(repo)
        code, detail = _registry_error(r)
        if r.status_code in (401, 403):
            return AuthRejected(self._rejected(repo) + (f" ({detail})" if r.status_code == 403 and detail else ""))
        if r.status_code == 404 and repo is not None and code in ("NAME_UNKNOWN", "NOT_FOUND", ""):
            return RepositoryNotFound(f"repository {repo} not found on registry {self.registry}")
        if r.status_code == 400:
            return BadRequest(f"{where} rejected the request: {detail or 'HTTP 400'}")
        if r.status_code == 429 or r.status_code >= 500:
            return RegistryUnavailable(
                f"{where} answered HTTP {r.status_code} {attempt} times; giving up"
                + (f" ({detail})" if detail else ""))
        return RegistryError(f"{where} answered HTTP {r.status_code}" + (f": {detail}" if detail else ""))

    def _rejected(self, repo: str | None) -> str:
        what = f"repository {repo} on registry {self.registry}" if repo else f"registry {self.registry}"
        if self.credentials is None:
            hint = creds.unsupported_reason(self.registry)
            return (f"{what} needs credentials and none were found: set {creds.ENV_USER} and "
                    f"{creds.ENV_PASSWORD} or `docker login {self.registry}`" + (f" ({hint})" if hint else ""))
        return f"credentials rejected for {what} (user '{self.credentials.username}' from {self.credentials.source})"

    def _where(self, repo: str | None) -> str:
        return f"registry {self.registry} (repository {repo})" if repo else f"registry {self.registry}"

    def _same_origin(self, url: str, repo: str) -> str:
        if urlsplit(url).netloc != urlsplit(self.base).netloc:
            raise RegistryError(f"{self._where(repo)} sent a next-page link to another host; not following it")
        return url

    @staticmethod
    def _tags_page(r: requests.Response, repo: str) -> list[str]:
        try:
            data = r.json()
        except ValueError:
            raise RegistryError(f"tag list of {repo}: the registry did not answer JSON") from None
        tags = data.get("tags") if isinstance(data, dict) else None
        if tags is None:
            return []  # distribution answers {"tags": null} for a repository without tags
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise RegistryError(f"tag list of {repo}: 'tags' is not a list of strings")
        return tags


def _pull(name: str) -> str:
    return f"repository:{name}:pull"


def _query(target: str, params: dict | None) -> str:
    return urlsplit(target).query + "&" + "&".join(f"{k}={v}" for k, v in (params or {}).items())


def _merge(first: list[str], more: list[str]) -> list[str]:
    """``first`` then the tags of ``more`` not already in it, order kept."""
    known = set(first)
    return first + [t for t in dict.fromkeys(more) if t not in known]


def _registry_error(r: requests.Response) -> tuple[str, str]:
    """(code, message) of the first entry of the v2 error body, or ("", "") when there is none."""
    try:
        errors = r.json().get("errors") or []
        first = errors[0]
        return str(first.get("code") or ""), str(first.get("message") or "")[:200]
    except (ValueError, AttributeError, IndexError, TypeError):
        return "", ""


def _reason(e: Exception) -> str:
    text = str(e)
    for marker in ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "Connection refused",
                   "Name or service not known", "hostname mismatch", "WRONG_VERSION_NUMBER"):
        if marker in text:
            return marker.lower().replace("_", " ")
    return type(e).__name__
