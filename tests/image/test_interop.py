"""Interop with layouts and archives written by an independent implementation (skopeo), and the
registry adapter driven by a minimal registry-shaped object that serves skopeo's layout.

The engine's view of the same image is the reference: test_engine.py proves it equals
``docker export``; here every other source must give the same tree and the same file bytes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import IO

import pytest

from imgforge.image import DockerArchive, DockerEngineSource, ImageInvalid, OciLayout, RegistrySource, read_fs, resolve

pytestmark = [pytest.mark.docker, pytest.mark.slow]
WANTED = [
    "/var/lib/dpkg/status",
    "/etc/nginx/nginx.conf",
    "/h6/suid",
    "/h6/hard",
    "/h6/opaque/new",
    "/srv/www/index.html",
    "/srv/www/alias.html",
]


def _tree(fs) -> list[tuple]:
    return [
        (
            e.path,
            e.type.value if e.type.value != "hardlink" else "file",
            e.mode,
            e.uid,
            e.gid,
            e.size,
            e.link_target if e.is_symlink else "",
            e.mtime,
        )
        for e in fs
    ]


def _hashes(fs) -> dict[str, str]:
    return {p: hashlib.sha256(data).hexdigest() for p, data in fs.read_files(WANTED).items()}


@pytest.fixture(scope="module")
def engine_view(h6_image):
    with DockerEngineSource(h6_image.tag) as source:
        fs = read_fs(resolve(source))
        return fs.image, _tree(fs), _hashes(fs)


def test_skopeo_oci_layout(skopeo_layout, engine_view):
    engine_image, tree, hashes = engine_view
    index = json.loads((skopeo_layout / "index.json").read_text())
    image = resolve(OciLayout.open_dir(skopeo_layout), "h6")
    assert image.digest == index["manifests"][0]["digest"]
    assert {layer.media_type for layer in image.manifest.layers} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    assert image.config.diff_ids == engine_image.config.diff_ids
    assert (image.config.user, image.config.cmd, image.config.env, image.config.labels) == (
        engine_image.config.user,
        engine_image.config.cmd,
        engine_image.config.env,
        engine_image.config.labels,
    )
    fs = read_fs(image)
    assert _tree(fs) == tree
    assert _hashes(fs) == hashes


def test_oci_archive_like_docker_25_save(skopeo_layout, engine_view, tmp_path):
    """An OCI layout inside a tar: what ``docker save`` writes from Docker 25 on."""
    archive = tmp_path / "image.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{skopeo_layout}:h6", f"oci-archive:{archive}:h6"], check=True)
    _, tree, hashes = engine_view
    with DockerArchive(archive) as source:
        assert source.is_oci_layout
        fs = read_fs(resolve(source))
        assert _tree(fs) == tree
        assert _hashes(fs) == hashes


def test_legacy_docker_save_file(docker_client, h6_image, engine_view, tmp_path):
    archive = tmp_path / "save.tar"
    with open(archive, "wb") as out:
        out.writelines(docker_client.api.get_image(h6_image.tag))
    _, tree, _ = engine_view
    with DockerArchive(archive, h6_image.tag) as source:  # saved by tag: picked by RepoTags
        assert not source.is_oci_layout
        assert _tree(read_fs(resolve(source))) == tree


class LayoutRegistry:
    """The two calls of a registry client, answered from an OCI layout as a registry would answer:
    Content-Type from the manifest's mediaType, Docker-Content-Digest from its bytes."""

    def __init__(self, root: Path, *, lie_about_digest: bool = False):
        self.root = root
        self.lie = lie_about_digest
        self.calls: list[tuple[str, str]] = []

    def get_manifest(self, name: str, reference: str, accept: list[str]) -> tuple[bytes, str, str]:
        self.calls.append(("manifest", reference))
        assert name == "h6/reader"
        assert "application/vnd.oci.image.index.v1+json" in accept
        if not reference.startswith("sha256:"):
            index = json.loads((self.root / "index.json").read_text())
            reference = next(
                m["digest"]
                for m in index["manifests"]
                if m["annotations"]["org.opencontainers.image.ref.name"] == reference
            )
        data = (self.root / "blobs" / "sha256" / reference.split(":")[1]).read_bytes()
        digest = "sha256:" + hashlib.sha256(data + (b"x" if self.lie else b"")).hexdigest()
        return data, json.loads(data)["mediaType"], digest

    def open_blob(self, name: str, digest: str) -> IO[bytes]:
        self.calls.append(("blob", digest))
        return open(self.root / "blobs" / "sha256" / digest.split(":")[1], "rb")


def test_registry_adapter(skopeo_layout, engine_view):
    registry = LayoutRegistry(skopeo_layout)
    source = RegistrySource(registry, "h6/reader", "h6")
    image = resolve(source)
    assert registry.calls[0] == ("manifest", "h6")
    assert image.digest == json.loads((skopeo_layout / "index.json").read_text())["manifests"][0]["digest"]
    _, tree, hashes = engine_view
    fs = read_fs(image)
    assert _tree(fs) == tree
    assert _hashes(fs) == hashes
    assert {d for kind, d in registry.calls if kind == "blob"} >= {layer.digest for layer in image.manifest.layers}


def test_registry_adapter_refuses_a_lying_digest(skopeo_layout):
    with pytest.raises(ImageInvalid, match=r"content digest is sha256:.*expected"):
        resolve(RegistrySource(LayoutRegistry(skopeo_layout, lie_about_digest=True), "h6/reader", "h6"))
