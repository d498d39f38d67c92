"""The image reader over this client, against the real registry, on an image an independent tool
pushed: skopeo copies the local nginx base from the Docker engine into distribution 2.8, and the
file tree read back through ``RegistrySource`` must be the one the reader sees through the engine."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from imgforge.image import DockerEngineSource, RegistrySource, read_fs, resolve
from imgforge.registry import Credentials, RegistryClient

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.slow]
FILES = ["/etc/nginx/nginx.conf", "/var/lib/dpkg/status", "/usr/sbin/nginx", "/etc/passwd"]


def _tree(fs) -> list[tuple]:
    return [(e.path, e.type.value, e.mode, e.uid, e.gid, e.size, e.link_target, e.mtime) for e in fs]


def _view(source) -> tuple:
    image = resolve(source)
    fs = read_fs(image)
    hashes = {p: hashlib.sha256(data).hexdigest() for p, data in fs.read_files(FILES).items()}
    return image, _tree(fs), hashes


def test_skopeo_pushed_image_reads_back_as_the_engine_sees_it(basic_registry, nginx_base, unique_repo, tmp_path):
    repo, reg = unique_repo("skopeo"), basic_registry
    digest_file = tmp_path / "digest"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"{reg.user}:{reg.password}",
            "--digestfile",
            str(digest_file),
            f"docker-daemon:{nginx_base}",
            f"docker://{reg.host}/{repo}:bookworm",
        ],
        check=True,
        timeout=300,
    )
    with RegistryClient(reg.host, credentials=Credentials(reg.user, reg.password, "test")) as client:
        pushed, tree, hashes = _view(RegistrySource(client, repo, "bookworm"))
        assert pushed.digest == digest_file.read_text().strip() == client.manifest_digest(repo, "bookworm")
    with DockerEngineSource(nginx_base) as engine:
        local, engine_tree, engine_hashes = _view(engine)
    assert pushed.config_digest == local.config_digest  # skopeo kept the engine's config bytes
    assert pushed.config.diff_ids == local.config.diff_ids
    assert len(tree) > 1000
    assert tree == engine_tree
    assert hashes == engine_hashes
    assert set(hashes) == set(FILES)
