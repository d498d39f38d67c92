"""release: build → test → bump → push for real; any failure leaves nothing pushed, catalog as it was."""

from __future__ import annotations

import io
import shutil

import pytest

from imgforge import config, release
from imgforge.errors import RegistryUnavailable, VerifyFailed
from imgforge.registry import RegistryClient
from tests.conftest import EXAMPLE_CONTENT, remove_test_image
from tests.registry.conftest import free_port

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def web(basic_registry, make_catalog, registry_env, seed, unique_repo, tmp_path, nginx_base, docker_client):
    """A buildable site on the basic-auth registry, its content a private copy the test may change."""
    registry_env(basic_registry)
    repo = unique_repo("release")
    seed(basic_registry, repo, ["v0.0.1"])
    site_dir = tmp_path / "site"
    shutil.copytree(EXAMPLE_CONTENT.parent, site_dir)
    root = make_catalog(
        sites={"web": {"image": f"{basic_registry.host}/{repo}", "tag": "v0.0.1", "source": {"path": str(site_dir)}}}
    )
    catalog = config.load_catalog(root)
    yield catalog, repo, site_dir / "www-data"
    for image in docker_client.images.list(name=f"{basic_registry.host}/{repo}"):
        remove_test_image(docker_client, image.id, f"{basic_registry.host}/{repo}")


def _tags(reg, repo: str) -> list[str]:
    with RegistryClient(reg.host) as c:
        return sorted(c.list_tags(repo))


def test_release_stops_at_a_failing_test_with_nothing_pushed(web, basic_registry, docker_client):
    catalog, repo, _ = web
    site_file = catalog.root / "sites/web.toml"
    before = site_file.read_bytes()

    def break_the_image_before_its_test(event) -> None:
        # The tag under test now names an image without one of its served files: `imgforge test` fails.
        if getattr(event, "kind", "") == "stage" and event.text.startswith("testing "):
            ref = event.text.removeprefix("testing ")
            dockerfile = f"FROM {ref}\nUSER 0:0\nRUN rm /usr/share/nginx/html/about.html\nUSER 100:101\n"
            docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, rm=True)

    with pytest.raises(VerifyFailed) as e:
        release.release(catalog, "web", "patch", on_event=break_the_image_before_its_test)
    assert str(e.value).startswith(
        f"release of 'web' stopped: {basic_registry.host}/{repo}:v0.0.2 failed `imgforge test` ("
    )
    assert str(e.value).endswith("; nothing pushed, catalog unchanged")
    assert e.value.exit_code == 1
    assert _tags(basic_registry, repo) == ["v0.0.1"]
    assert site_file.read_bytes() == before


def test_release_pushes_then_writes_the_tag(web, basic_registry):
    catalog, repo, _ = web
    stages = []
    result = release.release(
        catalog, "web", "patch", on_event=lambda e: stages.append(e.text) if getattr(e, "kind", "") == "stage" else None
    )
    ref = f"{basic_registry.host}/{repo}:v0.0.2"
    assert (result.previous, result.tag, result.reference) == ("v0.0.1", "v0.0.2", ref)
    assert _tags(basic_registry, repo) == ["v0.0.1", "v0.0.2"]
    with RegistryClient(basic_registry.host) as c:
        assert c.manifest_digest(repo, "v0.0.2") == result.digest
    assert config.load_catalog(catalog.root).site("web").tag == "v0.0.2"
    assert stages[:3] == [f"building {ref}", f"testing {ref}", f"pushing {ref}"]


def test_unreachable_registry_fails_before_building(make_catalog, registry_env, basic_registry):
    registry_env(basic_registry)
    host = f"127.0.0.1:{free_port()}"
    catalog = config.load_catalog(make_catalog(sites={"web": {"image": f"{host}/a/b", "tag": "v0.0.1"}}))
    events = []
    with pytest.raises(RegistryUnavailable, match=f"registry {host} \\(repository a/b\\) unreachable"):
        release.release(catalog, "web", "patch", on_event=events.append)
    assert events == []
