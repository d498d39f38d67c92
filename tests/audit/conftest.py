"""Fixtures of the audit tests; the fixture repos' files live in ``audit_fixture_repos.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import remove_test_image
from tests.registry.conftest import basic_registry, registry_env, token_registry  # noqa: F401 (fixtures)

# --import-mode=importlib does not put test folders on sys.path; the data module is imported by name.
sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def site_repo(tmp_path, build_file_tree):
    """``site_repo(FIXED, {"Dockerfile": None, ...})``: a fixture repo with files changed or removed."""
    counter = iter(range(1000))

    def make(base: dict, changes: dict | None = None) -> Path:
        files = {**base, **(changes or {})}
        root = tmp_path / f"repo{next(counter)}"
        root.mkdir()
        return build_file_tree(root, {k: v for k, v in files.items() if v is not None})

    return make


# --------------------------------------------------------------------------- images with known faults


@pytest.fixture(scope="session")
def fault_images(docker_client, nginx_base):
    """``fault_images(spec)`` builds an image of ``audit_images`` once per session -> its id; every
    image (and any tag added to it, e.g. for a push) is removed by id at the end."""
    from audit_images import OWNER, RUN, context_tar

    built: dict[str, str] = {}

    def build(spec, base: str | None = None) -> str:
        if spec.name not in built:
            tag = f"imgforge-p3-tests/{spec.name}:{RUN}"
            stream = docker_client.api.build(
                fileobj=context_tar(spec, base or nginx_base),
                custom_context=True,
                tag=tag,
                labels=OWNER,
                rm=True,
                forcerm=True,
                decode=True,
            )
            for chunk in stream:
                assert "error" not in chunk, f"{spec.name} did not build: {chunk}"
            built[spec.name] = docker_client.images.get(tag).id
        return built[spec.name]

    yield build
    for image_id in reversed(built.values()):  # children (FROM an earlier one) first
        remove_test_image(docker_client, image_id, *_run_repositories(docker_client, image_id, RUN))


def _run_repositories(client, image_id: str, run: str) -> list[str]:
    """The repositories this session tagged the image into (every tag it makes carries ``run``)."""
    import docker.errors

    try:
        tags = client.images.get(image_id).tags
    except docker.errors.ImageNotFound:
        return []
    return sorted({t.rsplit(":", 1)[0] for t in tags if run in t.rsplit(":", 1)[1]})


@pytest.fixture(scope="session")
def example_image(docker_client, nginx_base, tmp_path_factory):
    """The catalog's ``example`` site built by imgforge itself (its own image name and tag, so the
    image is this session's alone), removed by id afterwards."""
    import shutil

    from audit_images import RUN

    from imgforge import build, config

    root = tmp_path_factory.mktemp("example-catalog")
    (root / "sites").mkdir()
    shutil.copy(REPO / "imgforge.toml", root)
    text = (REPO / "sites" / "example.toml").read_text(encoding="utf-8")
    text = text.replace('image = "127.0.0.1:5000/imgforge/example"', 'image = "imgforge-p3-tests/example"')
    text = text.replace('tag = "v0.1.0"', f'tag = "v0.1.0-p3{RUN}"')
    text = text.replace('path = "examples/example-site"', f'path = "{REPO / "examples" / "example-site"}"')
    (root / "sites" / "example.toml").write_text(text, encoding="utf-8")
    catalog = config.load_catalog(root)
    site = catalog.site("example")
    assert site.base_image == nginx_base
    result = build.build_site(catalog, site, force=True)
    yield site.reference
    remove_test_image(docker_client, result.id, site.image)
