"""``fleet --registry --key``: a Trust column saying per image whether it is signed by the key and
carries imgforge's attestations; a signed release and an unsigned tag side by side, for real."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import run_main
from tests.registry.conftest import seed_tags

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.kustomize, pytest.mark.slow]
GEN = Path(__file__).resolve().parents[1] / "gitops" / "gitops_repo_gen.py"


@pytest.fixture
def fleet_repo(released, tmp_path, monkeypatch):
    from tests.proof.conftest import registry_environ

    registry_environ(monkeypatch, released.registry, released.tmp)
    monkeypatch.delenv("IMGFORGE_SIGNING_KEY_PUB", raising=False)
    seed_tags(released.registry, released.repo, ["v0.0.7"])  # same repository, never signed
    spec = importlib.util.spec_from_file_location("gitops_repo_gen_fleet", GEN)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    repo = tmp_path / "gitops"
    image = f"{released.registry.host}/{released.repo}"
    for app, tag in (("signed-site", released.result.tag), ("unsigned-site", "v0.0.7")):
        gen.write_app(repo, app, "patch", tag=tag)
        patch = repo / f"fluxcd/apps/overlays/production/{app}/deployment-patch.yaml"
        patch.write_text(patch.read_text().replace(gen.image_of(app), image))
    gen.write_common(repo, ["signed-site", "unsigned-site"])
    return repo


def test_fleet_trust_column(released, fleet_repo):
    key = str(released.keys.public)
    code, out, err = run_main("fleet", "--repo", str(fleet_repo), "--registry", "--key", key, "--format", "json")
    assert code == 0, err
    trust = {row["app"]: row["trust"] for row in json.loads(out)["containers"]}
    assert trust == {"signed-site": "signed, attested", "unsigned-site": "not signed by the key"}
    code, out, _ = run_main("fleet", "--repo", str(fleet_repo), "--registry", "--key", key)
    header = next(line for line in out.splitlines() if line.startswith("| App"))
    assert "| Image audit | Trust | Class |" in header
    assert "| signed, attested |" in out


def test_without_a_key_there_is_no_trust_column(fleet_repo):
    code, out, _ = run_main("fleet", "--repo", str(fleet_repo), "--registry")
    header = next(line for line in out.splitlines() if line.startswith("| App"))
    assert code == 0
    assert "Trust" not in header
