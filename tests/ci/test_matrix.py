"""``imgforge matrix``: which sites changed, against real git repositories and real git sources.

Git sources are bare repositories on disk reached through file:// URLs, so ``git ls-remote`` and
the one-commit fetch really run, with no network.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from imgforge import matrix
from imgforge.config import load_catalog


def names(result: matrix.MatrixResult) -> list[str]:
    return [e.site for e in result.entries]


def build(repo, since: str | None, root=None) -> matrix.MatrixResult:
    return matrix.sites_to_build(load_catalog(root or repo.path), since, repo.path)


# --- local inputs -------------------------------------------------------------------------------


def test_without_changed_since_every_site_is_listed(catalog_repo):
    result = build(catalog_repo, None)
    assert names(result) == ["alpha", "beta", "gamma"]
    assert all("every site" in e.reason for e in result.entries)
    assert result.base_commit is None


def test_a_commit_touching_one_site_file_lists_only_that_site(catalog_repo, helpers):
    base = catalog_repo.git("rev-parse", "HEAD")
    catalog_repo.commit(
        "beta: new tag",
        {"sites/beta.toml": helpers.site_toml("beta", helpers.local_source("beta")).replace("v1.0.0", "v1.0.1")},
    )
    result = build(catalog_repo, base)
    assert names(result) == ["beta"]
    assert result.entries[0].reason == "sites/beta.toml changed"
    assert result.entries[0].image == "registry.example.invalid/sites/beta:v1.0.1"
    assert result.base_commit == base


def test_content_change_lists_only_the_site_that_serves_it(catalog_repo):
    base = catalog_repo.git("rev-parse", "HEAD")
    catalog_repo.commit("gamma: copy edit", {"content/gamma/www-data/about/index.html": "<p>about</p>\n"})
    result = build(catalog_repo, base)
    assert names(result) == ["gamma"]
    assert result.entries[0].reason == "content content/gamma/www-data/ changed"


def test_content_outside_the_served_folder_changes_nothing(catalog_repo):
    base = catalog_repo.git("rev-parse", "HEAD")
    catalog_repo.commit("notes", {"content/alpha/README.md": "not served\n", "content/alpha-old/x.html": "x\n"})
    assert names(build(catalog_repo, base)) == []


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("templates/nginx.conf.j2", "templates/ changed"),
        ("templates/new-snippet.conf.j2", "templates/ changed"),
        ("imgforge.toml", "imgforge.toml changed"),
    ],
)
def test_shared_inputs_list_every_site(catalog_repo, path, why):
    base = catalog_repo.git("rev-parse", "HEAD")
    catalog_repo.commit(f"touch {path}", {path: "# changed\n"})
    result = build(catalog_repo, base)
    assert names(result) == ["alpha", "beta", "gamma"]
    assert {e.reason for e in result.entries} == {f"{why} (affects every site)"}


def test_a_commit_touching_nothing_relevant_gives_an_empty_result(catalog_repo, cli_main):
    base = catalog_repo.git("rev-parse", "HEAD")
    catalog_repo.commit("docs", {"docs/readme.md": "hello\n"})
    catalog_repo.commit("empty")
    assert build(catalog_repo, base).entries == ()
    code, out, err = cli_main("matrix", "--root", str(catalog_repo.path), "--changed-since", base, "--format", "github")
    assert (code, json.loads(out), err) == (0, {"include": []}, "")


def test_changes_on_another_branch_after_the_fork_are_ignored(catalog_repo):
    """REF...HEAD semantics: what main did after the branch forked is not this branch's change."""
    catalog_repo.git("checkout", "-q", "-b", "feature")
    catalog_repo.commit("alpha change", {"content/alpha/www-data/index.html": "<h1>new</h1>\n"})
    catalog_repo.git("checkout", "-q", "main")
    catalog_repo.commit("beta change on main", {"content/beta/www-data/index.html": "<h1>new</h1>\n"})
    catalog_repo.git("checkout", "-q", "feature")
    assert names(build(catalog_repo, "main")) == ["alpha"]


