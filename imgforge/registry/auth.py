"""Registry authentication: anonymous, HTTP basic, and the Bearer-token dance.

The flow is the one Docker, Renovate and Flux follow: a request answered 401 carries a
``WWW-Authenticate`` challenge. ``Basic`` means "send the credentials"; ``Bearer realm=..,
service=.., scope=..`` means "get a token from the realm" (with basic credentials if we have
them, anonymously if not) and send it. Tokens are cached per scope and dropped when their
``expires_in`` runs out or the registry rejects them, which is how an expired token is renewed.

The funnel in :mod:`imgforge.registry.client` owns the retry loop; this module only says which
``Authorization`` header to send and learns from challenges. Secrets stay on this object: its
repr shows none, no message built here contains a token or password, and :meth:`RegistryAuth.secrets`
lists every credential it holds so error reasons can be scrubbed of them. Credentials are never
sent to a token realm over plain HTTP unless the registry itself is spoken to over plain HTTP.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from imgforge import _http, _scrub
from imgforge._http import Answer, TransportError
from imgforge.registry.credentials import Credentials

log = logging.getLogger("imgforge.registry")

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_EARLY = 5.0  # seconds: renew a little before the registry would reject the token
_DEFAULT_LIFETIME = 60.0  # the token spec's default when a realm sends no expires_in


class AuthFailed(Exception):
    """Internal: the realm refused or answered nonsense. The client turns it into RegistryError."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lowercased
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """Parse ``Bearer realm="https://auth/token",service="reg",scope="repository:a/b:pull"``.

    Scope values contain commas (``pull,push``) and colons, so parameters are read as
    ``key="quoted"`` pairs rather than by splitting on commas.
    """
    header = (header or "").strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {}
    for m in _PARAM.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return Challenge(scheme.lower(), params)


@dataclass
class _Token:
    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"_Token('***', expires_at={self.expires_at:.0f})"


class RegistryAuth:
    """Authorization state for one registry: credentials, the scheme it wants, cached tokens."""

    def __init__(
        self,
        credentials: Credentials | None,
        *,
        allow_plain_http_realm: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.credentials = credentials
        self.scheme: str | None = None  # learned from the first challenge
        self._tokens: dict[str, _Token] = {}
        self._issued: set[str] = set()  # every token value received, for scrubbing messages
        self._allow_plain = allow_plain_http_realm
        self._clock = clock

    def __repr__(self) -> str:
        user = self.credentials.username if self.credentials else None
        return f"RegistryAuth(user={user!r}, scheme={self.scheme!r}, tokens={len(self._tokens)})"

    def secrets(self) -> tuple[str, ...]:
        """Every credential this object holds or sent: password, basic value, tokens."""
        held = tuple(self._issued)
        if self.credentials:
            user, password = self.credentials.username, self.credentials.password
            held += (password, _scrub.basic_value(user, password))
        return held

    def header(self, scope: str) -> str | None:
        """The Authorization value to send for a request needing ``scope`` (None: send none)."""
        if self.scheme == "basic" and self.credentials:
            return "Basic " + _scrub.basic_value(self.credentials.username, self.credentials.password)
        if self.scheme == "bearer":
            token = self._tokens.get(scope)
            if token and token.expires_at > self._clock():
                return f"Bearer {token.value}"
            self._tokens.pop(scope, None)
        return None

    def answer(self, response: Answer, scope: str, http: _http.Client) -> bool:
        """Learn from a 401. True when a retry now has a better chance (new scheme or new token)."""
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            return False
        sent = response.request_headers.get("Authorization", "")
        if challenge.scheme == "basic":
            first = self.scheme != "basic"
            self.scheme = "basic"
            return first and self.credentials is not None and not sent.startswith("Basic ")
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return False
        self.scheme = "bearer"
        if sent.startswith("Bearer ") and challenge.params.get("error") == "insufficient_scope":
            return False  # the realm gave us all it will: another token would be refused the same way
        had = self._tokens.pop(scope, None)
        if had is not None and sent == f"Bearer {had.value}":
            log.debug("token for %s rejected or expired; fetching a new one", scope)
        self._tokens[scope] = self._fetch_token(challenge, scope, http)
        return True

    def _fetch_token(self, challenge: Challenge, scope: str, http: _http.Client) -> _Token:
        realm = challenge.params["realm"]
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AuthFailed(f"token realm {realm!r} is not an http(s) URL")
        params: dict[str, str | list[str]] = {}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        wanted = challenge.params.get("scope") or scope
        if wanted:  # several scopes (a mount: push here, pull there) go as one parameter each
            params["scope"] = wanted.split()
        auth = None
        if self.credentials:
            if parts.scheme == "http" and not self._allow_plain:
                raise AuthFailed(f"refusing to send credentials to token realm {realm} over plain HTTP")
            auth = (self.credentials.username, self.credentials.password)
            params["account"] = self.credentials.username
        log.debug("fetching token from %s for scope %r", realm, wanted)
        origin = f"{parts.scheme}://{parts.netloc}"
        try:
            r = http.request("GET", realm, params=params, auth=auth)
        except TransportError as e:
            if e.kind == "timeout":
                raise AuthFailed(f"token realm {origin} timed out (limit {e.limit:g}s)") from None
            if e.kind == "too_large":
                raise AuthFailed(f"token realm {origin} sent more than {_http.size_text(e.limit)}") from None
            raise AuthFailed(f"token realm {origin} unreachable ({e.reason})") from None
        if r.status in (401, 403):
            raise AuthFailed(f"token realm {parts.netloc} refused the credentials", r.status)
        if r.status != 200:
            raise AuthFailed(f"token realm {parts.netloc} answered HTTP {r.status}", r.status)
        try:
            data = r.json()
        except ValueError:
            raise AuthFailed(f"token realm {parts.netloc} did not answer JSON") from None
        value = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise AuthFailed(f"token realm {parts.netloc} answered without 'token' or 'access_token'")
        self._issued.add(value)
        lifetime = data.get("expires_in")
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = _DEFAULT_LIFETIME
        return _Token(value, self._clock() + max(float(lifetime) - _EARLY, 1.0))
