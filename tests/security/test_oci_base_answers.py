"""The oci builder reads its base from a registry: a hostile answer is one registry error, never a crash.

The fake registry of ``tests/registry/conftest.py`` serves a base manifest that is valid JSON with
the right digest and media type, but the wrong shape (a config that is a string, layers a number).
"""

from __future__ import annotations

import hashlib
import json

import pytest

from imgforge.errors import EXIT_REGISTRY, ImageInvalid
from imgforge.oci.base import resolve_base
from tests.registry.conftest import fake_registry  # noqa: F401 (fixture)

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def test_a_base_manifest_of_the_wrong_shape_is_one_registry_error(fake_registry, monkeypatch):
    monkeypatch.setenv("IMGFORGE_REGISTRY_HOST", "")
    body = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": "nope", "layers": 5}).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()

    def respond(call):
        if call.path.endswith("/manifests/1") or call.path.endswith(f"/manifests/{digest}"):
            return 200, {"Content-Type": MANIFEST, "Docker-Content-Digest": digest}, body
        return 404, {}, {"errors": [{"code": "MANIFEST_UNKNOWN"}]}

    fake_registry.respond = respond
    with pytest.raises(ImageInvalid, match=r"base .*/hostile/base:1: the registry served a malformed manifest") as e:
        resolve_base(f"{fake_registry.host}/hostile/base:1")
    assert e.value.exit_code == EXIT_REGISTRY
