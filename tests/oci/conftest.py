"""Fixtures of the oci builder tests: the registry tests' real registries, and image clean-up."""

from __future__ import annotations

import contextlib

import docker.errors
import pytest

from tests.registry.conftest import basic_registry, registry_env, unique_repo  # noqa: F401 (fixtures shared by name)


@pytest.fixture
def cleanup_images(docker_client):
    """References (tags) the test made in the engine, removed by exactly that name afterwards."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(ref, force=True)
