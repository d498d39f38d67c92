"""A registry's manifest may declare any blob size: the oci builder, ``base check`` and
``rebuild --verify`` refuse a config over ``max_config_bytes``, a layer over ``max_layer_bytes``
or more than ``max_layers`` layers before downloading anything, with one error naming the blob.

The hostile manifests are planted in the real test registry (distribution stores a descriptor's
size as the manifest says it; the blobs themselves are small).
"""

from __future__ import annotations

import json

import pytest

from imgforge.errors import LimitExceeded
from imgforge.image import mediatypes as mt
from imgforge.image.limits import DEFAULT_LIMITS
from imgforge.oci import store
from imgforge.oci.base import resolve_base
from imgforge.registry import RegistryClient
from tests.registry.conftest import basic_registry, registry_env, unique_repo  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.registry]

CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
LAYER = b"not read: its descriptor is refused first"


def plant(host: str, repo: str, tag: str, *, config_size: int = 0, layer_size: int = 0, layers: int = 1) -> dict:
    """``repo:tag``: small real blobs, a manifest that may declare other sizes; the manifest."""
    config, layer = store.put_bytes(CONFIG), store.put_bytes(LAYER)
    with RegistryClient(host) as client:
        client.upload_blob(repo, config, len(CONFIG), CONFIG)
        client.upload_blob(repo, layer, len(LAYER), LAYER)
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": config, "size": config_size or len(CONFIG)},
            "layers": [{"mediaType": mt.OCI_LAYER, "digest": layer, "size": layer_size or len(LAYER)}] * layers,
        }
        client.put_manifest(repo, tag, store.canonical_json(manifest), mt.OCI_MANIFEST)
    return manifest


@pytest.fixture
def host(basic_registry, registry_env, monkeypatch, tmp_path):
    registry_env(basic_registry)
    monkeypatch.setenv("IMGFORGE_CACHE_DIR", str(tmp_path / "cache"))
    return basic_registry.host


def test_a_base_config_claiming_64_mib_is_refused_before_download(host, unique_repo):
    repo = unique_repo("caps")
    manifest = plant(host, repo, "1", config_size=64 << 20)  # over max_config_bytes, under the client's cap
    with pytest.raises(LimitExceeded) as e:
        resolve_base(f"{host}/{repo}:1")
    message = str(e.value)
    assert manifest["config"]["digest"] in message
    assert "max_config_bytes" in message
    assert "\n" not in message


def test_a_base_layer_over_max_layer_bytes_and_too_many_layers_are_refused(host, unique_repo):
    repo = unique_repo("caps")
    manifest = plant(host, repo, "big", layer_size=DEFAULT_LIMITS.max_layer_bytes + 1)
    with pytest.raises(LimitExceeded, match=rf"blob {manifest['layers'][0]['digest']}: .*max_layer_bytes"):
        resolve_base(f"{host}/{repo}:big")
    plant(host, repo, "many", layers=DEFAULT_LIMITS.max_layers + 1)
    with pytest.raises(LimitExceeded, match=rf"{DEFAULT_LIMITS.max_layers + 1} layers .*max_layers"):
        resolve_base(f"{host}/{repo}:many")


def test_base_check_of_a_release_whose_config_claims_too_much_is_that_sites_unknown(
    host, unique_repo, make_catalog, cli_main
):
    base_repo, bad, good = unique_repo("base"), unique_repo("bad"), unique_repo("good")
    plant(host, base_repo, "1")
    manifest = plant(host, bad, "v0.1.0", config_size=64 << 20)
    plant(host, good, "v0.1.0")
    sites = {
        name: {"builder": "oci", "base_image": f"{host}/{base_repo}:1", "image": f"{host}/{repo}", "tag": "v0.1.0"}
        for name, repo in (("bad", bad), ("good", good))
    }
    code, out, err = cli_main("base", "check", "--json", "--root", str(make_catalog(sites=sites)))
    assert code == 0, err
    rows = {r["site"]: r for r in json.loads(out)}
    assert rows["bad"]["status"] == "unknown"
    assert f"blob {manifest['config']['digest']}" in rows["bad"]["detail"]
    assert "max_config_bytes" in rows["bad"]["detail"]
    assert rows["good"]["status"] == "unknown"  # released without a base.digest label: never compared


def test_rebuild_verify_refuses_a_registry_config_or_layer_over_its_cap(host, unique_repo):
    from imgforge.oci.compare import _config_difference, _file_difference

    repo = unique_repo("caps")
    theirs = plant(host, repo, "v1", config_size=64 << 20, layer_size=DEFAULT_LIMITS.max_layer_bytes + 1)
    mine = {"config": {"digest": store.put_bytes(b"{}")}}
    with RegistryClient(host) as client:
        with pytest.raises(LimitExceeded, match=rf"blob {theirs['config']['digest']}: .*max_config_bytes"):
            _config_difference(client, repo, mine, theirs)
        with pytest.raises(LimitExceeded, match=rf"blob {theirs['layers'][0]['digest']}: .*max_layer_bytes"):
            _file_difference(client, repo, {"digest": mine["config"]["digest"]}, theirs["layers"][0])
