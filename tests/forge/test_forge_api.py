"""The forge clients against a fake forge that speaks the real GitLab, GitHub and Gitea APIs."""

from __future__ import annotations

import socket

import pytest

from imgforge.errors import EXIT_FORGE, ForgeError
from imgforge.forge import RequestSpec, connect, parse_remote, redact_url, resolve
from imgforge.forge.base import ForgeUnauthorized
from imgforge.forge.gitea import Gitea
from imgforge.forge.github import GitHub
from imgforge.forge.gitlab import GitLab

TOKEN = "glpat-s3cr3t-TOKEN-value-42"  # the same as conftest.TOKEN (conftest is not importable)
CLASSES = {"gitlab": GitLab, "github": GitHub, "gitea": Gitea}


def _client(kind: str, url: str, token: str = TOKEN, timeout: float = 5.0):
    return CLASSES[kind](url, "ops/gitops", token, timeout=timeout)


def _spec(branch: str = "imgforge/web-v1.0.0", body: str = "first body") -> RequestSpec:
    return RequestSpec(branch, "main", f"chore(image): update x to {branch[-6:]}", body)


def test_create_then_find_then_update(kind, fake_forge):
    fake = fake_forge(kind)
    forge = _client(kind, fake.url)
    created, action = forge.open_or_update(_spec())
    assert action == "created"
    assert created.number == 1
    assert created.source_branch == "imgforge/web-v1.0.0"
    method, path, headers, payload = fake.calls[-1]
    assert method == "POST"
    if kind == "gitlab":
        assert path == "/api/v4/projects/ops%2Fgitops/merge_requests"
        assert headers["PRIVATE-TOKEN"] == TOKEN
        assert "Authorization" not in headers
        assert payload == {
            "source_branch": "imgforge/web-v1.0.0",
            "target_branch": "main",
            "title": created.title,
            "description": "first body",
            "remove_source_branch": True,
        }
    elif kind == "github":
        assert path == "/api/v3/repos/ops/gitops/pulls"
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert (payload["head"], payload["base"], payload["body"]) == ("imgforge/web-v1.0.0", "main", "first body")
    else:
        assert path == "/api/v1/repos/ops/gitops/pulls"
        assert headers["Authorization"] == f"token {TOKEN}"
        assert payload == {"title": created.title, "head": "imgforge/web-v1.0.0", "base": "main", "body": "first body"}

    found = forge.find_open_request("imgforge/web-v1.0.0")
    assert found == created
    again, action = forge.open_or_update(_spec(body="first body"), found)
    assert action == "unchanged"
    assert again == found
    updated, action = forge.open_or_update(_spec(body="second body"), found)
    assert action == "updated"
    assert updated.number == 1
    assert updated.body == "second body"
    assert fake.calls[-1][0] == ("PUT" if kind == "gitlab" else "PATCH")
    assert len(fake.items) == 1


def test_duplicate_on_create_updates_the_existing_one(kind, fake_forge):
    """A request opened between our lookup and our POST (409/422) is found and updated, not duplicated."""
    fake = fake_forge(kind)
    fake.race = True
    forge = _client(kind, fake.url)
    request, action = forge.open_or_update(_spec(body="ours"))
    assert action == "updated"
    assert request.number == 1
    assert request.body == "ours"
    statuses = [c[0] for c in fake.calls]
    assert statuses == ["POST", "GET", "PUT" if kind == "gitlab" else "PATCH"]
    assert len(fake.items) == 1


def test_pagination_reads_every_page(kind, fake_forge):
    """The fake serves at most 2 per page: the request we look for is on the third page."""
    fake = fake_forge(kind)
    for i in range(5):
        fake.seed(f"feature-{i}")
    fake.seed("imgforge/web-v2.0.0", body="mine")
    forge = _client(kind, fake.url)
    found = forge.find_open_request("imgforge/web-v2.0.0")
    assert found is not None
    assert found.number == 6
    assert found.body == "mine"
    gets = [c for c in fake.calls if c[0] == "GET"]
    assert len(gets) == 3
    assert len(forge.open_requests("feature-")) == 5


def test_closed_requests_are_not_found(kind, fake_forge):
    fake = fake_forge(kind)
    forge = _client(kind, fake.url)
    created, _ = forge.open_or_update(_spec())
    forge.close_request(created)
    assert fake.items[1]["state"] == "closed"
    assert forge.find_open_request(created.source_branch) is None


def test_rejected_token_is_named_but_never_shown(kind, fake_forge):
    fake = fake_forge(kind)
    wrong = "wrong-token-ABCDEF-123456"
    forge = _client(kind, fake.url, token=wrong)
    with pytest.raises(ForgeUnauthorized) as err:
        forge.find_open_request("x")
    message = str(err.value)
    assert f"token rejected by {kind}" in message
    assert fake.url in message
    assert CLASSES[kind].token_envs[0] in message
    assert wrong not in message
    assert wrong not in repr(forge)
    assert err.value.exit_code == EXIT_FORGE


def test_unknown_project_and_server_errors_are_explained(kind, fake_forge):
    fake = fake_forge(kind)
    forge = CLASSES[kind](fake.url, "ops/nope", TOKEN)
    with pytest.raises(ForgeError, match=r"project 'ops/nope' not found"):
        forge.find_open_request("x")
    forge = _client(kind, fake.url)
    fake.fail["POST"] = 500
    with pytest.raises(ForgeError, match=r"answered 500 to POST .*Internal Server Error"):
        forge.open_or_update(_spec())
    assert fake.items == {}


