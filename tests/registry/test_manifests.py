"""Manifest calls against real distribution 2.8 registries (basic auth and token auth): PUT by
tag and by digest, read back by both, digests equal to the bytes; and what is refused unsent."""

from __future__ import annotations

import json

import pytest

from imgforge.errors import RegistryError
from imgforge.registry import Credentials, ManifestNotFound, RegistryClient, RepositoryNotFound
from tests.registry.artifacts import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, digest, image_config, manifest

pytestmark = pytest.mark.registry
AUTHS = ["basic_registry", "token_registry"]


def _client(reg, **kw) -> RegistryClient:
    return RegistryClient(reg.host, credentials=Credentials(reg.user, reg.password, "test"), **kw)


def _push_blobs(c: RegistryClient, repo: str, *blobs: bytes) -> None:
    for blob in blobs:
        c.upload_blob(repo, digest(blob), len(blob), blob)


@pytest.mark.parametrize("which", AUTHS)
def test_put_by_tag_and_by_digest_then_read_back(which, request, unique_repo):
    reg, repo = request.getfixturevalue(which), unique_repo("manifests")
    config, layer = image_config("sha256:" + "0" * 64), b"layer bytes"
    first = manifest((OCI_CONFIG, config), [(OCI_LAYER, layer)], annotations={"n": "1"})
    second = manifest((OCI_CONFIG, config), [(OCI_LAYER, layer)], annotations={"n": "2"})
    with _client(reg) as c:
        _push_blobs(c, repo, config, layer)
        assert c.put_manifest(repo, "v1.0.0", first, OCI_MANIFEST) == digest(first)
        assert c.put_manifest(repo, digest(second), second, OCI_MANIFEST) == digest(second)
        assert c.get_manifest(repo, "v1.0.0") == (first, OCI_MANIFEST, digest(first))
        assert c.get_manifest(repo, digest(first)) == (first, OCI_MANIFEST, digest(first))
        assert c.get_manifest(repo, digest(second), [OCI_MANIFEST]) == (second, OCI_MANIFEST, digest(second))
        assert c.manifest_digest(repo, "v1.0.0") == digest(first)
        assert c.list_tags(repo) == ["v1.0.0"]  # the one PUT by digest made no tag
        c.delete_manifest(repo, digest(first))
        with pytest.raises(ManifestNotFound) as e:
            c.get_manifest(repo, "v1.0.0")
    assert str(e.value) == f"manifest v1.0.0 not found in repository {repo} on registry {reg.host}"
    assert e.value.exit_code == 7


def test_exact_bytes_are_stored(basic_registry, unique_repo):
    """The digest is of the bytes as sent: whitespace and key order are the caller's."""
    repo = unique_repo("manifests")
    config, layer = image_config("x"), b"l"
    compact = manifest((OCI_CONFIG, config), [(OCI_LAYER, layer)])
    pretty = json.dumps(json.loads(compact), indent=3).encode()
    with _client(basic_registry) as c:
        _push_blobs(c, repo, config, layer)
        assert c.put_manifest(repo, "pretty", pretty, OCI_MANIFEST) == digest(pretty)
        assert c.get_manifest(repo, "pretty")[0] == pretty


def test_missing_repository_and_manifest(basic_registry, unique_repo):
    repo = unique_repo("manifests")
    with _client(basic_registry) as c:
        with pytest.raises((RepositoryNotFound, ManifestNotFound)):  # distribution 2.8 says MANIFEST_UNKNOWN
            c.get_manifest(repo, "v1")
        config = image_config("y")
        _push_blobs(c, repo, config)
        with pytest.raises(ManifestNotFound):
            c.get_manifest(repo, digest(b"nothing"))


def test_what_is_refused_before_sending(basic_registry, unique_repo):
    repo = unique_repo("manifests")
    config = image_config("z")
    doc = manifest((OCI_CONFIG, config), [], annotations={"pad": "x" * 3000})
    with _client(basic_registry, max_manifest=2048) as c:
        _push_blobs(c, repo, config)
        with pytest.raises(RegistryError, match=r"bytes is above the limit of 2 KiB; not sending it"):
            c.put_manifest(repo, "big", doc, OCI_MANIFEST)
        with pytest.raises(ValueError, match=r"mediaType is application/vnd\.oci\.image\.manifest\.v1"):
            c.put_manifest(repo, "v1", manifest((OCI_CONFIG, config), []), "application/vnd.oci.image.index.v1+json")
        with pytest.raises(ValueError, match="not the reference"):
            c.put_manifest(repo, digest(b"other"), manifest((OCI_CONFIG, config), []), OCI_MANIFEST)
        assert c.manifest_digest(repo, "big") is None
        assert c.manifest_digest(repo, "v1") is None
