"""Where registry credentials come from, and the one rule about them: they never get printed.

Two sources, checked in this order:

1. ``IMGFORGE_REGISTRY_USER`` + ``IMGFORGE_REGISTRY_PASSWORD`` (CI secrets). They apply to every
   registry unless ``IMGFORGE_REGISTRY_HOST`` names the one host they belong to, so a pipeline
   that talks to two registries cannot hand one registry's password to the other.
2. ``auths`` in the Docker client config (``$DOCKER_CONFIG/config.json``, default
   ``~/.docker/config.json``): the base64 ``auth`` field (``user:password``), as ``docker login``
   writes it when no credential store is configured.

Credential helpers (``credsStore``, ``credHelpers``) and ``identitytoken`` entries are NOT
supported: they mean running external programs or an OAuth refresh flow. When one is configured
for a host and nothing else is found, :func:`unsupported_reason` says so, and the 401 error names
it instead of leaving the user guessing why ``docker login`` "did not work".
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgforge.errors import UsageError

ENV_USER = "IMGFORGE_REGISTRY_USER"
ENV_PASSWORD = "IMGFORGE_REGISTRY_PASSWORD"
ENV_HOST = "IMGFORGE_REGISTRY_HOST"

# Docker Hub's API host and the key `docker login` files its credentials under.
DOCKER_HUB = "docker.io"
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    """A username and password; ``repr`` and ``str`` never show the password."""

    username: str
    password: str = field(repr=False)
    source: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***', source={self.source!r})"

    __str__ = __repr__

    def docker_auth_config(self) -> dict[str, str]:
        """The shape docker-py's ``push(auth_config=...)`` expects."""
        return {"username": self.username, "password": self.password}


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return Path(base) / "config.json"


def lookup(host: str) -> Credentials | None:
    """Credentials for registry ``host`` (``cr.example.com``, ``127.0.0.1:5000``), or None."""
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    only_for = os.environ.get(ENV_HOST)
    if user or password:
        if not (user and password):
            missing = ENV_PASSWORD if user else ENV_USER
            raise UsageError(f"{missing} is not set but {ENV_USER if user else ENV_PASSWORD} is; set both or neither")
        if not only_for or _same_host(only_for, host):
            return Credentials(user, password, source="environment")
    entry = _auths_entry(_read_config(), host)
    if entry is None or not entry.get("auth"):
        return None
    return _decode(entry["auth"], host)


def unsupported_reason(host: str) -> str | None:
    """Why configured credentials for ``host`` were not used (a helper or identity token), if so."""
    data = _read_config()
    found = data.get("credHelpers")
    helpers: dict[str, Any] = found if isinstance(found, dict) else {}
    for key in _keys(host):
        if key in helpers:
            return f"credential helper '{helpers[key]}' for {host} in {config_path()} is not supported"
    entry = _auths_entry(data, host)
    if entry and entry.get("identitytoken") and not entry.get("auth"):
        return f"identity tokens in {config_path()} are not supported"
    if data.get("credsStore"):
        return f"credsStore '{data['credsStore']}' in {config_path()} is not supported"
    return None


def _read_config() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"{path}: cannot read Docker config: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data


def _auths_entry(data: dict[str, Any], host: str) -> dict[str, Any] | None:
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return None
    for key in _keys(host):
        for name, entry in auths.items():
            if _strip(name) == key and isinstance(entry, dict):
                return entry
    return None


def _decode(value: str, host: str) -> Credentials:
    # The messages below must not include the value: it is the password, merely base64-encoded.
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise UsageError(f"{config_path()}: auths entry for {host}: 'auth' is not valid base64") from None
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise UsageError(f"{config_path()}: auths entry for {host}: 'auth' is not 'user:password'")
    return Credentials(user, password, source=str(config_path()))


def _keys(host: str) -> tuple[str, ...]:
    host = _strip(host)
    return DOCKER_HUB_KEYS if host in DOCKER_HUB_KEYS else (host,)


def _strip(name: str) -> str:
    """``https://cr.example.com/v2/`` and ``cr.example.com`` are the same auths key."""
    name = name.strip().lower()
    for prefix in ("https://", "http://"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    name = name.split("/", 1)[0] if not name.startswith("index.docker.io/v1") else "index.docker.io"
    return name


def _same_host(a: str, b: str) -> bool:
    return set(_keys(a)) & set(_keys(b)) != set()