def test_only_committed_changes_count_as_in_ci(catalog_repo):
    """REF...HEAD: a work tree edit is not a change CI would see, so it builds nothing."""
    base = catalog_repo.git("rev-parse", "HEAD")
    catalog_repo.commit("gamma", {"content/gamma/www-data/new.css": "body{}\n"})
    catalog_repo.write({"content/alpha/www-data/index.html": "<h1>edited, not committed</h1>\n"})
    assert names(build(catalog_repo, base)) == ["gamma"]


def test_a_file_moved_from_one_site_to_another_counts_for_both(catalog_repo):
    """Rename detection would name only the new path; the site that lost the file changed too."""
    base = catalog_repo.commit("big file", {"content/beta/www-data/photo.html": "<p>" + "photo " * 200 + "</p>\n"})
    catalog_repo.git("mv", "content/beta/www-data/photo.html", "content/alpha/www-data/photo.html")
    catalog_repo.commit("move")
    assert names(build(catalog_repo, base)) == ["alpha", "beta"]


def test_catalog_in_a_subfolder_of_the_repository(git_repo, helpers):
    repo = git_repo("mono")
    files = {
        "fleet/imgforge.toml": "[defaults]\n",
        "fleet/templates/x.j2": "x\n",
        "www/one/site/index.html": "1\n",
        "fleet/sites/one.toml": helpers.site_toml("one", '[source]\npath = "../www/one"\ncontent_dir = "site"\n'),
        "fleet/sites/two.toml": helpers.site_toml("two", '[source]\npath = "../www/two"\ncontent_dir = "site"\n'),
        "www/two/site/index.html": "2\n",
        "templates/not-ours.j2": "x\n",
    }
    base = repo.commit("init", files)
    repo.commit("two", {"www/two/site/index.html": "2b\n", "templates/not-ours.j2": "y\n"})
    result = matrix.sites_to_build(load_catalog(repo.path / "fleet"), base, repo.path / "fleet")
    assert names(result) == ["two"]


def test_content_outside_the_repository_is_always_built(catalog_repo, tmp_path, build_file_tree, helpers):
    outside = build_file_tree(tmp_path / "elsewhere", {"www-data/index.html": "x\n"})
    base = catalog_repo.commit(
        "outside", {"sites/delta.toml": helpers.site_toml("delta", f'[source]\npath = "{outside}"\n')}
    )
    result = build(catalog_repo, base)
    assert names(result) == ["delta"]
    assert "outside the repository" in result.entries[0].reason


def test_one_git_diff_for_the_whole_catalog(git_repo, monkeypatch, helpers):
    """The cost must not grow with the number of sites: one diff, never one per site."""
    repo = git_repo("many")
    files = {"imgforge.toml": "[defaults]\n"}
    for i in range(60):
        files[f"sites/s{i:02d}.toml"] = helpers.site_toml(f"s{i:02d}", helpers.local_source(f"s{i:02d}"))
        files[f"content/s{i:02d}/www-data/index.html"] = f"{i}\n"
    base = repo.commit("init", files)
    repo.commit(
        "s07 and s42", {"content/s07/www-data/index.html": "x\n", "sites/s42.toml": files["sites/s42.toml"] + "#\n"}
    )
    calls: list[list[str]] = []
    real_run = subprocess.run

    def spy(cmd, *args, **kwargs):
        calls.append(list(cmd))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    assert names(build(repo, base)) == ["s07", "s42"]
    assert len(calls) <= 6, calls
    assert sum(1 for c in calls if c[:2] == ["git", "diff"]) == 1


def test_a_missing_content_folder_is_reported_not_dropped(catalog_repo):
    base = catalog_repo.git("rev-parse", "HEAD")
    catalog_repo.git("rm", "-rq", "content/gamma")
    catalog_repo.commit("gamma content gone")
    result = build(catalog_repo, base)
    assert names(result) == []
    [problem] = result.problems
    assert (problem.site, problem.kind, problem.blocking) == ("gamma", "unavailable", True)
    assert "content folder" in problem.reason
    assert "does not exist" in problem.reason


