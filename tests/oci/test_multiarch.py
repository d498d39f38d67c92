"""A multi-platform base gives one manifest per platform and an index over them, pushed in one call.

The base index in the test registry holds the local amd64 nginx base and the same layers under a
config labelled linux/arm64/v8 (``registry_bases.as_arm64``). That proves the plumbing: the base's
index is read, imgforge's layers are written once and shared by every platform, each platform gets
its own config and manifest, ``--platform`` picks a subset, and the registry serves the index. It
does not prove the arm64 image runs on arm64 (its binaries are amd64); this machine runs only amd64.
"""

from __future__ import annotations

import json

import pytest

from imgforge.registry import RegistryClient
from tests.oci.registry_bases import as_arm64, local_base, put_index

pytestmark = [pytest.mark.docker, pytest.mark.registry]


def test_an_index_base_gives_an_index_and_platform_selects_a_subset(
    basic_registry, registry_env, unique_repo, make_catalog, nginx_base, monkeypatch, cli_main, cleanup_images
):
    registry_env(basic_registry)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    host = basic_registry.host
    base_repo = unique_repo("multi")
    amd64 = local_base()
    put_index(host, base_repo, "1", [("amd64", "", amd64), ("arm64", "v8", as_arm64(amd64))])
    image = f"{host}/{unique_repo('site')}"
    cleanup_images.append(f"{image}:v0.2.0")
    root = make_catalog(
        sites={"web": {"builder": "oci", "base_image": f"{host}/{base_repo}:1", "image": image, "tag": "v0.2.0"}}
    )

    code, out, err = cli_main("build", "web", "--test", "--json", "--root", str(root))
    assert code == 0, err
    row = json.loads(out)
    assert row["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert row["test"]["ok"]  # the host's (amd64) image, loaded and tested
    code, out, err = cli_main("push", "web", "--json", "--root", str(root))
    assert code == 0, err
    repo = image.split("/", 1)[1]
    with RegistryClient(host) as client:
        data, _, served = client.get_manifest(repo, "v0.2.0")
        index = json.loads(data)
        manifests = {
            m["platform"]["architecture"]: json.loads(client.get_manifest(repo, m["digest"])[0])
            for m in index["manifests"]
        }
        configs = {
            arch: json.loads(client.open_blob(repo, m["config"]["digest"]).read()) for arch, m in manifests.items()
        }
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert json.loads(out)["digest"] == served
    assert {a: (c["architecture"], c.get("variant", "")) for a, c in configs.items()} == {
        "amd64": ("amd64", ""),
        "arm64": ("arm64", "v8"),
    }
    # imgforge's config and content layers do not depend on the platform: the same blobs in both.
    assert manifests["amd64"]["layers"][-2:] == manifests["arm64"]["layers"][-2:]
    assert manifests["amd64"]["config"]["digest"] != manifests["arm64"]["config"]["digest"]

    code, out, err = cli_main("build", "web", "--platform", "linux/arm64", "--json", "--root", str(root))
    assert code == 0, err
    assert json.loads(out)["platforms"] == ["linux/arm64/v8"]

    code, _, err = cli_main("build", "web", "--platform", "linux/s390x", "--root", str(root))
    assert code == 4
    assert "linux/s390x" in err
