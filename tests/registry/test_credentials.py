"""Credentials from the environment and ~/.docker/config.json; WWW-Authenticate parsing."""

from __future__ import annotations

import base64
import json

import pytest

from imgforge.errors import UsageError
from imgforge.registry import credentials
from imgforge.registry.auth import RegistryAuth, parse_challenge
from imgforge.registry.client import Repository, default_scheme


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    for name in (credentials.ENV_USER, credentials.ENV_PASSWORD, credentials.ENV_HOST):
        monkeypatch.delenv(name, raising=False)

    def write(data: dict) -> None:
        (tmp_path / "config.json").write_text(json.dumps(data))

    return write


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auths_entry_is_decoded(docker_config):
    docker_config({"auths": {"https://cr.example.com": {"auth": _b64("robot$ci:s3cr:et")}}})
    found = credentials.lookup("cr.example.com")
    assert (found.username, found.password) == ("robot$ci", "s3cr:et")
    assert credentials.lookup("other.example.com") is None


def test_docker_hub_entry_is_found_under_its_legacy_key(docker_config):
    docker_config({"auths": {"https://index.docker.io/v1/": {"auth": _b64("me:pw")}}})
    assert credentials.lookup("docker.io").username == "me"


def test_environment_wins_and_can_be_limited_to_one_host(docker_config, monkeypatch):
    docker_config({"auths": {"cr.example.com": {"auth": _b64("file:pw")}}})
    monkeypatch.setenv(credentials.ENV_USER, "env-user")
    monkeypatch.setenv(credentials.ENV_PASSWORD, "env-pw")
    assert credentials.lookup("cr.example.com").source == "environment"
    monkeypatch.setenv(credentials.ENV_HOST, "ghcr.io")
    assert credentials.lookup("cr.example.com").username == "file"
    assert credentials.lookup("ghcr.io").username == "env-user"


def test_half_set_environment_is_an_error(docker_config, monkeypatch):
    monkeypatch.setenv(credentials.ENV_USER, "env-user")
    with pytest.raises(UsageError, match="IMGFORGE_REGISTRY_PASSWORD is not set"):
        credentials.lookup("cr.example.com")


def test_bad_auth_value_is_one_line_without_the_value(docker_config):
    docker_config({"auths": {"cr.example.com": {"auth": "not-base64-pw!!"}}})
    with pytest.raises(UsageError) as e:
        credentials.lookup("cr.example.com")
    assert "not valid base64" in str(e.value)
    assert "pw!!" not in str(e.value)


def test_credential_helpers_are_reported_as_unsupported(docker_config):
    docker_config({"auths": {}, "credHelpers": {"cr.example.com": "ecr-login"}, "credsStore": "desktop"})
    assert credentials.lookup("cr.example.com") is None
    assert "credential helper 'ecr-login'" in credentials.unsupported_reason("cr.example.com")
    assert "credsStore 'desktop'" in credentials.unsupported_reason("ghcr.io")


def test_repr_never_shows_the_password():
    c = credentials.Credentials("u", "hunter2-secret", "environment")
    auth = RegistryAuth(c)
    assert "hunter2" not in repr(c) + str(c) + repr(auth)


def test_bearer_challenge_with_commas_in_scope():
    c = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/site:pull,push"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:team/site:pull,push",
    }
    assert parse_challenge('Basic realm="Registry Realm"').scheme == "basic"
    assert parse_challenge("") is None


@pytest.mark.parametrize(
    ("image", "registry", "name"),
    [
        ("cr.pcfae.com/prplanit/sofmeright.com", "cr.pcfae.com", "prplanit/sofmeright.com"),
        ("127.0.0.1:5000/test/site", "127.0.0.1:5000", "test/site"),
        ("prplanit/fairer-pages", "docker.io", "prplanit/fairer-pages"),
        ("nginx", "docker.io", "library/nginx"),
        ("localhost/x", "localhost", "x"),
    ],
)
def test_repository_parse(image, registry, name):
    assert Repository.parse(image) == Repository(registry, name)


def test_plain_http_only_for_loopback_and_listed_hosts(monkeypatch):
    monkeypatch.delenv("IMGFORGE_INSECURE_REGISTRIES", raising=False)
    assert default_scheme("127.0.0.1:5000") == "http"
    assert default_scheme("localhost:5000") == "http"
    assert default_scheme("cr.example.com") == "https"
    monkeypatch.setenv("IMGFORGE_INSECURE_REGISTRIES", "cr.example.com, other:5000")
    assert default_scheme("cr.example.com") == "http"
    assert default_scheme("other:5000") == "http"
