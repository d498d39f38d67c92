"""Attacks by a registry, or whatever answers in its place: one test per attack, named for it.

A registry answer is hostile until proven otherwise: it may drip, never end, claim a terabyte,
inflate, echo our credentials back, redirect elsewhere, or send us to a plain-HTTP token realm.
Each test serves the attack from a real socket on 127.0.0.1 (a deliberately broken server, the
scripted fake registry, or Debian's docker-registry over TLS) and goes through the public client
or the CLI. The broken server gives up after a while, so a missing guard fails its test rather
than hanging it.
"""

from __future__ import annotations

import base64
import logging
import time
import tracemalloc

import pytest

from imgforge._scrub import sanitize
from imgforge.cli import main
from imgforge.errors import AuthRejected, RegistryError, RegistryUnavailable
from imgforge.registry import Credentials, RegistryClient
from tests.registry.conftest import (  # noqa: F401 (fixtures)
    broken_server,
    fake_registry,
    tls_token_registry,
    trust_tls_registry,
)

REPO = "team/site"
USER, PASSWORD = "ci-bot", "pw-Secr3t-Value-0451"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
KiB = 1024


def _client(host: str, **kw) -> RegistryClient:
    return RegistryClient(host, credentials=kw.pop("credentials", None), attempts=1, **kw)


def _peak(fn) -> tuple[int, BaseException | None]:
    """Peak traced memory (bytes) while ``fn`` runs, and what it raised."""
    tracemalloc.start()
    try:
        fn()
        raised = None
    except BaseException as e:  # noqa: BLE001 - handed back to the test to assert on
        raised = e
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, raised


