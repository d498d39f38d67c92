"""`imgforge test` needs the image and an engine, nothing else: the image carries its own manifest.

Through the real CLI, in its own process: no catalog, no content folder (moved away after the
build), and an image without a usable manifest gets one error line with exit code 4.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import docker.errors
import pytest

from imgforge import build, config, verify
from imgforge.content_manifest import IMAGE_PATH, LABEL
from imgforge.errors import EXIT_NOT_FOUND
from imgforge.render import CONTENT_ROOT
from imgforge.verify import image_files
from imgforge.verify.runner import ORDER, OWNER_LABEL, RUN_LABEL
from tests.conftest import EXAMPLE_CONTENT, run_process

pytestmark = pytest.mark.docker


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_process(*args, cwd=cwd, env=env, timeout=300)


def _leftovers(client) -> list[dict]:
    return client.api.containers(
        all=True, filters={"label": [RUN_LABEL, f"{OWNER_LABEL}={os.environ['IMGFORGE_OWNER']}"]}
    )


@pytest.fixture
def built_example(make_catalog, nginx_base, docker_client, tmp_path):
    """The example site built through the CLI from a private copy of its content."""
    site_dir = tmp_path / "example-site"
    shutil.copytree(EXAMPLE_CONTENT.parent, site_dir)
    image = f"127.0.0.1:5000/imgforge-manifest-test/example-{uuid.uuid4().hex[:8]}"
    root = make_catalog({"example": {"image": image, "tag": "v1.0.0", "source": {"path": str(site_dir)}}})
    proc = _cli("build", "example", "--root", str(root), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    yield root, json.loads(proc.stdout), site_dir
    with contextlib.suppress(docker.errors.APIError):
        docker_client.images.remove(f"{image}:v1.0.0", force=True)


def test_the_image_alone_is_enough_with_the_content_moved_away(built_example, docker_client, tmp_path):
    root, row, site_dir = built_example
    labels = docker_client.images.get(row["id"]).labels
    assert labels[LABEL] == row["manifest_digest"]
    site_dir.rename(tmp_path / "moved-away")  # no content folder any more
    nowhere = tmp_path / "empty"
    nowhere.mkdir()
    # IMGFORGE_ROOT names a folder that does not exist: `--image` alone must not read a catalog at all.
    proc = _cli("test", "--image", row["image"], "--json", cwd=nowhere, env={"IMGFORGE_ROOT": str(tmp_path / "no")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert [c["name"] for c in report["checks"]] == list(ORDER)
    assert len(ORDER) == 16
    assert report["ok"] is True
    assert report["site"] == "example"
    assert report["image_id"] == row["id"]
    assert "exactly the 9 files of the manifest" in next(
        c["detail"] for c in report["checks"] if c["name"] == "content_manifest"
    )
    # `imgforge test SITE` takes only the image reference from the catalog: it passes without content too.
    proc = _cli("test", "example", "--root", str(root), cwd=nowhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all 16 checks passed" in proc.stdout
    # The catalog cannot even list the content now: building would fail, testing does not need it.
    assert _cli("build", "example", "--root", str(root), cwd=nowhere).returncode == EXIT_NOT_FOUND
    assert _leftovers(docker_client) == []


def test_an_image_without_a_manifest_is_one_error_line(nginx_base, docker_client, tmp_path):
    """Built by another tool (here: the local nginx base itself): exit 4, and how to fix it."""
    proc = _cli("test", "--image", nginx_base, cwd=tmp_path)
    assert proc.returncode == EXIT_NOT_FOUND, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"error: image {nginx_base} holds no imgforge content manifest at {IMAGE_PATH}")
    assert proc.stderr.count("\n") == 1
    assert "rebuild the image with `imgforge build SITE`" in proc.stderr
    assert proc.stdout == ""
    assert _leftovers(docker_client) == []  # the container it was read from is gone too


@pytest.mark.parametrize(
    ("name", "lines", "why"),
    [
        ("manifest-removed", [f"RUN rm {IMAGE_PATH}"], "says one was built in"),
        ("manifest-symlink", [f"RUN rm {IMAGE_PATH} && ln -s /etc/passwd {IMAGE_PATH}"], "is a symlink to"),
        ("manifest-garbage", [f"RUN echo '{{\"schema\": 1' > {IMAGE_PATH}"], "is not valid JSON"),
        ("manifest-too-new", [f'RUN sed -i \'s/"version":1/"version":9/\' {IMAGE_PATH}'], "version 9"),
    ],
)
def test_a_manifest_that_cannot_be_read_is_one_error_line(good, variant, docker_client, tmp_path, name, lines, why):
    image = variant(name, lines)
    proc = _cli("test", "--image", image, cwd=tmp_path)
    assert proc.returncode == EXIT_NOT_FOUND, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"error: image {image}")
    assert why in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert _leftovers(docker_client) == []


def test_build_result_carries_the_manifest_the_image_holds(good, docker_client):
    """What build returns is what the image holds: the label and the file, byte for byte."""
    image = docker_client.images.get(good.image_id)
    assert image.labels[LABEL] == good.manifest.digest
    container = docker_client.api.create_container(
        good.image_id, command=["/"], labels={OWNER_LABEL: os.environ["IMGFORGE_OWNER"]}, network_disabled=True
    )
    try:
        chunks, _ = docker_client.api.get_archive(container["Id"], IMAGE_PATH)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.next()
            assert (member.mode & 0o7777, member.uid, member.gid) == (0o644, 0, 0)  # root's, read-only to the user
            assert tar.extractfile(member).read() == good.manifest.to_bytes()
    finally:
        docker_client.api.remove_container(container["Id"], force=True)
    again = build.build_site(good.catalog, config.load_catalog(good.catalog.root).site("web"))
    assert again.skipped
    assert again.manifest == good.manifest
    assert again.manifest_digest == good.manifest.digest


def test_image_files_refuse_what_is_not_a_plain_file_or_folder(good, variant, docker_client):
    """The reader's own limits, on the good image and a variant with a hard link in the web root."""
    linked = variant("hard-link", [f"RUN ln {CONTENT_ROOT}/about.html {CONTENT_ROOT}/about-again.html"])
    for image in (good.image_id, linked):
        container = docker_client.api.create_container(
            image, command=["/"], labels={OWNER_LABEL: os.environ["IMGFORGE_OWNER"]}, network_disabled=True
        )
        try:
            if image == good.image_id:
                with pytest.raises(ValueError, match="more than the 10 allowed"):
                    image_files.read_file(docker_client, container["Id"], IMAGE_PATH, 10)
                with pytest.raises(ValueError, match="is a symlink to 'usr/bin', not a regular file"):
                    image_files.read_file(docker_client, container["Id"], "/bin", 10)
                assert image_files.read_file(docker_client, container["Id"], "/no/such", 10) is None
                absent = image_files.web_root(docker_client, container["Id"], "/no/such")
                assert absent == "/no/such is not in the image"
                assert image_files.web_root(docker_client, container["Id"], "/bin") == (
                    "/bin is a symlink to 'usr/bin', not a folder"
                )
            else:
                found = image_files.web_root(docker_client, container["Id"], CONTENT_ROOT)
                assert found["about-again.html"] == found["about.html"]  # a hard link: the same bytes
                assert found["about.html"].kind == "file"
        finally:
            docker_client.api.remove_container(container["Id"], force=True)
    report = verify.run_image(linked)
    assert "not in the manifest: '/about-again.html'" in next(c.detail for c in report.checks if not c.ok)
