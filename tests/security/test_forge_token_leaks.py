"""Attacks on the forge token, and forge answers that never end: one test per attack.

CI runs ``imgforge pr``/``update`` with a token that can push to the GitOps repo, and its output
and logs are read by many. A forge (or a proxy in front of it) that echoes request headers in an
error body, or redirects to another host, must not get the token printed, logged or sent on.
Each test runs against the fake forge of ``tests/forge/conftest.py`` in its hostile modes, or
the deliberately broken server of ``tests/registry/conftest.py``, on 127.0.0.1.
"""

from __future__ import annotations

import logging
import time
import tracemalloc

import pytest

from imgforge.cli import main
from imgforge.errors import ForgeError
from imgforge.forge.gitea import Gitea
from imgforge.forge.github import GitHub
from imgforge.forge.gitlab import GitLab
from tests.forge.conftest import TOKEN, fake_forge, forge_env, gitops_repo, kind  # noqa: F401 (fixtures)
from tests.registry.conftest import broken_server  # noqa: F401 (fixture)

CLASSES = {"gitlab": GitLab, "github": GitHub, "gitea": Gitea}
KiB = 1024


def _forge(kind: str, url: str, **kw):
    return CLASSES[kind](url, "ops/gitops", TOKEN, **kw)


def _assert_no_token(text: str) -> None:
    """Nothing of the token: not whole, and no 8 characters of it in a row."""
    assert TOKEN not in text
    leaked = [TOKEN[i : i + 8] for i in range(len(TOKEN) - 7) if TOKEN[i : i + 8] in text]
    assert not leaked, f"part of the token leaked: {leaked}"


def _fail(forge, call) -> ForgeError:
    with pytest.raises(ForgeError) as e:
        call(forge)
    return e.value


def test_error_body_echoing_the_token_header_is_scrubbed(kind, fake_forge, caplog):
    caplog.set_level(logging.DEBUG)
    fake = fake_forge(kind)
    fake.echo, fake.fail["GET"] = "json", 500
    err = _fail(_forge(kind, fake.url), lambda f: f.find_open_request("x"))
    assert TOKEN in json_text(fake)  # the forge did echo it
    assert "answered 500 to GET " in str(err)
    assert "(request had " in str(err)
    assert err.exit_code == 9
    _assert_no_token(str(err) + caplog.text)


def test_error_body_echoing_the_bare_token_is_scrubbed(kind, fake_forge, caplog):
    """No header name to recognise: the token itself must be known and removed."""
    caplog.set_level(logging.DEBUG)
    fake = fake_forge(kind)
    fake.echo, fake.fail["GET"] = "bare", 403
    err = _fail(_forge(kind, fake.url), lambda f: f.find_open_request("x"))
    assert str(err).endswith("the token lacks the permission: invalid token ***")
    _assert_no_token(str(err) + caplog.text)


def test_plain_text_error_echoing_request_headers_is_scrubbed(kind, fake_forge, caplog):
    """A debugging proxy's answer: every request header, one per line, as text."""
    caplog.set_level(logging.DEBUG)
    fake = fake_forge(kind)
    fake.echo, fake.fail["POST"] = "text", 502
    forge = _forge(kind, fake.url)
    err = _fail(forge, lambda f: f.open_or_update(_spec()))
    assert "answered 502 to POST" in str(err)
    assert "\n" not in str(err)
    _assert_no_token(str(err) + caplog.text)


def test_token_cut_in_half_by_the_error_body_cap_is_scrubbed(fake_forge, caplog):
    """Only the first 64 KiB of an error answer are read: a token straddling the cut is no longer
    the whole token, yet its first half must not show."""
    caplog.set_level(logging.DEBUG)
    fake = fake_forge("gitlab")
    fake.echo, fake.fail["GET"] = "cut", 500
    err = _fail(_forge("gitlab", fake.url), lambda f: f.find_open_request("x"))
    assert str(err).endswith("answered 500 to GET /projects/ops%2Fgitops/merge_requests: ***")
    _assert_no_token(str(err) + caplog.text)


def test_redirect_to_another_host_is_not_followed(kind, fake_forge, caplog):
    caplog.set_level(logging.DEBUG)
    fake = fake_forge(kind)
    elsewhere = fake.redirect_elsewhere()
    err = _fail(_forge(kind, fake.url), lambda f: f.find_open_request("x"))
    assert f"{kind} redirected GET " in str(err)
    assert "(302)" in str(err)
    assert elsewhere.calls == []  # nothing arrived there: no token, no request at all
    _assert_no_token(str(err) + caplog.text)


def test_slow_drip_ends_at_the_total_deadline(broken_server):
    server = broken_server("drip_body")
    started = time.monotonic()
    err = _fail(_forge("gitlab", server.url, timeout=1.5), lambda f: f.find_open_request("x"))
    assert time.monotonic() - started < 4.0
    assert server.sent >= 2
    assert str(err) == (
        f"gitlab at {server.url} did not answer within 1.5s (GET /projects/ops%2Fgitops/merge_requests)"
    )
    assert err.exit_code == 9


def test_endless_body_stops_at_the_cap_in_constant_memory(broken_server):
    server = broken_server("endless")
    forge = _forge("github", server.url, max_body=256 * KiB)
    tracemalloc.start()
    try:
        err = _fail(forge, lambda f: f.find_open_request("x"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err) == (
        f"github at {server.url} answered GET /repos/ops/gitops/pulls with more than 256 KiB; not reading it"
    )
    assert peak < 1024 * KiB


def test_slow_drip_through_the_cli_is_one_error_line_exit_9(
    broken_server, gitops_repo, make_catalog, forge_env, capsys, monkeypatch
):
    server = broken_server("drip_headers")
    work, _ = gitops_repo("127.0.0.1:9/prplanit/web.example")
    root = make_catalog(sites={"web": {"image": "127.0.0.1:9/prplanit/web.example", "tag": "v0.0.3"}})
    monkeypatch.setenv("IMGFORGE_HTTP_TIMEOUT", "1")
    with pytest.raises(SystemExit) as done:
        main(
            [
                "pr",
                "web",
                "--repo",
                str(work),
                "--root",
                str(root),
                "--forge",
                "gitea",
                "--forge-url",
                server.url,
                "--project",
                "ops/gitops",
            ]
        )
    out, err = capsys.readouterr()
    assert done.value.code == 9
    assert out == ""
    assert err == f"error: gitea at {server.url} did not answer within 1s (GET /repos/ops/gitops/pulls)\n"


def _spec():
    from imgforge.forge import RequestSpec

    return RequestSpec("imgforge/web-v1.0.0", "main", "chore(image): update x to v1.0.0", "body")


def json_text(fake) -> str:
    """What the fake forge was sent, as text (to show the token really was in play)."""
    return " ".join(str(headers) for _, _, headers, _ in fake.calls)
