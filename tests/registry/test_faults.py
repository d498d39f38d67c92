"""Faults a real registry will not produce on demand, served by a scripted fake registry."""

from __future__ import annotations

import hashlib
import time

import pytest

from imgforge.errors import AuthRejected, BadRequest, RegistryError, RegistryUnavailable
from imgforge.registry import Credentials, RegistryClient

TAGS = sorted(f"v1.{i // 100}.{i % 100}" for i in range(250))
REPO = "team/site"


def _client(fake, sleeps=None, **kw) -> RegistryClient:
    return RegistryClient(
        fake.host,
        credentials=kw.pop("credentials", None),
        page_size=100,
        backoff=0.25,
        sleep=(sleeps.append if sleeps is not None else (lambda s: None)),
        **kw,
    )


def _page(query: dict) -> list[str]:
    tags = [t for t in TAGS if t > query.get("last", "")]
    return tags[: int(query["n"])] if "n" in query else tags


def test_no_link_header_pages_by_last_tag(fake_registry):
    fake_registry.respond = lambda call: (200, {}, {"name": REPO, "tags": _page(call.query)})
    with _client(fake_registry) as c:
        assert c.list_tags(REPO) == TAGS
    assert [call.query for call in fake_registry.calls] == [
        {"n": "100"},
        {"n": "100", "last": TAGS[99]},
        {"n": "100", "last": TAGS[199]},
    ]


def test_harbor_400_on_last_falls_back_to_one_unpaged_listing(fake_registry):
    def respond(call):
        if "last" in call.query:  # Harbor: "last" must be an existing tag; it was deleted meanwhile
            return 400, {}, {"errors": [{"code": "BAD_REQUEST", "message": "the last tag is not found"}]}
        return 200, {}, {"name": REPO, "tags": _page(call.query)}

    fake_registry.respond = respond
    with _client(fake_registry) as c:
        assert c.list_tags(REPO) == TAGS
    assert [call.query for call in fake_registry.calls] == [{"n": "100"}, {"n": "100", "last": TAGS[99]}, {}]


def test_400_without_last_is_reported(fake_registry):
    fake_registry.respond = lambda call: (
        400,
        {},
        {"errors": [{"code": "PAGINATION_NUMBER_INVALID", "message": "invalid number of results requested"}]},
    )
    with _client(fake_registry) as c, pytest.raises(BadRequest) as e:
        c.list_tags(REPO)
    assert str(e.value) == (
        f"registry {fake_registry.host} (repository {REPO}) rejected the request: invalid number of results requested"
    )
    assert len(fake_registry.calls) == 1  # a 400 is an answer, not a fault: never retried


def test_429_then_success_waits_as_told(fake_registry):
    def respond(call):
        if len(fake_registry.calls) <= 2:
            return 429, {"Retry-After": "1"}, {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}
        return 200, {}, {"name": REPO, "tags": ["v1.0.0"]}

    fake_registry.respond = respond
    sleeps: list[float] = []
    with _client(fake_registry, sleeps) as c:
        assert c.list_tags(REPO) == ["v1.0.0"]
    assert len(fake_registry.calls) == 3
    assert sleeps == [1.0, 1.0]


def test_500s_past_the_retry_budget(fake_registry):
    fake_registry.respond = lambda call: (503, {}, {"errors": [{"code": "UNAVAILABLE", "message": "backend down"}]})
    sleeps: list[float] = []
    with _client(fake_registry, sleeps, attempts=3) as c, pytest.raises(RegistryUnavailable) as e:
        c.list_tags(REPO)
    assert str(e.value) == (
        f"registry {fake_registry.host} (repository {REPO}) answered HTTP 503 3 times; giving up (backend down)"
    )
    assert len(fake_registry.calls) == 3
    assert sleeps == [0.25, 0.5]


def test_read_timeout_is_bounded_and_named(fake_registry):
    def respond(call):
        time.sleep(1.0)
        return 200, {}, {"tags": []}

    fake_registry.respond = respond
    started = time.monotonic()
    with _client(fake_registry, timeout=0.2, attempts=4) as c, pytest.raises(RegistryUnavailable) as e:
        c.list_tags(REPO)
    assert time.monotonic() - started < 0.9
    assert str(e.value) == f"registry {fake_registry.host} (repository {REPO}) timed out (limit 0.2s)"
    assert len(fake_registry.calls) == 1  # a timeout is not retried: that would multiply the wait


def test_next_link_to_another_host_is_not_followed(fake_registry):
    fake_registry.respond = lambda call: (
        200,
        {"Link": '<http://127.0.0.2:9/v2/x/tags/list?n=1>; rel="next"'},
        {"tags": ["v1.0.0"]},
    )
    with _client(fake_registry) as c, pytest.raises(RegistryError) as e:
        c.list_tags(REPO)
    assert str(e.value) == (
        f"registry {fake_registry.host} (repository {REPO}) sent a next-page link to another host; not following it"
    )
    assert len(fake_registry.calls) == 1


