"""The one place that opens a Docker Engine client, so every module fails the same way without one.

Honours DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH (docker.from_env), so builds and tests
can run against a remote or shared engine.
"""

from __future__ import annotations

import functools

import docker
from docker.errors import DockerException

from imgforge.errors import DockerUnavailable


@functools.lru_cache(maxsize=1)
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except DockerException as e:
        raise DockerUnavailable(_short(e)) from e
    except Exception as e:  # requests' connection errors surface here before docker wraps them
        raise DockerUnavailable(_short(e)) from e
    return client


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "FileNotFoundError" in text or "No such file" in text or "Connection refused" in text:
        return "no engine answers at DOCKER_HOST or /var/run/docker.sock"
    return text[:200]
