"""The tests' own clean-up takes away what a test made and nothing more: an image that someone else
also names (same content, same ID, as reproducible oci builds are) keeps that name and stays."""

from __future__ import annotations

import io
import tarfile
import uuid

import docker.errors
import pytest

from tests.conftest import remove_test_image

pytestmark = pytest.mark.docker


def _build(client, tag: str) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in ((b"Dockerfile", b"FROM scratch\nCOPY hello /hello\n"), (b"hello", uuid.uuid4().bytes)):
            info = tarfile.TarInfo(name.decode())
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    image, _ = client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
    return str(image.id)


def test_only_the_tests_own_names_go_and_the_image_goes_with_the_last(docker_client):
    run = uuid.uuid4().hex[:10]
    ours, theirs = f"imgforge-polite-test/ours-{run}", f"imgforge-polite-test/theirs-{run}"
    image_id = _build(docker_client, f"{ours}:v1")
    docker_client.api.tag(image_id, theirs, "v1")
    docker_client.api.tag(image_id, ours, "v2")
    try:
        remove_test_image(docker_client, image_id, ours)
        assert docker_client.images.get(image_id).tags == [f"{theirs}:v1"]
    finally:
        remove_test_image(docker_client, image_id, theirs)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image_id)
