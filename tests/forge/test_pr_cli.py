"""`imgforge pr` and `imgforge update` through the CLI: dry run, exit codes, summary, no token shown."""

from __future__ import annotations

import json

import pytest

from imgforge import update
from imgforge.config import load_catalog
from imgforge.errors import EXIT_FORGE, EXIT_REFUSED
from imgforge.forge.gitlab import GitLab

TOKEN = "glpat-s3cr3t-TOKEN-value-42"  # conftest.TOKEN
IMAGE = "127.0.0.1:9/prplanit/web.example"
REPO = "prplanit/web.example"


@pytest.fixture
def cli(gitops_repo, make_catalog, fake_forge, forge_env):
    def make(kind: str = "gitlab", image: str = IMAGE, tag: str = "v0.0.3"):
        work, bare = gitops_repo(image)
        root = make_catalog(sites={"web": {"image": image, "tag": tag}})
        fake = fake_forge(kind, remote=bare)
        args = [
            "--repo",
            str(work),
            "--root",
            str(root),
            "--forge",
            kind,
            "--forge-url",
            fake.url,
            "--project",
            "ops/gitops",
            "--allow-unverified",  # no signed image behind these requests: the forge flow is under test
        ]
        return work, bare, fake, args

    return make


def test_dry_run_shows_everything_and_changes_nothing(cli_main, cli, snap):
    work, bare, fake, args = cli("gitlab")
    before = snap(work, bare)
    code, out, err = cli_main("pr", "web", *args, "--dry-run")
    assert code == 0, err
    assert "branch: imgforge/web-v0.0.3 (from main at " in out
    assert f"chore(image): update {IMAGE} to v0.0.3" in out
    assert "Generated-By: imgforge" in out
    assert f"+          image: {IMAGE}:v0.0.3  # pinned by hand" in out
    assert "-            - containerPort: 80" in out
    assert "+            - containerPort: 8080" in out
    body = json.loads(out[out.index("request body (gitlab):") + len("request body (gitlab):") :])
    assert body["source_branch"] == "imgforge/web-v0.0.3"
    assert body["target_branch"] == "main"
    assert "| web (`web-site`)" in body["description"]
    assert snap(work, bare) == before
    assert fake.calls == []
    assert TOKEN not in out + err


