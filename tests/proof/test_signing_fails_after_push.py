"""A signing failure after a successful push: the error says what was pushed and how to sign it
again, carries the registry's exit code, and release still writes its tag into the catalog (the
release is in the registry). The registry is a private one, stopped when signing starts."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import uuid

import pytest

from imgforge import config, release
from imgforge.errors import SigningFailed
from tests.conftest import EXAMPLE_CONTENT, NGINX_BASE, remove_test_image
from tests.proof.conftest import make_keys, registry_environ
from tests.registry.conftest import _start_registry, _stop
from tests.signing.conftest import PASSWORD

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.slow]


def test_release_writes_its_tag_and_says_how_to_sign_again(tmp_path, monkeypatch, docker_client):
    docker_client.images.get(NGINX_BASE)
    (tmp_path / "reg").mkdir()
    user, password = "bot", "pw-" + secrets.token_hex(8)
    hashed = subprocess.run(
        ["htpasswd", "-nbB", "-C", "5", user, password], check=True, capture_output=True, text=True
    ).stdout.strip()
    (tmp_path / "reg" / "htpasswd").write_text(hashed + "\n")
    auth = {"htpasswd": {"realm": "t", "path": str(tmp_path / "reg" / "htpasswd")}}
    reg = _start_registry(tmp_path / "reg", auth, user, password)
    repo = f"proof/r{uuid.uuid4().hex[:10]}"
    try:
        registry_environ(monkeypatch, reg, tmp_path)
        keys = make_keys(tmp_path / "keys")
        monkeypatch.setenv("IMGFORGE_SIGNING_KEY", str(keys.private))
        monkeypatch.setenv("IMGFORGE_SIGNING_PASSWORD", PASSWORD.decode())
        shutil.copytree(EXAMPLE_CONTENT.parent, tmp_path / "site")
        root = tmp_path / "catalog"
        (root / "sites").mkdir(parents=True)
        (root / "imgforge.toml").write_text("[defaults]\n", encoding="utf-8")
        (root / "sites" / "web.toml").write_text(
            f'image = "{reg.host}/{repo}"\ntag = "v0.0.1"\nprofile = "prebuilt"\nbase_image = "{NGINX_BASE}"\n'
            f'[source]\npath = "{tmp_path / "site"}"\n',
            encoding="utf-8",
        )
        catalog = config.load_catalog(root)

        def registry_goes_away_at_signing(event) -> None:
            if getattr(event, "kind", "") == "stage" and event.text.startswith("signing "):
                _stop(reg.proc)

        with pytest.raises(SigningFailed) as e:
            release.release(catalog, "web", "patch", on_event=registry_goes_away_at_signing)
        message = str(e.value)
        assert message.startswith(f"pushed {reg.host}/{repo}:v0.0.2@sha256:")
        assert ", but signing it failed: " in message
        assert message.endswith("; `imgforge sign web` signs it again")
        assert e.value.exit_code == 7  # the registry's
        assert config.load_catalog(root).site("web").tag == "v0.0.2"
    finally:
        _stop(reg.proc)
        for image in docker_client.images.list(name=f"{reg.host}/{repo}"):
            remove_test_image(docker_client, image.id, f"{reg.host}/{repo}")
