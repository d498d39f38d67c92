"""The v2 client against real distribution registries: basic auth, token auth, paging, errors."""

from __future__ import annotations

import logging

import pytest

from imgforge.errors import AuthRejected, RegistryUnavailable, RepositoryNotFound
from imgforge.registry import Credentials, RegistryClient
from imgforge.registry.auth import RegistryAuth
from tests.registry.conftest import free_port, paging_front

pytestmark = pytest.mark.registry


TAGS = [f"v0.{i // 100}.{i % 100}" for i in range(257)] + ["latest", "dev-0badc0de"]


def _client(reg, password=None, **kw) -> RegistryClient:
    creds = Credentials(reg.user, password or reg.password, "test") if password != "" else None
    return RegistryClient(reg.host, credentials=creds, **kw)


def _pages(caplog, repo: str) -> int:
    return sum(1 for r in caplog.records if f"/v2/{repo}/tags/list -> 200" in r.getMessage())


@pytest.fixture(scope="module")
def paged_repo(basic_registry):
    from tests.registry.conftest import seed_tags

    seed_tags(basic_registry, "paging/site", TAGS)
    return "paging/site", TAGS


def test_real_registry_ignoring_n_is_listed_in_one_request(basic_registry, paged_repo, caplog):
    repo, tags = paged_repo
    caplog.set_level(logging.DEBUG, logger="imgforge.registry")
    with _client(basic_registry, page_size=100) as c:
        listed = c.list_tags(repo)
    assert sorted(listed) == sorted(tags)
    assert len(listed) == 259
    assert _pages(caplog, repo) == 1  # 2.8 sends all 259 at once: a longer page than n ends the listing
    assert c.auth.scheme == "basic"


@pytest.mark.parametrize("which", ["basic_registry", "token_registry"])
def test_paging_follows_relative_link_across_pages(which, request, seed):
    """n=100 over 259 real tags: three pages, each asked for through the registry's own Link."""
    reg = request.getfixturevalue(which)
    if which == "basic_registry":
        repo, tags = request.getfixturevalue("paged_repo")
    else:
        repo, tags = "paging/token", TAGS
        seed(reg, repo, tags)
    front = paging_front(reg)
    try:
        with RegistryClient(front.host, credentials=Credentials(reg.user, reg.password, "test"), page_size=100) as c:
            listed = c.list_tags(repo)
    finally:
        front.stop()
    assert listed == sorted(tags)
    pages = [call.query for call in front.calls if call.path.endswith("/tags/list") and "Authorization" in call.headers]
    assert pages == [{"n": "100"}, {"last": sorted(tags)[99], "n": "100"}, {"last": sorted(tags)[199], "n": "100"}]


def test_basic_auth_wrong_password_names_registry_and_repository(basic_registry, paged_repo):
    with _client(basic_registry, password="wrong-password") as c, pytest.raises(AuthRejected) as e:
        c.list_tags(paged_repo[0])
    assert str(e.value) == (
        f"credentials rejected for repository paging/site on registry {basic_registry.host} (user 'ci-bot' from test)"
    )
    assert e.value.exit_code == 7


def test_no_credentials_says_how_to_provide_them(basic_registry, paged_repo):
    with _client(basic_registry, password="") as c, pytest.raises(AuthRejected, match="needs credentials"):
        c.list_tags(paged_repo[0])


def test_missing_repository_is_named(basic_registry):
    with _client(basic_registry) as c, pytest.raises(RepositoryNotFound) as e:
        c.list_tags("nobody/here")
    assert str(e.value) == f"repository nobody/here not found on registry {basic_registry.host}"


def test_manifest_digest_matches_what_was_put(basic_registry, seed, unique_repo):
    repo = unique_repo("digest")
    digest = seed(basic_registry, repo, ["v1.0.0"])
    with _client(basic_registry) as c:
        assert c.manifest_digest(repo, "v1.0.0") == digest
        assert c.manifest_digest(repo, "v9.9.9") is None