def test_unknown_revision_is_a_usage_error(catalog_repo, cli_main):
    code, out, err = cli_main("matrix", "--root", str(catalog_repo.path), "--changed-since", "no-such-ref")
    assert code == 2
    assert out == ""
    assert err.startswith("error: --changed-since no-such-ref: unknown revision in ")
    assert err.count("\n") == 1


def test_unrelated_history_says_so(catalog_repo, cli_main):
    catalog_repo.git("checkout", "-q", "--orphan", "other")
    other = catalog_repo.commit("unrelated root")
    catalog_repo.git("checkout", "-q", "main")
    code, _, err = cli_main("matrix", "--root", str(catalog_repo.path), "--changed-since", other)
    assert code == 2
    assert "no common history with HEAD" in err
    assert "fetch-depth 0" in err


def test_not_a_git_repository_is_a_usage_error(make_catalog, cli_main):
    root = make_catalog(sites={"a": {}})
    code, _, err = cli_main("matrix", "--root", str(root), "--changed-since", "HEAD")
    assert code == 2
    assert "not a git repository" in err


# --- git sources --------------------------------------------------------------------------------


@pytest.fixture
def remote(git_repo):
    """A site repository with a www-data folder, served by file:// like a forge would.

    Its history is 1,000 hours older than the catalog's; ``remote.jump(2000)`` before a commit
    makes that commit newer than anything in the catalog.
    """
    origin = git_repo("site-origin", start=-1000)
    origin.commit("site", {"www-data/index.html": "v1\n", "README.md": "site\n"})
    origin.git("tag", "-a", "v1.0.0", "-m", "release")  # annotated: ls-remote lists it peeled as ^{}
    return origin


def add_git_site(catalog_repo, name: str, url: str, ref: str = "main") -> str:
    toml = (
        f'image = "registry.example.invalid/sites/{name}"\ntag = "v1.0.0"\nprofile = "prebuilt"\n'
        f'[source]\ngit = "{url}"\nref = "{ref}"\n'
    )
    return catalog_repo.commit(f"add {name}", {f"sites/{name}.toml": toml})


def test_git_source_that_did_not_move_is_not_built(catalog_repo, remote):
    base = add_git_site(catalog_repo, "remote-site", f"file://{remote.path}")
    catalog_repo.commit("unrelated", {"docs/x.md": "x\n"})
    result = build(catalog_repo, base)
    assert names(result) == []
    assert result.problems == ()


def test_git_source_with_a_new_commit_is_built(catalog_repo, remote):
    base = add_git_site(catalog_repo, "remote-site", f"file://{remote.path}")
    remote.jump(2000)
    new = remote.commit("new page", {"www-data/new.html": "new\n"})
    result = build(catalog_repo, base)
    assert names(result) == ["remote-site"]
    entry = result.entries[0]
    assert entry.revision == new
    assert f"moved to {new[:8]}" in entry.reason


def test_git_source_commit_is_fetched_once_then_read_from_the_cache(catalog_repo, remote, monkeypatch):
    base = add_git_site(catalog_repo, "remote-site", f"file://{remote.path}")
    catalog_repo.commit("unrelated", {"docs/x.md": "x\n"})
    calls: list[list[str]] = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda cmd, *a, **kw: calls.append(cmd) or real_run(cmd, *a, **kw))
    assert names(build(catalog_repo, base)) == []
    assert sum(1 for c in calls if "fetch" in c) == 1
    calls.clear()
    assert names(build(catalog_repo, base)) == []
    assert [c for c in calls if "fetch" in c] == []
    assert sum(1 for c in calls if "ls-remote" in c) == 1


def test_a_pinned_commit_is_rebuilt_only_through_the_site_file(catalog_repo, remote):
    """A pinned commit is exact: even one dated after the base (rebased, clock skew) is no change."""
    remote.jump(2000)
    pinned = remote.commit("dated in the future", {"www-data/index.html": "v1.1\n"})
    base = add_git_site(catalog_repo, "pinned", f"file://{remote.path}", pinned)
    remote.commit("newer work", {"www-data/index.html": "v2\n"})
    catalog_repo.commit("unrelated", {"docs/x.md": "x\n"})
    assert names(build(catalog_repo, base)) == []
    newer = remote.git("rev-parse", "HEAD")
    add_git_site(catalog_repo, "pinned", f"file://{remote.path}", newer)
    result = build(catalog_repo, base)
    assert names(result) == ["pinned"]
    assert result.entries[0].reason == "sites/pinned.toml changed"


