"""`imgforge pr` end to end: real git (a bare remote on disk), real kustomize, a fake forge.

Every failure test checks the same promise with ``snap``: HEAD, index, work tree, local branches
and every ref of the remote are exactly as they were before the command.
"""

from __future__ import annotations

import subprocess

import pytest

from imgforge import evidence, update
from imgforge.config import load_catalog
from imgforge.errors import DirtyWorkTree, ForeignCommits, ForgeError, GitopsError, Unverified
from imgforge.forge.gitea import Gitea
from imgforge.forge.github import GitHub
from imgforge.forge.gitlab import GitLab

TOKEN = "glpat-s3cr3t-TOKEN-value-42"  # conftest.TOKEN
CLASSES = {"gitlab": GitLab, "github": GitHub, "gitea": Gitea}
IMAGE = "127.0.0.1:9/prplanit/web.example"  # port 9: nothing answers, evidence says "not verified"
OVERLAY = "fluxcd/apps/overlays/production/web-site"


@pytest.fixture
def setup(gitops_repo, make_catalog, fake_forge):
    def make(kind: str = "gitlab", image: str = IMAGE, tag: str = "v0.0.3", **site):
        work, bare = gitops_repo(image)
        catalog = load_catalog(make_catalog(sites={"web": {"image": image, "tag": tag, **site}}))
        fake = fake_forge(kind, remote=bare)
        forge = CLASSES[kind](fake.url, "ops/gitops", TOKEN, timeout=5)
        return catalog, work, bare, fake, forge

    return make


def _show(git_in, bare, rev: str, path: str) -> str:
    return git_in(bare, "show", f"{rev}:{path}")


def test_pr_is_created_with_commit_table_and_evidence(kind, setup, git_in, snap):
    """The request as the forge gets it, for evidence handed in through the public ``evidence=``.

    How that evidence is gathered for real (registry digest → signature and attestations verified
    with the key) is tests/proof/test_update_evidence.py's job.
    """
    image = IMAGE
    digest, fingerprint = "sha256:" + "ab" * 32, "cd" * 32
    report = {
        "passed": True,
        "checks": [
            {"name": "runs-as-uid", "ok": True, "detail": "uid 100"},
            {"name": "http-200", "ok": True, "detail": "GET / -> 200"},
        ],
    }

    facts = [{"name": n, "ok": True, "detail": "verified"} for n in ("signature", "tests", "tests passed")]

    def given_evidence(site, tag, deployed):
        assert deployed == "v0.0.2"
        return evidence.Evidence(
            f"{site.image}:{tag}",
            digest=digest,
            key_fingerprint=fingerprint,
            key_source="--key cosign.pub",
            facts=facts,
            report=report,
            deployed=f"{site.image}:v0.0.2@sha256:{'ef' * 32}",
            sbom_diff={
                "packages_added": [],
                "packages_removed": [],
                "packages_changed": [
                    {
                        "purl_type": "deb",
                        "name": "libc6",
                        "arch": "amd64",
                        "old": "2.36-9",
                        "new": "2.36-9+deb12u1",
                        "direction": "upgrade",
                    }
                ],
                "files_added": ["usr/share/nginx/html/new.html"],
                "files_removed": [],
                "files_changed": [],
            },
        )

    catalog, work, bare, fake, forge = setup(kind, image=image)
    before = snap(work, bare)

    result = update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, evidence=given_evidence)

    assert result.action == "created"
    assert result.pushed
    assert result.branch == "imgforge/web-v0.0.3"
    branch = "refs/heads/imgforge/web-v0.0.3"
    assert git_in(bare, "rev-parse", branch) == result.commit
    assert git_in(bare, "rev-parse", f"{branch}~1") == git_in(bare, "rev-parse", "refs/heads/main")
    message = git_in(bare, "log", "-1", "--format=%B", branch)
    assert message.splitlines()[0] == f"chore(image): update {image} to v0.0.3"
    assert "[skip ci]" in message
    assert message.rstrip().endswith("Generated-By: imgforge")
    assert git_in(bare, "log", "-1", "--format=%(trailers:key=Generated-By,valueonly)", branch).strip() == "imgforge"
    assert git_in(bare, "log", "-1", "--format=%an <%ae>", branch) == "Dev Eloper <dev@example.com>"
    patch = _show(git_in, bare, branch, f"{OVERLAY}/deployment-patch.yaml")
    assert f"image: {image}:v0.0.3  # pinned by hand" in patch
    assert "runAsUser: 100" in patch
    assert "containerPort: 8080" in _show(git_in, bare, branch, "fluxcd/apps/base/web-site/deployment.yaml")
    assert sorted(git_in(bare, "diff", "--name-only", f"{branch}~1", branch).split()) == [
        "fluxcd/apps/base/web-site/deployment.yaml",
        f"{OVERLAY}/deployment-patch.yaml",
    ]

    rendered = _render_branch(bare, branch, work.parent / "check")
    assert f"image: {image}:v0.0.3" in rendered
    assert rendered.count("containerPort:") == 1
    assert "containerPort: 8080" in rendered
    assert "runAsNonRoot: true" in rendered

    assert len(fake.items) == 1
    item = fake.items[1]
    body = fake.body(item)
    assert fake.branch(item) == "imgforge/web-v0.0.3"
    assert item["title"] == message.splitlines()[0]
    assert f"| web (`web-site`) | `{image}` | `v0.0.2` → `v0.0.3` |" in body
    assert "80 → 8080" in body
    assert "`pod runAsNonRoot: true`" in body
    assert f"Image digest: `{digest}`" in body
    assert f"- **Verified** with key `sha256:{fingerprint}` (--key cosign.pub)" in body
    assert "- ok tests passed: verified" in body
    assert "(from its signed attestation): **passed** (2/2 checks)" in body
    assert f"SBOM changes against the deployed `{image}:v0.0.2@sha256:{'ef' * 32}`:" in body
    assert "- package upgrade: `libc6` 2.36-9 → 2.36-9+deb12u1" in body
    assert "- file added: `usr/share/nginx/html/new.html`" in body
    assert "Unverified" not in body
    assert "| http-200 | ok | GET / -> 200 |" in body
    assert "Not verified" not in body
    assert "<!-- imgforge:site=web -->" in body
    assert "```diff" in body
    after = snap(work, bare)
    assert {k: v for k, v in after.items() if k != "remote"} == {k: v for k, v in before.items() if k != "remote"}


