"""One real release, signed: the example site built, tested (`imgforge test`), pushed to the real
distribution 2.8 with IMGFORGE_SIGNING_KEY set, once per module. The tests read what landed in the
registry with requests and check it with the independent reference verifier (tests/signing)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.conftest import EXAMPLE_CONTENT, NGINX_BASE, remove_test_image
from tests.registry.conftest import basic_registry  # noqa: F401  # the real registry, as a fixture here
from tests.signing.conftest import PASSWORD, _load_reference


@pytest.fixture(scope="session")
def ref() -> ModuleType:
    """The reference verifier (tests/signing/reference.py): shares no code with imgforge."""
    return _load_reference()


def registry_environ(mp: pytest.MonkeyPatch, reg, tmp: Path, host: str | None = None) -> None:
    mp.setenv("DOCKER_CONFIG", str(tmp / "no-docker-config"))
    mp.setenv("IMGFORGE_REGISTRY_USER", reg.user)
    mp.setenv("IMGFORGE_REGISTRY_PASSWORD", reg.password)
    mp.setenv("IMGFORGE_REGISTRY_HOST", host or reg.host)


def make_keys(folder: Path) -> SimpleNamespace:
    from imgforge.signing import keys

    pair = keys.write_key_pair(folder, PASSWORD)
    return SimpleNamespace(
        private=pair.private_path, public=pair.public_path, fingerprint=pair.fingerprint, password=PASSWORD
    )


@pytest.fixture(scope="module")
def released(basic_registry, docker_client, tmp_path_factory):  # noqa: F811  # the imported fixture
    """``release --patch`` of the example site with a signing key: (catalog, keys, result, ...)."""
    import uuid

    from imgforge import config, release

    docker_client.images.get(NGINX_BASE)
    tmp = tmp_path_factory.mktemp("proof")
    repo = f"proof/r{uuid.uuid4().hex[:10]}"
    with pytest.MonkeyPatch.context() as mp:
        registry_environ(mp, basic_registry, tmp)
        mp.setenv("IMGFORGE_STATE_DIR", str(tmp / "state"))
        keys = make_keys(tmp / "keys")
        mp.setenv("IMGFORGE_SIGNING_KEY", str(keys.private))
        mp.setenv("IMGFORGE_SIGNING_PASSWORD", PASSWORD.decode())
        shutil.copytree(EXAMPLE_CONTENT.parent, tmp / "site")
        root = tmp / "catalog"
        (root / "sites").mkdir(parents=True)
        (root / "imgforge.toml").write_text("[defaults]\n", encoding="utf-8")
        (root / "sites" / "web.toml").write_text(
            f'image = "{basic_registry.host}/{repo}"\ntag = "v0.0.1"\nprofile = "prebuilt"\n'
            f'base_image = "{NGINX_BASE}"\n[source]\npath = "{tmp / "site"}"\n',
            encoding="utf-8",
        )
        catalog = config.load_catalog(root)
        events: list = []
        result = release.release(catalog, "web", "patch", on_event=events.append)
        yield SimpleNamespace(
            catalog=catalog,
            keys=keys,
            result=result,
            repo=repo,
            registry=basic_registry,
            events=events,
            content=tmp / "site" / "www-data",
            reference=f"{basic_registry.host}/{repo}:{result.tag}",
            tmp=tmp,
        )
    for image in docker_client.images.list(name=f"{basic_registry.host}/{repo}"):
        remove_test_image(docker_client, image.id, f"{basic_registry.host}/{repo}")