def test_dry_run_json(cli_main, cli):
    _work, _bare, _fake, args = cli("github")
    code, out, _ = cli_main("pr", "web", *args, "--dry-run", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["action"] == "dry-run"
    assert data["payload"]["head"] == "imgforge/web-v0.0.3"
    assert data["evidence"]["verified"] is False
    assert data["diff"].startswith("--- a/")


def test_pr_prints_the_request_and_never_the_token(cli_main, cli, git_in):
    _work, bare, fake, args = cli("gitea")
    code, out, err = cli_main("pr", "web", *args)
    assert code == 0, err
    assert f"web: created pull request {fake.url}/ops/gitops/pulls/1 (imgforge/web-v0.0.3 -> main, pushed" in out
    code, out2, err2 = cli_main("pr", "web", *args, "--run-ci")
    assert code == 0
    assert "web: updated pull request" in out2
    assert len(fake.items) == 1
    assert "[skip ci]" not in git_in(bare, "log", "-1", "--format=%B", "imgforge/web-v0.0.3")
    history = git_in(bare, "log", "--all", "--format=%B")
    assert TOKEN not in out + err + out2 + err2 + history + json.dumps(fake.items)


def test_rejected_token_exit_code_and_message(cli_main, cli, monkeypatch, snap):
    work, bare, _fake, args = cli("gitlab")
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-WRONG-wrong-0000")
    before = snap(work, bare)
    code, out, err = cli_main("pr", "web", *args)
    assert code == EXIT_FORGE
    assert err.startswith("error: token rejected by gitlab at http://127.0.0.1:")
    assert "GITLAB_TOKEN" in err
    assert "glpat-WRONG" not in out + err
    assert snap(work, bare) == before


def test_missing_token_names_the_variables(cli_main, cli, monkeypatch):
    _work, _bare, _fake, args = cli("github")
    monkeypatch.delenv("GITHUB_TOKEN")
    code, _, err = cli_main("pr", "web", *args)
    assert code == EXIT_FORGE
    assert "no github token: set IMGFORGE_GITHUB_TOKEN or GITHUB_TOKEN" in err


def test_dirty_tree_exit_code(cli_main, cli):
    work, _bare, _fake, args = cli("gitlab")
    (work / "fluxcd/apps/base/web-site/service.yaml").write_text("oops\n")
    code, _, err = cli_main("pr", "web", *args)
    assert code == EXIT_REFUSED
    assert "uncommitted changes" in err


# ---- update: GitOps tag vs the registry's highest release --------------------------------------


@pytest.fixture
def loop(gitops_repo, make_catalog, fake_forge, fake_registry):
    image = f"{fake_registry.host}/{REPO}"
    work, bare = gitops_repo(image)
    catalog = load_catalog(make_catalog(sites={"web": {"image": image, "tag": "v0.0.1"}}))
    fake = fake_forge("gitlab", remote=bare)
    made = []

    def forge():
        made.append(GitLab(fake.url, "ops/gitops", TOKEN, timeout=5))
        return made[-1]

    return catalog, work, fake_registry, fake, forge, made


def test_update_proposes_the_highest_release_of_the_same_major(loop):
    catalog, work, registry, fake, forge, _made = loop
    registry.tags[REPO] = ["latest", "dev-1a2b3c4d", "v0.0.1", "v0.0.2", "v0.0.9", "v0.0.10-rc.1", "v1.0.0"]
    [row] = update.update_sites(catalog, ["web"], work, forge=forge, allow_unverified=True)
    assert (row.current, row.latest, row.target, row.status) == ("v0.0.2", "v1.0.0", "v0.0.9", "created")
    assert "v0.0.9; major v1.0.0 needs --allow-major" in row.detail
    assert row.url.endswith("/merge_requests/1")
    assert fake.branch(fake.items[1]) == "imgforge/web-v0.0.9"

    [row] = update.update_sites(catalog, ["web"], work, forge=forge, allow_major=True, allow_unverified=True)
    assert (row.target, row.status) == ("v1.0.0", "created")
    assert "closed 1 superseded request(s)" in row.detail
    assert [fake.branch(i) for i in fake.open_items()] == ["imgforge/web-v1.0.0"]
    [row] = update.update_sites(catalog, ["web"], work, forge=forge, allow_major=True, allow_unverified=True)
    assert row.status == "unchanged"
    assert len(fake.items) == 2


@pytest.mark.parametrize(
    ("tags", "status"),
    [
        (["v0.0.2", "latest"], "up to date"),
        (["v0.0.1"], "ahead"),
        (["v1.0.0"], "major"),
        (["latest", "dev-1a2b3c4d"], "no release"),
    ],
)
def test_update_says_why_nothing_is_opened(loop, tags, status):
    catalog, work, registry, fake, forge, made = loop
    registry.tags[REPO] = tags
    [row] = update.update_sites(catalog, ["web"], work, forge=forge, allow_unverified=True)
    assert row.status == status
    assert row.target is None
    assert row.detail
    assert made == []
    assert fake.calls == []


def test_update_cli_summary_and_json(cli_main, loop, forge_env, monkeypatch):
    catalog, work, registry, fake, _forge, _made = loop
    registry.tags[REPO] = ["v0.0.2", "v0.0.3"]
    args = [
        "update",
        "--all",
        "--repo",
        str(work),
        "--root",
        str(catalog.root),
        "--forge",
        "gitlab",
        "--forge-url",
        fake.url,
        "--project",
        "ops/gitops",
        "--allow-unverified",
    ]
    code, out, err = cli_main(*args, "--json")
    assert code == 0, err
    [row] = json.loads(out)
    assert row["site"] == "web"
    assert row["current"] == "v0.0.2"
    assert row["latest"] == "v0.0.3"
    assert row["status"] == "created"
    code, out, err = cli_main(*args)
    assert code == 0
    assert "unchanged" in out
    assert "v0.0.3" in out
    assert TOKEN not in out + err


def test_update_reports_a_failing_site_and_exits_with_its_code(cli_main, loop, forge_env):
    catalog, work, _registry, fake, _forge, _made = loop  # no tags listed: the registry answers 404
    args = [
        "update",
        "web",
        "--repo",
        str(work),
        "--root",
        str(catalog.root),
        "--forge",
        "gitlab",
        "--forge-url",
        fake.url,
        "--project",
        "ops/gitops",
    ]
    code, out, err = cli_main(*args)
    assert code == 7
    assert "error" in out
    assert f"update failed for 1 site(s): web: repository {REPO} not found" in err