def _render_branch(bare, branch: str, dest) -> str:
    subprocess.run(
        ["git", "clone", "-q", "--branch", branch.removeprefix("refs/heads/"), str(bare), str(dest)], check=True
    )
    return subprocess.run(
        ["kubectl", "kustomize", str(dest / OVERLAY)], check=True, capture_output=True, text=True
    ).stdout


def test_unverified_image_is_said_clearly(setup):
    catalog, work, _bare, fake, forge = setup("gitea")
    update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    body = fake.body(fake.items[1])
    assert body.splitlines()[2].startswith("> **Unverified**: proposed with `--allow-unverified`. ")
    assert "**Not verified**" in body
    assert "registry: " in body  # nothing answers at the catalog's registry
    assert "Image digest: unknown" in body


def test_unverified_image_is_not_proposed_without_the_flag(setup, snap):
    catalog, work, bare, fake, forge = setup("gitea")
    before = snap(work, bare)
    with pytest.raises(Unverified) as e:
        update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge)
    assert e.value.exit_code == 10
    assert "is not verified (registry: " in str(e.value)
    assert fake.items == {}
    assert snap(work, bare) == before


def test_second_run_refreshes_instead_of_duplicating(kind, setup, git_in, make_catalog):
    catalog, work, bare, fake, forge = setup(kind)
    first = update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    posts = [c for c in fake.calls if c[0] == "POST"]

    again = update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    assert again.action == "unchanged"
    assert not again.pushed
    assert again.commit == first.commit
    assert len(fake.items) == 1
    assert [c for c in fake.calls if c[0] == "POST"] == posts

    # the catalog changes (another UID): the same branch is rebuilt, force-pushed, the request updated
    catalog = load_catalog(make_catalog(sites={"web": {"image": IMAGE, "tag": "v0.0.3", "uid": 10000}}))
    third = update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    assert third.action == "updated"
    assert third.pushed
    assert third.request.number == 1
    assert git_in(bare, "rev-parse", "refs/heads/imgforge/web-v0.0.3") == third.commit != first.commit
    assert "runAsUser: 10000" in _show(git_in, bare, third.commit, f"{OVERLAY}/deployment-patch.yaml")
    assert len(fake.items) == 1
    assert "runAsUser: 10000" in fake.body(fake.items[1])


def test_new_tag_supersedes_the_sites_older_request(setup, make_catalog):
    catalog, work, _bare, fake, forge = setup("github")
    fake.seed("feature/unrelated", body="not ours")
    old = update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    newer = update.open_or_update_pr(
        catalog, catalog.site("web"), work, forge=forge, tag="v0.0.4", allow_unverified=True
    )
    assert newer.action == "created"
    assert newer.branch == "imgforge/web-v0.0.4"
    assert [r.number for r in newer.superseded] == [old.request.number]
    assert [fake.branch(i) for i in fake.open_items()] == ["feature/unrelated", "imgforge/web-v0.0.4"]


