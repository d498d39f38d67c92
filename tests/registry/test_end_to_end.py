"""The whole way, with nothing replaced: build → test → release to a real registry → GitOps PR.

Each stage has its own tests; this one proves the hand-offs: the digest `release` pushes is the
digest whose `imgforge test` result `imgforge pr` puts in the merge request as evidence, and the
overlay it proposes still renders with kustomize.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from imgforge import config, gitops, release
from imgforge.cli import main
from imgforge.registry import RegistryClient

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.kustomize, pytest.mark.slow]

TESTS = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    """A helper module of another test folder (the GitOps fixture writer, the fake forge)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_release_then_pr_carries_the_tested_digest_into_the_gitops_repo(
        basic_registry, registry_env, unique_repo, make_catalog, nginx_base, docker_client, capsys, tmp_path,
        monkeypatch):
    registry_env(basic_registry)
    image = f"{basic_registry.host}/{unique_repo('e2e')}"
    root = make_catalog({"shop": {"image": image, "tag": "v0.0.1", "gitops": {"app": "shop-site"}}})
    catalog = config.load_catalog(root)

    released = release.release(catalog, "shop", "patch")
    assert (released.previous, released.tag) == ("v0.0.1", "v0.0.2")
    with RegistryClient(basic_registry.host) as registry:
        assert registry.manifest_digest(image.split("/", 1)[1], "v0.0.2") == released.digest
    catalog = config.load_catalog(root)
    assert catalog.site("shop").tag == "v0.0.2"

    gen = _load(TESTS / "gitops" / "gitops_repo_gen.py", "gitops_repo_gen_e2e")
    repo = tmp_path / "gitops"
    gen.write_app(repo, "shop-site", "patch", tag="v0.0.1")
    gen.write_common(repo, ["shop-site"])
    patch_file = repo / "fluxcd/apps/overlays/production/shop-site/deployment-patch.yaml"
    patch_file.write_text(patch_file.read_text().replace(gen.image_of("shop-site"), image))
    gen.git_commit(repo)
    assert gitops.current_tag(catalog, catalog.site("shop"), repo) == "v0.0.1"

    with pytest.raises(SystemExit) as done:
        main(["pr", "shop", "--repo", str(repo), "--forge", "gitlab", "--dry-run", "--json", "--root", str(root)])
    out = capsys.readouterr().out
    assert done.value.code == 0
    result = json.loads(out)
    evidence = result["evidence"]
    assert evidence["digest"] == released.digest and evidence["verified"] is True
    assert evidence["image_id"] == released.image_id
    body = json.dumps(result["payload"])
    assert released.digest in body and "**passed**" in body
    assert f"{image}:v0.0.2" in result["diff"] and "containerPort: 8080" in result["diff"]

    # The dry run changed nothing.
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""

    # `update` sees the real registry ahead of the GitOps repo and opens the merge request.
    forge_mod = _load(TESTS / "forge" / "conftest.py", "forge_fakes_e2e")
    bare = repo.parent / f"{repo.name}-remote.git"
    gitlab = forge_mod.FakeForge("gitlab", remote=bare).start()
    monkeypatch.setenv("GITLAB_TOKEN", forge_mod.TOKEN)
    try:
        with pytest.raises(SystemExit) as done:
            main(["update", "--all", "--repo", str(repo), "--forge", "gitlab", "--forge-url", gitlab.url,
                  "--project", "ops/gitops", "--json", "--root", str(root)])
        rows = {r["site"]: r for r in json.loads(capsys.readouterr().out)}
        assert done.value.code == 0
        assert (rows["shop"]["current"], rows["shop"]["latest"], rows["shop"]["status"]) == ("v0.0.1", "v0.0.2", "created")
        [mr] = gitlab.open_items()
        assert gitlab.branch(mr) == "imgforge/shop-v0.0.2" and gitlab.branch_pushed("imgforge/shop-v0.0.2")
        assert released.digest in gitlab.body(mr) and "**passed**" in gitlab.body(mr)
        assert forge_mod.TOKEN not in json.dumps(rows)
    finally:
        gitlab.stop()

    # Applying the same plan in the work tree yields an overlay kustomize still builds.
    gitops.apply(gitops.plan(catalog, catalog.site("shop"), repo))
    rendered = subprocess.run(["kubectl", "kustomize", str(repo / "fluxcd/apps/overlays/production/shop-site")],
                              capture_output=True, text=True, check=True).stdout
    assert f"image: {image}:v0.0.2" in rendered and "runAsUser: 100" in rendered
