"""``pr --pin-digest`` (and ``pin_digest = true`` in imgforge.toml): the request deploys the verified
digest of the signed release, ``tag@sha256:…``, and kustomize renders exactly that."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_main

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.kustomize, pytest.mark.slow]
GEN = Path(__file__).resolve().parents[1] / "gitops" / "gitops_repo_gen.py"


def _gitops_repo(tmp_path: Path, image: str) -> Path:
    spec = importlib.util.spec_from_file_location("gitops_repo_gen_pin", GEN)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    repo = tmp_path / "gitops"
    gen.write_app(repo, "web-site", "patch", tag="v0.0.1")
    gen.write_common(repo, ["web-site"])
    patch_file = repo / "fluxcd/apps/overlays/production/web-site/deployment-patch.yaml"
    patch_file.write_text(patch_file.read_text().replace(gen.image_of("web-site"), image))
    gen.git_commit(repo)
    return repo


@pytest.fixture
def env(released, monkeypatch):
    from tests.proof.conftest import registry_environ

    registry_environ(monkeypatch, released.registry, released.tmp)
    monkeypatch.setenv("IMGFORGE_SIGNING_KEY_PUB", str(released.keys.public))


def test_pr_pins_the_verified_digest(released, env, tmp_path):
    image = f"{released.registry.host}/{released.repo}"
    repo = _gitops_repo(tmp_path, image)
    root = str(released.catalog.root)
    code, out, err = run_main("pr", "web", "--repo", str(repo), "--dry-run", "--json", "--pin-digest", "--root", root)
    assert code == 0, err
    result = json.loads(out)
    pinned = f"{image}:{released.result.tag}@{released.result.digest}"
    assert f"image: {pinned}\n" in result["diff"]
    assert result["evidence"]["digest"] == released.result.digest
    assert result["evidence"]["verified"] is True

    # the catalog default does the same; --no-pin-digest turns it off
    catalog = tmp_path / "catalog"
    shutil.copytree(root, catalog)
    (catalog / "imgforge.toml").write_text("pin_digest = true\n[defaults]\n", encoding="utf-8")
    code, out, _ = run_main("pr", "web", "--repo", str(repo), "--dry-run", "--json", "--root", str(catalog))
    assert code == 0
    assert f"image: {pinned}\n" in json.loads(out)["diff"]
    args = ("pr", "web", "--repo", str(repo), "--dry-run", "--json", "--no-pin-digest", "--root", str(catalog))
    code, out, _ = run_main(*args)
    assert code == 0
    assert released.result.digest not in json.loads(out)["diff"]


def test_gitops_apply_pins_and_kustomize_renders_it(released, env, tmp_path):
    image = f"{released.registry.host}/{released.repo}"
    repo = _gitops_repo(tmp_path, image)
    root = str(released.catalog.root)
    code, out, err = run_main("gitops", "apply", "web", "--repo", str(repo), "--pin-digest", "--root", root)
    assert code == 0, err
    assert f"v0.0.1 → {released.result.tag}@{released.result.digest}" in out
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(repo / "fluxcd/apps/overlays/production/web-site")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"image: {image}:{released.result.tag}@{released.result.digest}" in rendered


def test_update_dry_run_looks_up_and_verifies_touching_no_remote_and_no_forge(released, env, tmp_path):
    image = f"{released.registry.host}/{released.repo}"
    repo = _gitops_repo(tmp_path, image)
    subprocess.run(["git", "remote", "set-url", "origin", str(tmp_path / "no-such-remote")], cwd=repo, check=True)
    (repo / "README.local").write_text("a dirty work tree is fine for a lookup\n", encoding="utf-8")
    root = str(released.catalog.root)
    code, out, err = run_main("update", "web", "--repo", str(repo), "--dry-run", "--json", "--root", root)
    assert code == 0, err
    [row] = json.loads(out)
    assert (row["current"], row["latest"], row["target"], row["status"]) == (
        "v0.0.1",
        released.result.tag,
        released.result.tag,
        "would propose",
    )
    assert row["verification"]["digest"] == released.result.digest
    assert row["verification"]["verified"] is True
    assert row["verification"]["key_fingerprint"] == f"sha256:{released.keys.fingerprint}"
    code, out, _ = run_main("update", "web", "--repo", str(repo), "--dry-run", "--root", root)
    assert code == 0
    assert "would propose" in out
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True)
    assert status.stdout == ("?? README.local\n")


def test_update_dry_run_without_a_key_says_unverified(released, env, tmp_path, monkeypatch):
    monkeypatch.delenv("IMGFORGE_SIGNING_KEY_PUB")
    repo = _gitops_repo(tmp_path, f"{released.registry.host}/{released.repo}")
    args = ("update", "--all", "--repo", str(repo), "--dry-run", "--json", "--root", str(released.catalog.root))
    code, out, _ = run_main(*args)
    [row] = json.loads(out)
    assert code == 0
    assert row["status"] == "unverified"
    assert row["detail"].startswith("no public key to verify with")


def test_gitops_apply_pins_only_what_verifies_with_the_configured_key(released, env, tmp_path, monkeypatch):
    """With a public key configured, ``gitops apply --pin-digest`` verifies before it pins, as ``pr``
    does: a key that did not sign the release refuses (exit 10) and nothing is written."""
    from tests.proof.conftest import make_keys

    image = f"{released.registry.host}/{released.repo}"
    repo = _gitops_repo(tmp_path, image)
    before = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain"], check=True, capture_output=True, text=True
    ).stdout
    other = make_keys(tmp_path / "other")
    monkeypatch.setenv("IMGFORGE_SIGNING_KEY_PUB", str(other.public))
    args = ("gitops", "apply", "web", "--repo", str(repo), "--pin-digest", "--root", str(released.catalog.root))
    code, out, err = run_main(*args)
    assert code == 10, (out, err)
    assert f"{image}:{released.result.tag}@{released.result.digest} is not verified with" in err
    assert "not pinning it" in err
    after = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain"], check=True, capture_output=True, text=True
    ).stdout
    assert after == before == ""
