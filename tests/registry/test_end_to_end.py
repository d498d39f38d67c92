"""The whole way, with nothing replaced: build → test → release to a real registry → GitOps PR.

Each stage has its own tests; this one proves the hand-offs: the digest `release` pushes and signs
is the digest whose signed `imgforge test` attestation `imgforge pr` verifies and puts in the merge
request as evidence (read from the registry, so a fresh runner sees it too), and the overlay it
proposes still renders with kustomize.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
from pathlib import Path

import docker.errors
import pytest

from imgforge import config, gitops, release
from imgforge.cli import main
from imgforge.registry import RegistryClient
from tests.conftest import run_main

pytestmark = [pytest.mark.registry, pytest.mark.docker, pytest.mark.kustomize, pytest.mark.slow]

TESTS = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    """A helper module of another test folder (the GitOps fixture writer, the fake forge)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def signing(monkeypatch, tmp_path):
    """A key pair; the private half signs every push, the public half verifies `pr`/`update`."""
    from imgforge.signing import keys

    pair = keys.write_key_pair(tmp_path / "keys", "pw")
    monkeypatch.setenv("IMGFORGE_SIGNING_KEY", str(pair.private_path))
    monkeypatch.setenv("IMGFORGE_SIGNING_PASSWORD", "pw")
    monkeypatch.setenv("IMGFORGE_SIGNING_KEY_PUB", str(pair.public_path))
    return pair


@pytest.fixture
def our_refs(docker_client):
    """Image references a test made (tags, digest references); removed one by one afterwards.

    Never by image id: a build whose inputs match an existing image only tags that image, which
    may be someone else's.
    """
    refs: list[str] = []
    yield refs
    for ref in refs:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(ref)


def test_release_then_pr_carries_the_tested_digest_into_the_gitops_repo(
    basic_registry,
    registry_env,
    unique_repo,
    make_catalog,
    nginx_base,
    docker_client,
    capsys,
    tmp_path,
    monkeypatch,
    our_refs,
    signing,
    tmp_path_factory,
):
    registry_env(basic_registry)
    image = f"{basic_registry.host}/{unique_repo('e2e')}"
    root = make_catalog({"shop": {"image": image, "tag": "v0.0.1", "gitops": {"app": "shop-site"}}})
    catalog = config.load_catalog(root)

    our_refs.append(f"{image}:v0.0.2")
    released = release.release(catalog, "shop", "patch")
    our_refs.append(f"{image}@{released.digest}")
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
    assert evidence["digest"] == released.digest
    assert evidence["verified"] is True
    assert evidence["key_fingerprint"] == f"sha256:{signing.fingerprint}"
    assert evidence["report"]["passed"] is True
    body = json.dumps(result["payload"])
    assert released.digest in body
    assert "**passed**" in body
    assert f"{image}:v0.0.2" in result["diff"]
    assert "containerPort: 8080" in result["diff"]

    # The dry run changed nothing.
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True)
    assert status.stdout == ""

    # `update` sees the real registry ahead of the GitOps repo and opens the merge request, as CI
    # would on a fresh runner: no local image, no local test record, only the registry and the key.
    for ref in our_refs:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(ref)
    monkeypatch.setenv("IMGFORGE_STATE_DIR", str(tmp_path_factory.mktemp("fresh-runner-state")))
    forge_mod = _load(TESTS / "forge" / "conftest.py", "forge_fakes_e2e")
    bare = repo.parent / f"{repo.name}-remote.git"
    gitlab = forge_mod.FakeForge("gitlab", remote=bare).start()
    monkeypatch.setenv("GITLAB_TOKEN", forge_mod.TOKEN)
    try:
        with pytest.raises(SystemExit) as done:
            main(
                [
                    "update",
                    "--all",
                    "--repo",
                    str(repo),
                    "--forge",
                    "gitlab",
                    "--forge-url",
                    gitlab.url,
                    "--project",
                    "ops/gitops",
                    "--json",
                    "--root",
                    str(root),
                ]
            )
        rows = {r["site"]: r for r in json.loads(capsys.readouterr().out)}
        assert done.value.code == 0
        assert (rows["shop"]["current"], rows["shop"]["latest"], rows["shop"]["status"]) == (
            "v0.0.1",
            "v0.0.2",
            "created",
        )
        [mr] = gitlab.open_items()
        assert gitlab.branch(mr) == "imgforge/shop-v0.0.2"
        assert gitlab.branch_pushed("imgforge/shop-v0.0.2")
        assert released.digest in gitlab.body(mr)
        assert "**passed**" in gitlab.body(mr)
        assert f"- **Verified** with key `sha256:{signing.fingerprint}`" in gitlab.body(mr)
        assert forge_mod.TOKEN not in json.dumps(rows)
    finally:
        gitlab.stop()

    # Applying the same plan in the work tree yields an overlay kustomize still builds.
    gitops.apply(gitops.plan(catalog, catalog.site("shop"), repo))
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(repo / "fluxcd/apps/overlays/production/shop-site")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"image: {image}:v0.0.2" in rendered
    assert "runAsUser: 100" in rendered


