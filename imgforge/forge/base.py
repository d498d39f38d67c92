"""What every forge (GitLab, GitHub, Gitea) must offer imgforge, and the one HTTP funnel they share.

Shaped after Renovate's *platform* modules: a forge is an object with ``find_open_request``,
``create_request`` and ``update_request``; its URL, project and token live on the instance, never
in module globals, so two forges can be used in one process (and in one test).

Every HTTP call passes through ``Forge._call``: one place sets timeouts and headers, translates
``requests`` failures and status codes into ``ForgeError`` with a finished message, and scrubs the
token from anything it reports. Duplicate-request answers (GitHub 422, Gitea 409, GitLab 409) raise
``DuplicateRequest`` so ``open_or_update`` can fall back to finding and updating the existing one.
"""

from __future__ import annotations

import abc
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urljoin, urlsplit

import requests
import requests.auth

from imgforge.errors import ForgeError

DEFAULT_TIMEOUT = 15.0  # seconds per request (connect and read): a hung forge must not hang CI
_MAX_PAGES = 50  # 50 pages x 100 requests: far beyond any real number of open bot requests
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


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

    def __init__(self, base_url: str, project: str, token: str, *, timeout: float = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None):
        if not token:
            raise ForgeError(f"no {self.name} token: set {' or '.join(self.token_envs)}")
        self.base_url = base_url.rstrip("/")
        self.project = project.strip("/")
        self.timeout = timeout
        self._token = token
        self._session = session or requests.Session()
        self._session.headers.update({"User-Agent": "imgforge", "Accept": "application/json"})

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
                        "but none is open; close or reopen it by hand") from None
        if existing.title == spec.title and _text(existing.body) == _text(spec.body):
            return existing, "unchanged"
        return self.update_request(existing, spec), "updated"

    # --- the HTTP funnel ------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.api_root}{path}"

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
              ) -> requests.Response:
        """Every request to the forge: timeouts, auth, and one translation of every failure."""
        url = self._url(path)
        try:
            response = self._session.request(method, url, json=json, params=params, timeout=self.timeout,
                                             auth=_HeaderAuth(self._auth_headers), allow_redirects=False)
        except requests.Timeout as e:
            raise ForgeError(f"{self.name} at {self.base_url} did not answer within {self.timeout:g}s "
                             f"({method} {self._show(path)})") from e
        except requests.RequestException as e:
            raise ForgeError(f"cannot reach {self.name} at {self.base_url}: {self._scrub(_reason(e))}") from e
        if response.status_code < 300:
            return response
        self._raise_for_status(method, path, response)
        raise AssertionError("unreachable")  # _raise_for_status always raises

    def _raise_for_status(self, method: str, path: str, response: requests.Response) -> None:
        status = response.status_code
        detail = self._scrub(_error_detail(response))
        where = f"{method} {self._show(path)}"
        if status == 401:
            raise ForgeUnauthorized(f"token rejected by {self.name} at {self.base_url} (401 on {where}); "
                                    f"check {' / '.join(self.token_envs)}")
        if status == 403:
            raise ForgeError(f"{self.name} refused {where} (403): the token lacks the permission"
                             f"{': ' + detail if detail else ''}")
        if status == 404:
            raise ForgeError(f"{self.name} project {self.project!r} not found at {self.base_url}, or not "
                             f"visible to the token (404 on {where}); check the project path and the token's access")
        if status in (409, 422) and method == "POST" and self._is_duplicate(status, detail):
            raise DuplicateRequest(f"{self.name}: a {self.noun} already exists ({status}: {detail})")
        if 300 <= status < 400:
            raise ForgeError(f"{self.name} redirected {where} ({status}); is {self.base_url} the API host?")
        raise ForgeError(f"{self.name} at {self.base_url} answered {status} to {where}"
                         + (f": {detail}" if detail else ""))

    def _is_duplicate(self, status: int, detail: str) -> bool:
        """Whether a 409/422 answer to a create means "exists already" (each forge says it its way)."""
        return True

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Items of every page: follows ``Link: rel="next"`` or GitLab's ``X-Next-Page``."""
        url: str | None = path
        query: dict[str, Any] | None = params
        for _ in range(_MAX_PAGES):
            response = self._call("GET", url, params=query)
            items = _json(response, self.name)
            if not isinstance(items, list):
                raise ForgeError(f"{self.name} answered GET {self._show(path)} with a non-list JSON")
            yield from items
            url, query = self._next_page(response, url, query)
            if url is None:
                return
        raise ForgeError(f"{self.name}: more than {_MAX_PAGES} pages of open {self.noun}s; giving up")

    def _next_page(self, response: requests.Response, url: str, query: dict[str, Any] | None
                   ) -> tuple[str | None, dict[str, Any] | None]:
        match = _LINK_NEXT.search(response.headers.get("Link", ""))
        if match:
            target = urljoin(response.url or self._url(url), match.group(1))
            if urlsplit(target).netloc != urlsplit(self.api_root).netloc:  # the token goes with it
                raise ForgeError(f"{self.name} sent a next-page link to another host; not following it")
            return target, None
        next_page = response.headers.get("X-Next-Page", "").strip()
        if next_page and query is not None:
            return url, {**query, "page": next_page}
        return None, None

    def _show(self, path: str) -> str:
        return self._scrub(path.split("?", 1)[0])

    def _scrub(self, text: str) -> str:
        """Remove the token from any text that may end up in a message (forges echo headers)."""
        return text.replace(self._token, "***") if self._token else text


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


def _reason(e: requests.RequestException) -> str:
    """The innermost cause of a connection failure, short (no URL: the caller names the forge)."""
    text = str(e.__context__ or e)
    for needle in ("Connection refused", "Name or service not known", "No route to host",
                   "Temporary failure in name resolution", "certificate verify failed", "timed out"):
        if needle in text:
            return needle.lower()
    return type(e).__name__


def _error_detail(response: requests.Response) -> str:
    """The forge's own explanation: GitLab ``message``, GitHub ``message``+``errors``, Gitea ``message``."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if not isinstance(data, dict):
        return str(data)[:200]
    parts = []
    message = data.get("message") or data.get("error")
    if isinstance(message, list):
        message = "; ".join(map(str, message))
    if message:
        parts.append(str(message))
    for err in data.get("errors") or []:
        parts.append(str(err.get("message") or err.get("code") or err) if isinstance(err, dict) else str(err))
    return "; ".join(parts)[:300]


def _json(response: requests.Response, forge: str) -> Any:
    try:
        return response.json()
    except ValueError as e:
        raise ForgeError(f"{forge} answered {response.status_code} with something that is not JSON") from e
