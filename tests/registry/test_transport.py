"""The registry client's session: what it takes from the environment and what it never does.

requests' ``trust_env`` is off: ``~/.netrc`` would replace the Authorization header we chose, and
proxy variables would route loopback traffic away. The two useful parts are applied by hand:
HTTP(S)_PROXY for registries not on loopback, and the CA bundle (tests/registry/test_tls.py).
"""

from __future__ import annotations

from imgforge.registry import Credentials, RegistryClient
from tests.registry.conftest import BrokenServer


def _basic(fake):
    def respond(call):
        if "Authorization" not in call.headers:
            return 401, {"WWW-Authenticate": 'Basic realm="test"'}, {}
        return 200, {}, {"tags": ["v1.0.0"]}

    fake.respond = respond


def test_netrc_never_replaces_our_credentials(fake_registry, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine 127.0.0.1 login netrc-user password netrc-password\n")
    (home / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    _basic(fake_registry)
    with RegistryClient(fake_registry.host, credentials=Credentials("ci-bot", "pw-0123", "test")) as c:
        assert c.list_tags("team/site") == ["v1.0.0"]
    import base64

    sent = {call.headers.get("Authorization") for call in fake_registry.calls}
    assert sent == {None, "Basic " + base64.b64encode(b"ci-bot:pw-0123").decode()}


def test_proxy_variables_are_not_used_for_loopback(fake_registry, monkeypatch):
    proxy = BrokenServer("ok")
    try:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        fake_registry.respond = lambda call: (200, {}, {"tags": ["v1.0.0"]})
        with RegistryClient(fake_registry.host, credentials=None) as c:
            assert c.list_tags("team/site") == ["v1.0.0"]
        assert proxy.heads == []
        assert len(fake_registry.calls) == 1
    finally:
        proxy.stop()


def test_proxy_variables_are_used_for_other_registries(fake_registry, monkeypatch):
    """The fake registry plays the proxy: it receives the absolute URL of registry.invalid."""
    monkeypatch.setenv("HTTP_PROXY", f"http://{fake_registry.host}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("IMGFORGE_INSECURE_REGISTRIES", "registry.invalid")
    fake_registry.respond = lambda call: (200, {}, {"tags": ["v2.0.0"]})
    with RegistryClient("registry.invalid", credentials=None) as c:
        assert c.list_tags("team/site") == ["v2.0.0"]
    assert [call.headers.get("Host") for call in fake_registry.calls] == ["registry.invalid"]