def test_build_test_push_then_the_dry_run_says_verified_with_the_digest(
    basic_registry,
    registry_env,
    unique_repo,
    make_catalog,
    nginx_base,
    docker_client,
    capsys,
    tmp_path,
    our_refs,
    signing,
    monkeypatch,
):
    """Each step through the CLI, with nothing replaced: the dry run's evidence comes from the registry.

    The tag's digest is verified with the public key: its signature and its signed test report. A
    rebuilt, tested image under the same tag changes nothing (only the registry counts), neither
    does removing every local image; without a key the tag is not proposed, and with
    --allow-unverified the request says so at the top.
    """
    registry_env(basic_registry)
    image = f"{basic_registry.host}/{unique_repo('flow')}"
    sites = {"shop": {"image": image, "tag": "v0.1.0", "gitops": {"app": "shop-site"}}}
    root = str(make_catalog(sites))
    our_refs.append(f"{image}:v0.1.0")
    _image_id, checks = _build_and_test(capsys, root)
    code, out, err = run_main("push", "shop", "--root", root)
    assert code == 0, err
    assert f"signed with key sha256:{signing.fingerprint}; attached 3 attestations" in out
    with RegistryClient(basic_registry.host) as registry:
        digest = registry.manifest_digest(image.split("/", 1)[1], "v0.1.0")
    our_refs.append(f"{image}@{digest}")
    dry_run = ["pr", "shop", "--repo", str(_gitops_repo(tmp_path, image)), "--dry-run", "--root", root]

    body = _dry_run_body(capsys, dry_run)
    assert f"- Image digest: `{digest}`" in body
    assert f"- **Verified** with key `sha256:{signing.fingerprint}` (IMGFORGE_SIGNING_KEY_PUB)" in body
    assert f"(from its signed attestation): **passed** ({checks}/{checks} checks)" in body
    assert "Not verified" not in body

    sites["shop"]["uid"] = 10000  # rebuilt and tested under the same tag, never pushed
    _build_and_test(capsys, str(make_catalog(sites)))
    docker_client.images.remove(f"{image}:v0.1.0")
    docker_client.images.remove(f"{image}@{digest}")
    assert _evidence(_dry_run_body(capsys, dry_run)) == _evidence(body)  # the table shows the new uid

    monkeypatch.delenv("IMGFORGE_SIGNING_KEY_PUB")
    code, out, err = run_main(*dry_run)
    assert (code, out) == (10, "")
    assert err.startswith(f"error: {image}:v0.1.0@{digest} is not verified (no public key to verify with")
    body = _dry_run_body(capsys, [*dry_run, "--allow-unverified"])
    assert body.splitlines()[2].startswith("> **Unverified**: proposed with `--allow-unverified`. no public key")
    assert "**passed**" not in body


def _build_and_test(capsys, root: str) -> tuple[str, int]:
    """`imgforge build shop` then `imgforge test shop`: the image id and how many checks passed."""
    code, out, err = run_main("build", "shop", "--root", root, "--json")
    assert code == 0, err
    image_id = json.loads(out)["id"]
    code, out, err = run_main("test", "shop", "--root", root, "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["ok"] is True
    assert report["image_id"] == image_id
    return image_id, len(report["checks"])


def _gitops_repo(tmp_path: Path, image: str) -> Path:
    """A GitOps repo deploying the site at v0.0.9, so the dry run proposes the catalog's tag."""
    gen = _load(TESTS / "gitops" / "gitops_repo_gen.py", "gitops_repo_gen_flow")
    repo = tmp_path / "gitops"
    gen.write_app(repo, "shop-site", "patch", tag="v0.0.9")
    gen.write_common(repo, ["shop-site"])
    patch_file = repo / "fluxcd/apps/overlays/production/shop-site/deployment-patch.yaml"
    patch_file.write_text(patch_file.read_text().replace(gen.image_of("shop-site"), image))
    gen.git_commit(repo)
    return repo


def _evidence(body: str) -> str:
    return body[body.index("#### Evidence") : body.index("#### Files")]


def _dry_run_body(capsys, argv: list[str]) -> str:
    """The request description out of `pr --dry-run`'s human output (no forge named: forge-neutral)."""
    code, out, err = run_main(*argv)
    assert code == 0, err
    return json.loads(out[out.index("{", out.index("\nrequest body (forge unknown):")) :])["body"]
