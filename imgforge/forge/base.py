"""What every forge (GitLab, GitHub, Gitea) must offer imgforge, and the one HTTP funnel they share.

Shaped after Renovate's *platform* modules: a forge is an object with ``find_open_request``,
``create_request`` and ``update_request``; its URL, project and token live on the instance, never
in module globals, so two forges can be used in one process (and in one test).

Every HTTP call passes through ``Forge._call``, which sends through the shared HTTP funnel
(:mod:`imgforge._http`: a total deadline per request, a bounded body, no redirects, same-origin
paging) with the token set per request, and translates failures and status codes into
``ForgeError`` with a finished message. A forge's own explanation is shown only sanitized: the
token, anything shaped like an ``Authorization``/``PRIVATE-TOKEN`` header and control characters
are removed, because a forge (or a proxy before it) may echo request headers in an error body.
Duplicate-request answers (GitHub 422, Gitea 409, GitLab 409) raise
``DuplicateRequest`` so ``open_or_update`` can fall back to finding and updating the existing one.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import requests
import requests.auth

from imgforge import _http, _scrub
from imgforge._http import MAX_JSON, Answer, TransportError
from imgforge.errors import ForgeError

DEFAULT_TIMEOUT = 15.0  # seconds a whole request may take: a hung or dripping forge must not hang CI
MAX_PAGES = 50  # 50 pages x 100 requests: far beyond any real number of open bot requests

log = logging.getLogger("imgforge.forge")


class ForgeUnauthorized(ForgeError):
    """The forge answered 401: the token is missing, expired or lacks the scope."""


class DuplicateRequest(ForgeError):
    """The forge refused to create a request because one already exists for the branch."""


@dataclass(frozen=True)
class RequestSpec:
    """What imgforge wants a merge/pull request to say (forge-neutral)."""

    source_branch: str
    target_branch: str
    title: str
    body: str


@dataclass(frozen=True)
class OpenRequest:
    """A merge/pull request as the forge reported it."""

    number: int  # GitLab's project-scoped iid, GitHub's and Gitea's PR number
    url: str
    title: str
    body: str
    source_branch: str
    target_branch: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Forge(abc.ABC):
    """One forge project reached through its REST API with one token."""

    name: str = "forge"  # "gitlab", "github", "gitea"
    noun: str = "pull request"  # what the forge calls a request, for messages
    token_envs: tuple[str, ...] = ()  # environment variables the token is read from, in order

    def __init__(
        self,
        base_url: str,
        project: str,
        token: str,
        *,
        timeout: float | None = None,
        max_body: int = MAX_JSON,
        max_pages: int = MAX_PAGES,
    ):
        """``timeout``: seconds a whole request may take (default ``IMGFORGE_HTTP_TIMEOUT`` or 15);
        ``max_body``: bytes of one JSON answer; ``max_pages``: pages of one listing."""
        if not token:
            raise ForgeError(f"no {self.name} token: set {' or '.join(self.token_envs)}")
        self.base_url = base_url.rstrip("/")
        self.project = project.strip("/")
        self.timeout = _http.deadline_from_env(DEFAULT_TIMEOUT) if timeout is None else timeout
        self.max_body, self.max_pages = max_body, max_pages
        self._token = token
        self._http = _http.Client(connect=self.timeout, deadline=self.timeout, logger=log)

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({self.base_url!r}, {self.project!r})"

    # --- what each forge implements -------------------------------------------------------------

    @property
    @abc.abstractmethod
    def api_root(self) -> str:
        """The REST API root, e.g. ``https://gitlab.example.com/api/v4``."""

    @abc.abstractmethod
    def _auth_headers(self) -> dict[str, str]:
        """The headers that carry the token."""

    @abc.abstractmethod
    def _list_open(self) -> Iterator[dict[str, Any]]:
        """Every open request of the project, as the forge's JSON objects (all pages)."""

    @abc.abstractmethod
    def _parse(self, item: dict[str, Any]) -> OpenRequest:
        """The forge's JSON object of one request as an ``OpenRequest``."""

    @classmethod
    @abc.abstractmethod
    def create_payload(cls, spec: RequestSpec) -> dict[str, Any]:
        """The JSON body that creates the request (shown as-is by ``imgforge pr --dry-run``)."""

    @abc.abstractmethod
    def _create(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST the creation payload; returns the forge's JSON of the new request."""

    @abc.abstractmethod
    def _edit(self, number: int, payload: dict[str, Any]) -> dict[str, Any]:
        """PATCH/PUT one request; returns the forge's JSON of it."""

    def update_payload(self, spec: RequestSpec) -> dict[str, Any]:
        """The JSON body that refreshes title and description of an existing request."""
        return {"title": spec.title, "body": spec.body}

    def close_payload(self) -> dict[str, Any]:
        return {"state": "closed"}

    # --- the protocol imgforge uses -------------------------------------------------------------

    def open_requests(self, branch_prefix: str = "") -> list[OpenRequest]:
        """Open requests whose source branch starts with ``branch_prefix`` (all pages read)."""
        found = (self._parse(item) for item in self._list_open())
        return [r for r in found if r.source_branch.startswith(branch_prefix)]

    def find_open_request(self, branch: str) -> OpenRequest | None:
        return next((r for r in self.open_requests(branch) if r.source_branch == branch), None)

    def create_request(self, spec: RequestSpec) -> OpenRequest:
        return self._parse(self._create(self.create_payload(spec)))

    def update_request(self, existing: OpenRequest, spec: RequestSpec) -> OpenRequest:
        return self._parse(self._edit(existing.number, self.update_payload(spec)))

    def close_request(self, existing: OpenRequest) -> OpenRequest:
        return self._parse(self._edit(existing.number, self.close_payload()))

    def open_or_update(self, spec: RequestSpec, existing: OpenRequest | None = None) -> tuple[OpenRequest, str]:
        """Create the request, or refresh the open one for the same branch; never a second one.

        Returns the request and what happened: ``created``, ``updated`` or ``unchanged``. A
        duplicate answer on create (a request opened between our lookup and our POST) is resolved
        by looking it up again and updating it.
        """
        if existing is None:
            try:
                return self.create_request(spec), "created"
            except DuplicateRequest:
                existing = self.find_open_request(spec.source_branch)
                if existing is None:
                    raise ForgeError(
                        f"{self.name} says a {self.noun} for branch {spec.source_branch!r} exists, "
                        "but none is open; close or reopen it by hand"
                    ) from None
        if existing.title == spec.title and _text(existing.body) == _text(spec.body):
            return existing, "unchanged"
        return self.update_request(existing, spec), "updated"

    # --- the HTTP funnel ------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.api_root}{path}"

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Answer:
        """Every request to the forge: deadline, size cap, auth, and one translation of every failure."""
        try:
            answer = self._http.request(
                method,
                self._url(path),
                json=json,
                params=params,
                headers={"Accept": "application/json"},
                auth=_HeaderAuth(self._auth_headers),
                max_body=self.max_body,
            )
        except TransportError as e:
            raise self._unreachable(e, method, path) from e
        if answer.status < 300:
            return answer
        raise self._status_error(method, path, answer)

    def _unreachable(self, e: TransportError, method: str, path: str) -> ForgeError:
        where = f"{method} {self._show(path)}"
        if e.kind == "timeout":
            return ForgeError(f"{self.name} at {self.base_url} did not answer within {self.timeout:g}s ({where})")
        if e.kind == "too_large":
            return ForgeError(
                f"{self.name} at {self.base_url} answered {where} with more than "
                f"{_http.size_text(e.limit)}; not reading it"
            )
        return ForgeError(f"cannot reach {self.name} at {self.base_url}: {e.reason}")

    def _status_error(self, method: str, path: str, response: Answer) -> ForgeError:
        status = response.status
        detail = _scrub.error_detail(response, (self._token,), text_fallback=True)[1]
        where = f"{method} {self._show(path)}"
        if status == 401:
            return ForgeUnauthorized(
                f"token rejected by {self.name} at {self.base_url} (401 on {where}); "
                f"check {' / '.join(self.token_envs)}"
            )
        if status == 403:
            return ForgeError(
                f"{self.name} refused {where} (403): the token lacks the permission{': ' + detail if detail else ''}"
            )
        if status == 404:
            return ForgeError(
                f"{self.name} project {self.project!r} not found at {self.base_url}, or not "
                f"visible to the token (404 on {where}); check the project path and the token's access"
            )
        if status in (409, 422) and method == "POST" and self._is_duplicate(status, detail):
            return DuplicateRequest(f"{self.name}: a {self.noun} already exists ({status}: {detail})")
        if 300 <= status < 400:
            return ForgeError(f"{self.name} redirected {where} ({status}); is {self.base_url} the API host?")
        return ForgeError(
            f"{self.name} at {self.base_url} answered {status} to {where}" + (f": {detail}" if detail else "")
        )

    def _is_duplicate(self, status: int, detail: str) -> bool:
        """Whether a 409/422 answer to a create means "exists already" (each forge says it its way)."""
        return True

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Items of every page: follows ``Link: rel="next"`` (same origin only) or GitLab's ``X-Next-Page``."""
        url: str | None = path
        query: dict[str, Any] | None = params
        for _ in range(self.max_pages):
            assert url is not None
            response = self._call("GET", url, params=query)
            items = _json(response, self.name)
            if not isinstance(items, list):
                raise ForgeError(f"{self.name} answered GET {self._show(path)} with a non-list JSON")
            yield from items
            url, query = self._next_page(response, url, query)
            if url is None:
                return
        raise ForgeError(f"{self.name}: more than {self.max_pages} pages of open {self.noun}s; giving up")

    def _next_page(
        self, response: Answer, url: str, query: dict[str, Any] | None
    ) -> tuple[str | None, dict[str, Any] | None]:
        try:
            target = response.next_page(self.api_root)  # the token goes with it: same origin only
        except TransportError as e:
            raise ForgeError(f"{self.name} {e.reason}") from None
        if target:
            return target, None
        next_page = response.headers.get("X-Next-Page", "").strip()
        if next_page and query is not None:
            return url, {**query, "page": next_page}
        return None, None

    def _show(self, path: str) -> str:
        return _scrub.sanitize(path.split("?", 1)[0], (self._token,), limit=300)


class _HeaderAuth(requests.auth.AuthBase):
    """Sets the forge's token headers on each request. Passed as ``auth=`` so requests never
    replaces them with ``~/.netrc`` credentials, and so the token is not a session default that a
    redirect or another host could receive."""

    def __init__(self, headers: Callable[[], dict[str, str]]):
        self._headers = headers

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self._headers())
        return request


def _text(body: str) -> str:
    """A description as compared for "unchanged": forges may store CRLF and trim the ends."""
    return body.replace("\r\n", "\n").strip()


def _json(response: Answer, forge: str) -> Any:
    try:
        return response.json()
    except ValueError as e:
        raise ForgeError(f"{forge} answered {response.status} with something that is not JSON") from e


def _object(response: Answer, forge: str) -> dict[str, Any]:
    """A JSON object answer (one request); anything else is the forge's error, not our KeyError."""
    data = _json(response, forge)
    if not isinstance(data, dict):
        raise ForgeError(f"{forge} answered {response.status} with JSON that is not an object")
    return data