def test_tags_null_is_an_empty_list(fake_registry):
    fake_registry.respond = lambda call: (200, {}, {"name": REPO, "tags": None})
    with _client(fake_registry) as c:
        assert c.list_tags(REPO) == []


def test_digest_is_hashed_when_head_omits_the_header(fake_registry):
    body = b'{"schemaVersion": 2}'
    fake_registry.respond = lambda call: (200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, body)
    with _client(fake_registry) as c:
        assert c.manifest_digest(REPO, "v1.0.0") == "sha256:" + hashlib.sha256(body).hexdigest()
    assert [call.method for call in fake_registry.calls] == ["HEAD", "GET"]
    assert "application/vnd.oci.image.index.v1+json" in fake_registry.calls[0].headers["Accept"]


def test_unreachable_token_realm_names_the_realm(fake_registry):
    fake_registry.respond = lambda call: (
        401,
        {"WWW-Authenticate": 'Bearer realm="http://127.0.0.1:9/token",service="reg"'},
        {},
    )
    with _client(fake_registry) as c, pytest.raises(RegistryError) as e:
        c.list_tags(REPO)
    assert str(e.value) == (
        f"registry {fake_registry.host}: token realm http://127.0.0.1:9 unreachable (connection refused)"
    )
    assert len(fake_registry.calls) == 1


def test_tls_failure_is_named(fake_registry):
    with _client(fake_registry, scheme="https", attempts=1) as c, pytest.raises(RegistryUnavailable) as e:
        c.list_tags(REPO)
    assert str(e.value).startswith(f"TLS failure talking to registry {fake_registry.host} (repository {REPO}): ")


def test_retry_after_is_capped(fake_registry):
    """A registry saying "come back in an hour" is waited for 30 s at most."""
    fake_registry.respond = lambda call: (503, {"Retry-After": "3600"}, {})
    sleeps: list[float] = []
    with _client(fake_registry, sleeps, attempts=2) as c, pytest.raises(RegistryUnavailable):
        c.list_tags(REPO)
    assert len(fake_registry.calls) == 2
    assert sleeps == [30.0]


def test_403_is_rejected_at_once_with_the_registrys_reason(fake_registry):
    fake_registry.respond = lambda call: (
        403,
        {},
        {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]},
    )
    with (
        _client(fake_registry, credentials=Credentials("ci-bot", "pw-0123456789", "test")) as c,
        pytest.raises(AuthRejected) as e,
    ):
        c.list_tags(REPO)
    assert str(e.value) == (
        f"credentials rejected for repository {REPO} on registry {fake_registry.host} "
        "(user 'ci-bot' from test) (requested access to the resource is denied)"
    )
    assert e.value.exit_code == 7
    assert len(fake_registry.calls) == 1


def test_tag_list_that_is_not_json(fake_registry):
    fake_registry.respond = lambda call: (200, {"Content-Type": "text/html"}, b"<html><body>Sign in</body></html>")
    with _client(fake_registry) as c, pytest.raises(RegistryError) as e:
        c.list_tags(REPO)
    assert str(e.value) == f"tag list of {REPO}: the registry did not answer JSON"
    assert e.value.exit_code == 7


def test_tag_list_that_is_not_a_list_of_strings(fake_registry):
    fake_registry.respond = lambda call: (200, {}, {"tags": [{"name": "v1.0.0"}]})
    with _client(fake_registry) as c, pytest.raises(RegistryError, match="'tags' is not a list of strings"):
        c.list_tags(REPO)


def test_paging_stops_at_the_page_cap(fake_registry):
    """A registry that pages forever (a new full page each time) is stopped at ``max_pages``."""

    def respond(call):
        n = len(fake_registry.calls)
        link = {"Link": f'</v2/{REPO}/tags/list?n=2&page={n + 1}>; rel="next"'} if n < 20 else {}
        return 200, link, {"tags": [f"a{n}", f"b{n}"]}  # (ends after 20, so a missing cap fails, not hangs)

    fake_registry.respond = respond
    with _client(fake_registry, max_pages=3) as c, pytest.raises(RegistryError) as e:
        c.list_tags(REPO)
    assert str(e.value) == f"registry {fake_registry.host}: tag list of {REPO} did not end after 3 pages"
    assert len(fake_registry.calls) == 3


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_http_timeout_setting_must_be_a_positive_number(monkeypatch, value):
    from imgforge.errors import UsageError

    monkeypatch.setenv("IMGFORGE_HTTP_TIMEOUT", value)
    with pytest.raises(UsageError) as e:
        RegistryClient("127.0.0.1:9", credentials=None)
    assert str(e.value) == f"IMGFORGE_HTTP_TIMEOUT: expected a number of seconds above 0, got {value!r}"
    monkeypatch.setenv("IMGFORGE_HTTP_TIMEOUT", "2.5")
    assert RegistryClient("127.0.0.1:9", credentials=None).timeout == (5.0, 2.5)