def _run(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent-imgforge-test")
    for name in ("IMGFORGE_REGISTRY_USER", "IMGFORGE_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return done.value.code, out, err


# --------------------------------------------------------------------------- slow and endless answers


def test_slow_drip_body_ends_at_the_total_deadline(broken_server):
    """One byte every 0.5 s keeps every single read within any per-read timeout: only a total
    deadline ends it."""
    server = broken_server("drip_body")
    started = time.monotonic()
    with _client(server.host, timeout=(1.0, 1.5)) as c, pytest.raises(RegistryUnavailable) as e:
        c.list_tags(REPO)
    assert time.monotonic() - started < 4.0
    assert server.sent >= 2
    assert str(e.value) == f"registry {server.host} (repository {REPO}) timed out (limit 1.5s)"
    assert e.value.exit_code == 7


def test_slow_drip_headers_end_at_the_total_deadline(broken_server):
    server = broken_server("drip_headers")
    started = time.monotonic()
    with _client(server.host, timeout=(1.0, 1.5)) as c, pytest.raises(RegistryUnavailable, match=r"timed out"):
        c.list_tags(REPO)
    assert time.monotonic() - started < 4.0
    assert server.sent >= 2


def test_slow_drip_without_a_length_is_not_taken_for_a_whole_answer(broken_server):
    """A body that ends when the connection does looks complete when the deadline cuts it."""
    server = broken_server("drip_unsized")
    with _client(server.host, timeout=(1.0, 1.5)) as c, pytest.raises(RegistryUnavailable, match=r"timed out"):
        c.list_tags(REPO)


def test_slow_drip_during_the_tls_handshake_ends_at_the_total_deadline(broken_server):
    server = broken_server("drip_raw")
    started = time.monotonic()
    with (
        _client(server.host, timeout=(1.0, 1.5), scheme="https") as c,
        pytest.raises(RegistryUnavailable, match=r"timed out \(limit 1.5s\)"),
    ):
        c.list_tags(REPO)
    assert time.monotonic() - started < 4.0
    assert server.sent >= 2


def test_slow_drip_through_the_cli_is_one_error_line_exit_7(broken_server, make_catalog, capsys, monkeypatch):
    server = broken_server("drip_body")
    root = make_catalog(sites={"web": {"image": f"{server.host}/{REPO}", "tag": "v0.0.1"}})
    monkeypatch.setenv("IMGFORGE_HTTP_TIMEOUT", "1")
    code, out, err = _run(capsys, monkeypatch, "tags", "web", "--root", str(root))
    assert (code, out) == (7, "")
    assert err == f"error: registry {server.host} (repository {REPO}) timed out (limit 1s)\n"


def test_endless_body_stops_at_the_cap_in_constant_memory(broken_server):
    server = broken_server("endless")
    with _client(server.host, max_json=256 * KiB) as c:
        peak, raised = _peak(lambda: c.list_tags(REPO))
    assert isinstance(raised, RegistryError)
    assert raised.exit_code == 7
    assert str(raised) == (
        f"registry {server.host} (repository {REPO}) sent an answer larger than 256 KiB; not reading it"
    )
    assert peak < 1024 * KiB  # the cap and a chunk, not the 64 MiB the server would send


def test_endless_tag_list_through_the_cli_stops_at_the_default_cap(broken_server, make_catalog, capsys, monkeypatch):
    server = broken_server("endless")
    root = make_catalog(sites={"web": {"image": f"{server.host}/{REPO}", "tag": "v0.0.1"}})
    code, out, err = _run(capsys, monkeypatch, "tags", "web", "--json", "--root", str(root))
    assert (code, out) == (7, "")
    assert err == (
        f"error: registry {server.host} (repository {REPO}) sent an answer larger than 8 MiB; not reading it\n"
    )


def test_endless_error_answer_is_cut_for_its_reason(broken_server):
    """An error answer only serves a short reason: 64 KiB of it are read, not the 8 MiB cap."""
    server = broken_server("endless", status=500)
    with _client(server.host) as c:
        peak, raised = _peak(lambda: c.list_tags(REPO))
    assert isinstance(raised, RegistryUnavailable)
    assert str(raised) == f"registry {server.host} (repository {REPO}) answered HTTP 500 1 times; giving up"
    assert peak < 1024 * KiB


def test_deeply_nested_json_is_not_json(fake_registry):
    fake_registry.respond = lambda call: (200, {}, b'{"tags": ' + b"[" * 100_000)
    with _client(fake_registry.host) as c, pytest.raises(RegistryError, match="the registry did not answer JSON"):
        c.list_tags(REPO)
    fake_registry.respond = lambda call: (200, {}, b'{"tags": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with _client(fake_registry.host) as c, pytest.raises(RegistryError, match="the registry did not answer JSON"):
        c.list_tags(REPO)


def test_tag_names_with_terminal_escapes_are_refused(fake_registry):
    """Tag names are printed by ``imgforge tags``; the spec's grammar leaves no room for control
    characters, so a list holding one is not shown, nor half-shown."""
    fake_registry.respond = lambda call: (200, {}, {"tags": ["v1.0.0", "x\x1b]0;pwned\x07\x1b[2J"]})
    with _client(fake_registry.host) as c, pytest.raises(RegistryError) as e:
        c.list_tags(REPO)
    assert str(e.value) == f"tag list of {REPO}: 'x\\x1b]0;pwned\\x07\\x1b[2J' is not a valid tag name"


def test_declared_terabyte_is_refused_without_reading(broken_server):
    server = broken_server("huge_length")
    with _client(server.host, timeout=(1.0, 3.0)) as c, pytest.raises(RegistryError, match="larger than 8 MiB"):
        c.list_tags(REPO)


def test_gzip_bomb_counts_the_inflated_bytes(broken_server):
    """64 KiB on the wire inflate to 64 MiB: the cap applies to what we would hold."""
    server = broken_server("gzip_bomb")
    with _client(server.host, max_json=256 * KiB) as c:
        peak, raised = _peak(lambda: c.list_tags(REPO))
    assert isinstance(raised, RegistryError)
    assert "larger than 256 KiB" in str(raised)
    assert peak < 4096 * KiB


def test_manifest_over_4_mib_is_refused(fake_registry):
    """The OCI distribution spec's 4 MiB: a manifest above it is an attack, not an image."""
    big = b"{" + b" " * (4 * 1024 * KiB)
    fake_registry.respond = lambda call: (200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, big)
    with _client(fake_registry.host) as c, pytest.raises(RegistryError, match=r"sent an answer larger than 4 MiB"):
        c.manifest_digest(REPO, "v1.0.0")
    assert [call.method for call in fake_registry.calls] == ["HEAD", "GET"]


# --------------------------------------------------------------------------- echoed credentials


def _basic_then(answer):
    """A registry asking for basic auth, then answering ``answer(call)`` to authenticated calls."""

    def respond(call):
        if "Authorization" not in call.headers:
            return 401, {"WWW-Authenticate": 'Basic realm="test"'}, {"errors": [{"code": "UNAUTHORIZED"}]}
        return answer(call)

    return respond


def _assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
        assert not any(secret[i : i + 8] in text for i in range(len(secret) - 7)), "part of a secret leaked"


def test_echoed_authorization_header_is_not_shown(fake_registry, caplog):
    caplog.set_level(logging.DEBUG)

    def echo(call):
        sent = call.headers["Authorization"]
        return (
            500,
            {},
            {
                "errors": [
                    {
                        "code": "UNKNOWN",
                        "message": f"backend failed; request had Authorization: "
                        f"{sent}; credentials {sent.split()[-1]} unknown",
                    }
                ]
            },
        )

    fake_registry.respond = _basic_then(echo)
    with (
        _client(fake_registry.host, credentials=Credentials(USER, PASSWORD, "test")) as c,
        pytest.raises(RegistryUnavailable) as e,
    ):
        c.list_tags(REPO)
    assert fake_registry.calls[-1].headers["Authorization"] == f"Basic {BASIC}"  # it was sent, and echoed
    assert str(e.value).startswith(
        f"registry {fake_registry.host} (repository {REPO}) answered HTTP 500 1 times; "
        "giving up (backend failed; request had Authorization: ***; credentials *** "
        "unknown)"
    )
    _assert_clean(str(e.value) + caplog.text, BASIC, PASSWORD)


def test_echoed_password_is_not_shown(fake_registry, caplog):
    """No header shape to recognise: only knowing the password finds it."""
    caplog.set_level(logging.DEBUG)
    fake_registry.respond = _basic_then(
        lambda call: (
            403,
            {},
            {"errors": [{"code": "DENIED", "message": f"user {USER} with password {PASSWORD} may not pull {REPO}"}]},
        )
    )
    with (
        _client(fake_registry.host, credentials=Credentials(USER, PASSWORD, "test")) as c,
        pytest.raises(AuthRejected) as e,
    ):
        c.list_tags(REPO)
    assert str(e.value).endswith(f"(user {USER} with password *** may not pull {REPO})")
    _assert_clean(str(e.value) + caplog.text, PASSWORD, BASIC)


def test_echoed_bearer_token_is_not_shown(fake_registry, caplog):
    """The token a realm handed us is a credential too, though no configuration holds it."""
    caplog.set_level(logging.DEBUG)
    token = "tok-ABCDEF-0123456789-zyx"
    realm = f"http://{fake_registry.host}/token"

    def respond(call):
        if call.path == "/token":
            return 200, {}, {"token": token, "expires_in": 300}
        if call.headers.get("Authorization") != f"Bearer {token}":
            return 401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'}, {}
        return 500, {}, {"errors": [{"code": "UNKNOWN", "message": f"token {token} is not valid here"}]}

    fake_registry.respond = respond
    with (
        _client(fake_registry.host, credentials=Credentials(USER, PASSWORD, "test")) as c,
        pytest.raises(RegistryUnavailable) as e,
    ):
        c.list_tags(REPO)
    assert str(e.value).endswith("(token *** is not valid here)")
    _assert_clean(str(e.value) + caplog.text, token, PASSWORD)


def test_control_characters_and_floods_in_a_reason_are_removed(fake_registry):
    forged = "\x1b[2J\x1b[31mwiped\r\nerror: forged second line\u202e" + "A" * 5000
    fake_registry.respond = lambda call: (500, {}, {"errors": [{"code": "UNKNOWN", "message": forged}]})
    with _client(fake_registry.host) as c, pytest.raises(RegistryUnavailable) as e:
        c.list_tags(REPO)
    message = str(e.value)
    assert "\n" not in message
    assert "\r" not in message
    assert "\x1b" not in message
    assert "\u202e" not in message
    assert "wiped error: forged second line AAAA" in message
    assert len(message) < 300


def test_header_lookalikes_are_scrubbed_without_knowing_the_secret():
    """Credentials we do not hold (a proxy's, a cookie) are recognised by their shape."""
    for echoed in (
        '{"headers": {"Proxy-Authorization": "Basic dXNlcjpwYXNzd29yZA=="}}',
        "PRIVATE-TOKEN: glpat-unknownvalue1234",
        "authorization%3A%20Bearer%20abcdefghijkl",
        "Cookie: session=0123456789abcdef",
        "retry with Bearer abcdefghijklmnop",
        "see /login?access_token=0123456789abcdef&next=/",
    ):
        text = sanitize(echoed)
        for value in ("dXNlcjpwYXNzd29yZA", "glpat-unknown", "abcdefghijkl", "0123456789abcdef"):
            assert value not in text, (echoed, text)


# --------------------------------------------------------------------------- where credentials may go


def test_redirect_to_another_host_carries_no_credentials(fake_registry, broken_server):
    elsewhere = broken_server("ok")
    fake_registry.respond = _basic_then(
        lambda call: (302, {"Location": f"http://{elsewhere.host}/v2/{REPO}/tags/list"}, {})
    )
    with _client(fake_registry.host, credentials=Credentials(USER, PASSWORD, "test")) as c:
        assert c.list_tags(REPO) == []  # followed (registries redirect), answered {} there
    assert len(elsewhere.heads) == 1
    head = elsewhere.heads[0].lower()
    assert "authorization" not in head
    assert BASIC.lower() not in head


def test_tls_registry_with_plain_http_token_realm_gets_no_credentials(trust_tls_registry):
    """A registry spoken to over TLS whose realm is plain HTTP: the password would cross the
    network in clear text (base64 is not encryption). imgforge refuses and sends nothing."""
    reg = trust_tls_registry
    with (
        RegistryClient(reg.host, credentials=Credentials(reg.user, reg.password, "test")) as c,
        pytest.raises(RegistryError) as e,
    ):
        c.list_tags("tls/anything")
    assert c.base == f"https://{reg.host}"
    assert str(e.value) == (
        f"registry {reg.host}: refusing to send credentials to token realm {reg.tokens.url} over plain HTTP"
    )
    assert e.value.exit_code == 7
    assert reg.tokens.arrived == []  # the realm never saw a request, let alone the password
