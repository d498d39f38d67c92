"""A registry on loopback that speaks TLS: how imgforge is told so, and how its CA is trusted.

Loopback registries are plain HTTP by default (as Docker does); IMGFORGE_TLS_REGISTRIES names the
hosts that speak TLS anyway, and REQUESTS_CA_BUNDLE the CA that signed their certificate. The
registry is Debian's docker-registry with a certificate from a CA made by the fixture. (What it
must refuse, credentials for its plain-HTTP token realm, is in tests/security.)
"""

from __future__ import annotations

import pytest

from imgforge.errors import BadRequest, RegistryUnavailable, UsageError
from imgforge.registry import RegistryClient
from imgforge.registry.client import default_scheme

pytestmark = pytest.mark.registry


def test_tls_hosts_setting_overrides_the_loopback_default(monkeypatch):
    monkeypatch.delenv("IMGFORGE_TLS_REGISTRIES", raising=False)
    assert default_scheme("127.0.0.1:5000") == "http"
    monkeypatch.setenv("IMGFORGE_TLS_REGISTRIES", "localhost, 127.0.0.1:5000")
    assert default_scheme("127.0.0.1:5000") == "https"
    assert default_scheme("localhost:443") == "https"
    assert default_scheme("127.0.0.1:5001") == "http"


def test_anonymous_pull_over_tls_with_the_ca_from_requests_ca_bundle(trust_tls_registry, seed):
    reg = trust_tls_registry
    seed(reg, "tls/site", ["v1.0.0", "v1.1.0"])
    reg.tokens.anonymous_pull = True
    with RegistryClient(reg.host, credentials=None) as c:
        assert sorted(c.list_tags("tls/site")) == ["v1.0.0", "v1.1.0"]
    assert c.base == f"https://{reg.host}"
    assert reg.tokens.arrived


def test_without_the_ca_the_certificate_is_refused(trust_tls_registry, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with RegistryClient(trust_tls_registry.host, credentials=None) as c, pytest.raises(RegistryUnavailable) as e:
        c.list_tags("tls/site")
    assert str(e.value).startswith(f"TLS failure talking to registry {trust_tls_registry.host} (repository tls/site): ")
    assert e.value.exit_code == 7


def test_without_the_tls_setting_plain_http_meets_a_tls_port(trust_tls_registry, monkeypatch):
    monkeypatch.delenv("IMGFORGE_TLS_REGISTRIES")
    with RegistryClient(trust_tls_registry.host, credentials=None) as c, pytest.raises(BadRequest, match="HTTP 400"):
        c.list_tags("tls/site")  # Go's TLS server answers plain HTTP with a bare 400
    assert c.base == f"http://{trust_tls_registry.host}"


def test_a_ca_bundle_that_does_not_exist_is_named(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/imgforge-ca.pem")
    with pytest.raises(UsageError) as e:
        RegistryClient("cr.example.com", credentials=None)
    assert str(e.value) == "REQUESTS_CA_BUNDLE: CA bundle /nonexistent/imgforge-ca.pem does not exist"
    assert e.value.exit_code == 2