def test_git_source_pinned_to_a_tag_resolves_the_tag(catalog_repo, remote):
    tagged = remote.git("rev-parse", "v1.0.0^{commit}")
    remote.commit("later work on main", {"www-data/index.html": "v2\n"})
    add_git_site(catalog_repo, "tagged", f"file://{remote.path}", "v1.0.0")
    result = build(catalog_repo, None)
    assert {e.site: e.revision for e in result.entries}["tagged"] == tagged


def test_unreachable_git_source_is_reported_with_the_reason(catalog_repo, tmp_path):
    base = add_git_site(catalog_repo, "gone", f"file://{tmp_path}/no-such-repo.git")
    catalog_repo.commit("unrelated", {"docs/x.md": "x\n"})
    result = build(catalog_repo, base)
    [problem] = result.problems
    assert (problem.site, problem.kind, problem.blocking) == ("gone", "unreachable", False)
    assert "cannot reach the repository" in problem.reason
    assert "no-such-repo.git" in problem.reason
    # due for a build (no --changed-since): the same problem now blocks
    [problem] = build(catalog_repo, None).problems
    assert problem.blocking


def test_a_ref_the_remote_does_not_have_is_reported(catalog_repo, remote):
    add_git_site(catalog_repo, "typo", f"file://{remote.path}", "mian")
    [problem] = build(catalog_repo, None).problems
    assert problem.kind == "unreachable"
    assert "ref 'mian' not found" in problem.reason


def test_problems_reach_stderr_and_github_output(catalog_repo, tmp_path, cli_main, monkeypatch):
    base = add_git_site(catalog_repo, "gone", f"file://{tmp_path}/nope.git")
    catalog_repo.commit("alpha", {"content/alpha/www-data/index.html": "changed\n"})
    output = tmp_path / "github_output"
    output.write_text("earlier=1\n")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    code, out, err = cli_main("matrix", "--root", str(catalog_repo.path), "--changed-since", base, "--format", "github")
    assert code == 0
    catalog = load_catalog(catalog_repo.path)
    base_image = catalog.profile(catalog.site("alpha")).base_image
    assert json.loads(out) == {
        "include": [
            {
                "site": "alpha",
                "image": "registry.example.invalid/sites/alpha:v1.0.0",
                "base": base_image,
                "builder": "docker",
            }
        ]
    }
    assert err.startswith("warning: gone: sites/gone.toml: source: file://")
    lines = output.read_text().splitlines()
    assert lines[0] == "earlier=1"
    assert lines[1] == "matrix=" + out.strip()
    assert lines[2] == "count=1"
    assert lines[3].startswith("problems=")
    assert "gone" in json.loads(lines[3][len("problems=") :])[0]


def test_blocking_problem_becomes_a_failing_github_matrix_entry(catalog_repo, tmp_path, cli_main):
    add_git_site(catalog_repo, "gone", f"file://{tmp_path}/nope.git")
    _code, out, err = cli_main("matrix", "--root", str(catalog_repo.path), "--format", "github")
    include = json.loads(out)["include"]
    assert [i["site"] for i in include] == ["alpha", "beta", "gamma", "gone"]
    assert "cannot reach" in include[-1]["problem"]
    assert "problem" not in include[0]
    assert "error: gone:" in err


def assert_valid_gitlab(helpers, text: str, tmp_path) -> None:
    path = tmp_path / "child-pipeline.yml"
    path.write_text(text, encoding="utf-8")
    proc = helpers.check_schema(path, "vendor.gitlab-ci")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- formats ------------------------------------------------------------------------------------


