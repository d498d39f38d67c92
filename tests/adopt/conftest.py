"""Root site images the way they exist in the wild, built by the real engine and pushed to the test
registry: content from an image (``[source] image``) and ``imgforge adopt`` start from these."""

from __future__ import annotations

import io
import tarfile
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.conftest import remove_test_image
from tests.registry.conftest import basic_registry, registry_env  # noqa: F401 (fixtures)

OWNER = {"io.imgforge.owner": "w15-tests"}
RUN = uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class RootImage:
    """A root site image: a Dockerfile (``{base}`` is the local nginx base) and its context files."""

    name: str
    dockerfile: str
    files: dict[str, str | bytes]


@dataclass(frozen=True)
class Pushed:
    reference: str  # repo:tag as pushed
    digest: str  # the registry's manifest digest
    image_id: str

    @property
    def pinned(self) -> str:
        return self.reference.rsplit(":", 1)[0] + "@" + self.digest


def context_tar(spec: RootImage, base: str) -> io.BytesIO:
    dockerfile = textwrap.dedent(spec.dockerfile).lstrip("\n").replace("{base}", base)
    dockerfile += f"LABEL io.imgforge.w15-run={RUN}\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in {"Dockerfile": dockerfile, **spec.files}.items():
            data = content if isinstance(content, bytes) else textwrap.dedent(content).lstrip("\n").encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.fixture(scope="module")
def root_images(docker_client, nginx_base, request) -> Callable[..., Pushed]:
    """``root_images(spec, push=True, tag=RUN)`` builds ``spec`` once per module FROM the local Debian nginx
    base, tags it ``<registry>/w15/<name>:<tag>`` and pushes it (unless ``push=False``: then only the
    engine holds it). Every image is removed by id at the end."""
    registry = request.getfixturevalue("basic_registry")
    auth = {"username": registry.user, "password": registry.password}
    made: dict[tuple[str, bool, str], Pushed] = {}

    def make(spec: RootImage, push: bool = True, tag: str = RUN) -> Pushed:
        key = (spec.name, push, tag)
        if key in made:
            return made[key]
        repo = f"{registry.host}/w15/{spec.name}" + ("" if push else "-local-only")
        for chunk in docker_client.api.build(
            fileobj=context_tar(spec, nginx_base),
            custom_context=True,
            tag=f"{repo}:{tag}",
            labels=OWNER,
            rm=True,
            forcerm=True,
            decode=True,
        ):
            assert "error" not in chunk, f"{spec.name} did not build: {chunk}"
        image_id = docker_client.images.get(f"{repo}:{tag}").id
        digest = ""
        if push:
            for event in docker_client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth):
                assert "error" not in event, event
                digest = event.get("aux", {}).get("Digest", digest)
            assert digest.startswith("sha256:")
        made[key] = Pushed(f"{repo}:{tag}", digest, image_id)
        return made[key]

    yield make

    for pushed in made.values():
        remove_test_image(docker_client, pushed.image_id, pushed.reference.rsplit(":", 1)[0])