def test_validation_error_that_is_not_a_duplicate_is_not_retried(fake_forge, tmp_path):
    """GitHub's 422 also means "head invalid": that must surface, not loop into find/update."""
    import subprocess

    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    fake = fake_forge("github", remote=bare)
    with pytest.raises(ForgeError, match=r"answered 422 to POST .*Validation Failed; invalid"):
        _client("github", fake.url).open_or_update(_spec())


def test_forge_down_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    forge = GitLab(f"http://127.0.0.1:{port}", "ops/gitops", TOKEN, timeout=2)
    with pytest.raises(ForgeError, match=rf"cannot reach gitlab at http://127.0.0.1:{port}: connection refused"):
        forge.find_open_request("x")


def test_timeout_is_a_clear_error():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # accepts the connection, never answers
        forge = Gitea(f"http://127.0.0.1:{server.getsockname()[1]}", "ops/gitops", TOKEN, timeout=0.5)
        with pytest.raises(ForgeError, match=r"did not answer within 0.5s"):
            forge.find_open_request("x")


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("git@gitlab.example.com:ops/gitops.git", ("https://gitlab.example.com", "ops/gitops")),
        ("ssh://git@gitlab.example.com:2222/ops/sub/gitops.git", ("https://gitlab.example.com", "ops/sub/gitops")),
        ("https://oauth2:glpat-xyz@gitlab.example.com/ops/gitops.git", ("https://gitlab.example.com", "ops/gitops")),
        ("http://127.0.0.1:3000/ops/gitops", ("http://127.0.0.1:3000", "ops/gitops")),
        ("/srv/git/gitops.git", None),
        ("file:///srv/git/gitops.git", None),
    ],
)
def test_parse_remote(remote, expected):
    assert parse_remote(remote) == expected


def test_connect_derives_forge_from_the_remote_and_reads_the_token(forge_env):
    forge = connect(remote_url="git@github.com:ops/gitops.git")
    assert isinstance(forge, GitHub)
    assert forge.api_root == "https://api.github.com"
    assert forge.project == "ops/gitops"
    forge = connect(remote_url="https://user:glpat-xyz@gitlab.example.com/ops/gitops.git")
    assert isinstance(forge, GitLab)
    assert forge.base_url == "https://gitlab.example.com"
    assert "glpat-xyz" not in repr(forge)
    forge = connect(
        "gitea", url="https://git.example.com/forge", remote_url="https://git.example.com/forge/ops/gitops.git"
    )
    assert forge.api_root == "https://git.example.com/forge/api/v1"
    assert forge.project == "ops/gitops"
    ghe = connect("github", remote_url="https://git.corp.example/ops/gitops.git")
    assert ghe.api_root == "https://git.corp.example/api/v3"


def test_connect_explains_what_is_missing(forge_env, monkeypatch):
    with pytest.raises(ForgeError, match=r"pass --forge-url and --project"):
        connect("gitlab", remote_url="/srv/git/gitops.git")
    with pytest.raises(ForgeError, match=r"cannot tell which forge serves 'git.example.com'; pass --forge"):
        connect(remote_url="git@git.example.com:ops/gitops.git")
    monkeypatch.delenv("GITLAB_TOKEN")
    with pytest.raises(ForgeError, match=r"no gitlab token: set IMGFORGE_GITLAB_TOKEN or GITLAB_TOKEN"):
        connect(remote_url="git@gitlab.example.com:ops/gitops.git")
    monkeypatch.setenv("IMGFORGE_FORGE", "gitea")
    monkeypatch.setenv("IMGFORGE_FORGE_URL", "http://127.0.0.1:3000")
    monkeypatch.setenv("IMGFORGE_FORGE_PROJECT", "ops/gitops")
    cls, url, project = resolve(remote_url="/srv/git/gitops.git")
    assert (cls, url, project) == (Gitea, "http://127.0.0.1:3000", "ops/gitops")


def test_redact_url():
    assert redact_url("https://oauth2:tok@host/x.git") == "https://host/x.git"
    assert redact_url("git@host:x.git") == "git@host:x.git"


def test_next_page_link_to_another_host_is_not_followed(fake_forge):
    """The token is sent with every page: a Link to another host would hand it over."""
    fake = fake_forge("github")
    fake.link_host = "http://127.0.0.2:1"
    for i in range(3):
        fake.seed(f"feature-{i}")
    with pytest.raises(ForgeError, match="next-page link to another host; not following it"):
        _client("github", fake.url).find_open_request("imgforge/none")
    assert len(fake.calls) == 1


@pytest.mark.parametrize("kind", ["gitlab", "github", "gitea"])
@pytest.mark.parametrize("odd", [[], ["a"], "text", 42, None])
def test_an_answer_that_is_not_a_json_object_is_one_forge_error(kind, odd, fake_forge):
    """A create answered 200 with a list, a string or null: exit 9 with the forge named, no KeyError."""
    fake = fake_forge(kind)
    fake.odd["POST"] = odd
    with pytest.raises(ForgeError, match=rf"^{kind} answered 200 with JSON that is not an object$"):
        _client(kind, fake.url).open_or_update(_spec())