def test_json_format_lists_sites_and_problems(catalog_repo, cli_main):
    base = catalog_repo.git("rev-parse", "HEAD")
    catalog_repo.commit("alpha", {"content/alpha/www-data/x.js": "1\n"})
    code, out, _ = cli_main("matrix", "--root", str(catalog_repo.path), "--changed-since", base)
    data = json.loads(out)
    assert code == 0
    assert data["base_commit"] == base
    assert data["changed_paths"] == 1
    assert [s["site"] for s in data["sites"]] == ["alpha"]
    assert data["problems"] == []
    assert set(data["sites"][0]) == {"site", "image", "reason", "base", "revision", "builder"}


def test_gitlab_format_one_job_per_site(catalog_repo, cli_main, helpers):
    base = catalog_repo.git("rev-parse", "HEAD")
    catalog_repo.commit(
        "two sites",
        {
            "content/alpha/www-data/x.js": "1\n",
            "sites/gamma.toml": helpers.site_toml("gamma", helpers.local_source("gamma")) + "# note\n",
        },
    )
    _code, out, _ = cli_main("matrix", "--root", str(catalog_repo.path), "--changed-since", base, "--format", "gitlab")
    doc = helpers.load_yaml(out)
    jobs = {k: v for k, v in doc.items() if not k.startswith(".") and isinstance(v, dict)}
    assert sorted(jobs) == ["site:alpha", "site:gamma"]
    assert jobs["site:alpha"]["variables"]["SITE"] == "alpha"
    assert jobs["site:gamma"]["extends"] == ".imgforge-site"
    assert 'imgforge build "$SITE" --test' in doc[".imgforge-site"]["script"]


def test_gitlab_format_empty_change_set_is_a_valid_noop(catalog_repo, cli_main, helpers, tmp_path):
    _code, out, _ = cli_main(
        "matrix", "--root", str(catalog_repo.path), "--changed-since", "HEAD", "--format", "gitlab"
    )
    doc = helpers.load_yaml(out)
    assert [k for k in doc if k != "stages"] == ["nothing-to-do"]
    assert "nothing to build" in doc["nothing-to-do"]["script"][0]
    assert_valid_gitlab(helpers, out, tmp_path)


def test_gitlab_format_problems_fail_or_warn(catalog_repo, tmp_path, cli_main, helpers):
    add_git_site(catalog_repo, "gone", f"file://{tmp_path}/nope.git")
    catalog_repo.commit(
        "gamma content gone", {"sites/gamma.toml": helpers.site_toml("gamma", '[source]\npath = "nowhere"\n')}
    )
    _code, out, _ = cli_main(
        "matrix", "--root", str(catalog_repo.path), "--changed-since", "HEAD~1", "--format", "gitlab"
    )
    doc = helpers.load_yaml(out)
    assert doc["problem:gamma"]["script"][-1] == "exit 1"
    assert "allow_failure" not in doc["problem:gamma"]
    assert doc["problems"]["allow_failure"] is True
    assert "gone" in doc["problems"]["script"][0]
    assert_valid_gitlab(helpers, out, tmp_path)


# --- image sources ------------------------------------------------------------------------------

_IMAGE_SOURCE = '[source]\nimage = "127.0.0.1:5000/fleet/{name}@sha256:{digest}"\ncontent_dir = "/var/www/html"\n'


def test_an_image_source_is_rebuilt_when_its_image_line_changes_like_a_ref(catalog_repo, helpers):
    """An image source is pinned by digest, like a commit: only its site file can change it. It is
    neither unavailable nor asked of a registry (the matrix reads no image)."""
    site = helpers.site_toml("imaged", _IMAGE_SOURCE.format(name="imaged", digest="a" * 64))
    catalog_repo.commit("imaged: adopted", {"sites/imaged.toml": site})
    base = catalog_repo.git("rev-parse", "HEAD")
    catalog_repo.commit("unrelated", {"docs/x.md": "x\n"})
    result = build(catalog_repo, base)
    assert (names(result), result.problems) == ([], ())
    catalog_repo.commit("imaged: new running image", {"sites/imaged.toml": site.replace("a" * 64, "b" * 64)})
    result = build(catalog_repo, base)
    assert names(result) == ["imaged"]
    assert result.entries[0].reason == "sites/imaged.toml changed"
    assert result.problems == ()