def test_token_auth_with_basic_credentials(token_registry, tokens, seed, unique_repo):
    repo = unique_repo("token")
    seed(token_registry, repo, ["v0.0.1", "v0.0.2", "latest"])
    tokens.requests.clear()
    with _client(token_registry) as c:
        assert sorted(c.list_tags(repo)) == ["latest", "v0.0.1", "v0.0.2"]
        assert c.list_tags(repo)  # second call reuses the cached token
    assert c.auth.scheme == "bearer"
    assert tokens.requests == [
        {
            "authorized": True,
            "service": "imgforge-test-registry",
            "scope": f"repository:{repo}:pull",
            "account": "robot$ci",
        }
    ]


def test_token_auth_accepts_access_token_key(token_registry, tokens, seed, unique_repo):
    repo = unique_repo("token")
    seed(token_registry, repo, ["v1.0.0"])
    tokens.key_name = "access_token"
    with _client(token_registry) as c:
        assert c.list_tags(repo) == ["v1.0.0"]


def test_anonymous_token_when_realm_allows_pull(token_registry, tokens, seed, unique_repo):
    repo = unique_repo("anon")
    seed(token_registry, repo, ["v1.0.0"])
    tokens.requests.clear()
    tokens.anonymous_pull = True
    with _client(token_registry, password="") as c:
        assert c.list_tags(repo) == ["v1.0.0"]
    assert tokens.requests[0]["authorized"] is False
    assert "account" not in tokens.requests[0]


def test_anonymous_token_without_access_is_rejected(token_registry, tokens, seed, unique_repo):
    repo = unique_repo("anon")
    seed(token_registry, repo, ["v1.0.0"])
    tokens.requests.clear()
    with _client(token_registry, password="") as c, pytest.raises(AuthRejected, match="needs credentials"):
        c.list_tags(repo)
    assert len(tokens.requests) == 1  # an insufficient_scope answer is not retried with a new token


@pytest.mark.parametrize("which", ["basic_registry", "token_registry"])
def test_ping_probes_v2(which, request):
    reg = request.getfixturevalue(which)
    with _client(reg) as c:
        c.ping()
    with _client(reg, password="bad-password") as c, pytest.raises(AuthRejected) as e:
        c.ping()
    assert str(e.value).startswith(f"credentials rejected for registry {reg.host} (user ")


def test_wrong_password_at_the_token_realm(token_registry, tokens, seed, unique_repo):
    repo = unique_repo("token")
    seed(token_registry, repo, ["v1.0.0"])
    with _client(token_registry, password="nope") as c, pytest.raises(AuthRejected) as e:
        c.list_tags(repo)
    assert str(e.value).startswith(f"credentials rejected for repository {repo} on registry {token_registry.host}")


def test_token_rejected_by_the_registry_is_renewed(token_registry, tokens, seed, unique_repo):
    repo = unique_repo("expiry")
    seed(token_registry, repo, ["v1.0.0"])
    tokens.requests.clear()
    tokens.expired_next = 1  # the first token is already expired for the registry
    with _client(token_registry) as c:
        assert c.list_tags(repo) == ["v1.0.0"]
    assert len(tokens.requests) == 2


def test_token_past_expires_in_is_renewed_before_use(token_registry, tokens, seed, unique_repo):
    repo = unique_repo("expiry")
    seed(token_registry, repo, ["v1.0.0"])
    tokens.requests.clear()
    tokens.expires_in = 30
    now = [1000.0]
    with _client(token_registry) as c:
        c.auth = RegistryAuth(c.credentials, allow_plain_http_realm=True, clock=lambda: now[0])
        c.list_tags(repo)
        now[0] += 10
        c.list_tags(repo)
        assert len(tokens.requests) == 1  # still valid: reused
        now[0] += 60
        assert c.list_tags(repo) == ["v1.0.0"]
    assert len(tokens.requests) == 2


def test_unreachable_registry_is_one_clear_error():
    host = f"127.0.0.1:{free_port()}"
    with RegistryClient(host, credentials=None, timeout=1) as c, pytest.raises(RegistryUnavailable) as e:
        c.list_tags("a/b")
    assert str(e.value) == f"registry {host} (repository a/b) unreachable at http://{host} (connection refused)"