def test_branch_with_foreign_commits_stops(setup, git_in, snap, tmp_path):
    catalog, work, bare, fake, forge = setup("gitlab")
    update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    human = tmp_path / "human"
    subprocess.run(["git", "clone", "-q", "--branch", "imgforge/web-v0.0.3", str(bare), str(human)], check=True)
    (human / "NOTES.md").write_text("reviewed by hand\n")
    git_in(human, "add", "NOTES.md")
    git_in(human, "commit", "-q", "-m", "docs: note the review")
    git_in(human, "push", "-q", "origin", "imgforge/web-v0.0.3")
    before, calls = snap(work, bare), len(fake.calls)

    with pytest.raises(
        ForeignCommits,
        match=r"1 commit\(s\) not made by imgforge \([0-9a-f]{8} Dev Eloper: "
        r"docs: note the review\).*will not overwrite",
    ):
        update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    assert snap(work, bare) == before
    assert [c[0] for c in fake.calls[calls:]] == ["GET"]  # only the lookup: nothing created or edited


def test_dirty_work_tree_is_refused(setup, snap):
    catalog, work, bare, fake, forge = setup("gitlab")
    (work / OVERLAY / "deployment-patch.yaml").write_text("half an edit\n")
    before = snap(work, bare)
    with pytest.raises(DirtyWorkTree, match=r"uncommitted changes \(.*deployment-patch.yaml\); commit or stash"):
        update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    assert snap(work, bare) == before
    assert fake.calls == []


def test_push_rejected_by_the_remote(setup, snap):
    catalog, work, bare, fake, forge = setup("github")
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'policy: bot branches need approval' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = snap(work, bare)
    with pytest.raises(
        GitopsError,
        match=r"push of 'imgforge/web-v0.0.3' to 'origin' .* was rejected: "
        r".*policy: bot branches need approval",
    ):
        update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    assert snap(work, bare) == before
    assert [c[0] for c in fake.calls] == ["GET"]
    assert fake.items == {}


def test_forge_down_changes_nothing(setup, snap):
    catalog, work, bare, fake, forge = setup("gitlab")
    fake.stop()
    before = snap(work, bare)
    with pytest.raises(ForgeError, match=r"cannot reach gitlab at http://127.0.0.1:\d+: connection refused"):
        update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    assert snap(work, bare) == before


def test_forge_failing_after_the_push_takes_the_push_back(kind, setup, snap):
    catalog, work, bare, fake, forge = setup(kind)
    fake.fail["POST"] = 500
    before = snap(work, bare)
    with pytest.raises(ForgeError, match=r"answered 500 to POST"):
        update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    assert snap(work, bare) == before
    assert fake.items == {}


def test_already_deployed_tag_needs_no_request(setup, make_catalog, git_in):
    catalog, work, bare, fake, forge = setup("gitea")
    first = update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    git_in(bare, "update-ref", "refs/heads/main", first.commit)  # "merged"
    again = update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    assert again.action == "up-to-date"
    assert again.request is None
    assert len(fake.items) == 1


def test_failed_update_puts_the_previous_branch_back(setup, make_catalog, git_in, snap):
    """The branch existed (first run); the refresh pushes, the forge fails: the old commit returns."""
    catalog, work, bare, fake, forge = setup("github")
    first = update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    catalog = load_catalog(make_catalog(sites={"web": {"image": IMAGE, "tag": "v0.0.3", "gid": 20000}}))
    fake.fail["PATCH"] = 502
    before = snap(work, bare)
    patch = r"github at http://127.0.0.1:\d+ answered 502 to PATCH /repos/ops/gitops/pulls/1"
    with pytest.raises(ForgeError, match=patch):
        update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    assert git_in(bare, "rev-parse", "refs/heads/imgforge/web-v0.0.3") == first.commit
    assert snap(work, bare) == before
    assert fake.body(fake.items[1]) == first.body


def test_branch_is_rebuilt_when_the_default_branch_moves(setup, git_in, tmp_path):
    catalog, work, bare, fake, forge = setup("gitlab")
    first = update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(bare), str(other)], check=True)
    (other / "README.md").write_text("unrelated change\n")
    git_in(other, "add", "README.md")
    git_in(other, "commit", "-q", "-m", "docs: readme")
    git_in(other, "push", "-q", "origin", "main")

    again = update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    assert again.pushed
    assert again.action == "updated"
    assert again.commit != first.commit
    assert git_in(bare, "rev-parse", f"{again.commit}~1") == git_in(bare, "rev-parse", "refs/heads/main")
    assert git_in(bare, "rev-list", "--count", "refs/heads/main..refs/heads/imgforge/web-v0.0.3") == "1"
    assert len(fake.items) == 1


def test_commit_falls_back_to_imgforge_identity(setup, git_in, monkeypatch):
    """A CI runner often has no git identity: the commit must still be made (and say who made it)."""
    catalog, work, bare, _fake, forge = setup("gitlab")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    result = update.open_or_update_pr(catalog, catalog.site("web"), work, forge=forge, allow_unverified=True)
    assert (
        git_in(bare, "log", "-1", "--format=%an <%ae>|%cn", result.commit) == "imgforge <imgforge@localhost>|imgforge"
    )
