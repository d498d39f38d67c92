"""The CI files: valid against the forges' real schemas, and only running commands imgforge has.

Schemas come vendored with check-jsonschema (``--builtin-schema``), so this runs offline. Beyond
the schema, the tests read the workflows as data: pull requests must never reach a push, secrets
appear only where pushing or the GitOps update needs them, and every ``imgforge`` command line
in them must parse against the real CLI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import typer.main
from typer.exceptions import TyperException

from imgforge import matrix
from imgforge.cli import app

GITHUB = ".github/workflows/sites.yml"
GITLAB = ".gitlab-ci.yml"
TAG_CONVENTION = ["v0.0.5", "1.2.3", "v10.20.30"], ["v1.2", "v1.2.3-rc1", "release-1.2.3", "vv1.2.3", "v1.2.3.4"]


def read(helpers, rel: str) -> dict:
    return helpers.load_yaml((helpers.repo / rel).read_text(encoding="utf-8"))


def schema_errors(helpers, path, schema: str) -> str | None:
    proc = helpers.check_schema(path, schema)
    return None if proc.returncode == 0 else proc.stdout + proc.stderr


@pytest.mark.parametrize(("rel", "schema"), [(GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")])
def test_workflow_files_match_the_real_schema(helpers, rel, schema):
    assert schema_errors(helpers, helpers.repo / rel, schema) is None


def test_the_schema_check_rejects_a_broken_workflow(helpers, tmp_path):
    """The validator must be able to fail: the GitHub workflow without runs-on, a typo in GitLab."""
    text = (helpers.repo / GITHUB).read_text(encoding="utf-8")
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("    runs-on: ubuntu-latest\n", "", 1), encoding="utf-8")
    assert "runs-on" in schema_errors(helpers, broken, "vendor.github-workflows")
    text = (helpers.repo / GITLAB).read_text(encoding="utf-8")
    broken.write_text(text.replace("  script:\n", "  scirpt:\n", 1), encoding="utf-8")
    assert schema_errors(helpers, broken, "vendor.gitlab-ci") is not None


@pytest.mark.parametrize(
    "result",
    [
        matrix.MatrixResult(()),
        matrix.MatrixResult(
            (
                matrix.Entry("a", "r.example/a:v1", "sites/a.toml changed", "alpine:3.21"),
                matrix.Entry("b-2", "r.example/b:v2", 'quote " and: colon', "imgforge/nginx-debian:bookworm"),
            ),
            changed_since="origin/main",
            base_commit="0" * 40,
        ),
        matrix.MatrixResult(
            (),
            (
                matrix.Problem("x", "r.example/x:v1", "unreachable", "it's gone: 'ref'", False),
                matrix.Problem("y", "r.example/y:v1", "unavailable", "no folder", True),
            ),
        ),
    ],
    ids=["empty", "two-sites", "problems-only"],
)
def test_generated_child_pipelines_match_the_gitlab_schema(helpers, tmp_path, result):
    path = tmp_path / "child.yml"
    path.write_text(matrix.format_gitlab(result), encoding="utf-8")
    assert schema_errors(helpers, path, "vendor.gitlab-ci") is None
    doc = helpers.load_yaml(path.read_text())
    visible = [k for k, v in doc.items() if isinstance(v, dict) and not k.startswith(".")]
    assert visible, "GitLab refuses a child pipeline without a visible job"
    for entry in result.entries:
        assert doc[f"site:{entry.site}"]["variables"]["BUILD_REASON"] == entry.reason


def test_an_oci_site_gets_an_unprivileged_candidate_job_before_its_site_job(helpers, tmp_path):
    result = matrix.MatrixResult(
        (
            matrix.Entry("o", "cr.example/o:v1", "content changed", "cr.example/nginx:1.27", builder="oci"),
            matrix.Entry("l", "cr.example/l:v1", "content changed", "imgforge/nginx-debian:bookworm", builder="oci"),
            matrix.Entry("d", "cr.example/d:v1", "content changed", "cr.example/nginx:1.27"),
        )
    )
    path = tmp_path / "child.yml"
    path.write_text(matrix.format_gitlab(result), encoding="utf-8")
    assert schema_errors(helpers, path, "vendor.gitlab-ci") is None
    doc = helpers.load_yaml(path.read_text())
    jobs = sorted(k for k, v in doc.items() if isinstance(v, dict) and not k.startswith("."))
    # A local imgforge/ base needs the engine to be read: that oci site has no candidate job.
    assert jobs == ["candidate:o", "site:d", "site:l", "site:o"]
    assert doc["stages"] == ["candidate", "build"]
    candidate = doc[".imgforge-candidate"]
    assert "services" not in candidate  # no Docker-in-Docker: no engine, no privilege
    assert candidate["stage"] == "candidate"
    assert doc["site:o"]["variables"]["CANDIDATE"] == "1"
    assert "CANDIDATE" not in doc["site:l"]["variables"]
    assert any("rebuild" in line and "--verify" in line for line in doc[".imgforge-site"]["script"])


def _imgforge_lines(script: str) -> list[list[str]]:
    """Every ``imgforge …`` command in a shell snippet, split into words like the shell would."""
    separators = {";", ";;", "&&", "||", "|", "&", "(", ")", "{", "}"}
    commands = []
    for raw in script.splitlines():
        line = re.sub(r"\$\{\w+:\+([^}]*)\}", r"\1", raw)  # ${SINCE:+--changed-since "$SINCE"}: as if set
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        segment: list[str] = []
        redirect = False
        for token in [*lexer, ";"]:
            if redirect or token in (">", ">>", "<", ">&"):  # a redirection and its target: not arguments
                redirect = not redirect
                continue
            if token not in separators:
                segment.append(token)
                continue
            while segment and (segment[0] == "sudo" or segment[0].startswith("--preserve-env")):
                segment.pop(0)
            if segment and segment[0] in ("imgforge", "$(command -v imgforge)"):
                commands.append(["imgforge", *segment[1:]])
            segment = []
    return commands


def all_commands(helpers) -> list[list[str]]:
    gh = read(helpers, GITHUB)
    scripts = [step.get("run", "") for job in gh["jobs"].values() for step in job["steps"]]
    gl = read(helpers, GITLAB)
    scripts += [line for job in gl.values() if isinstance(job, dict) for line in job.get("script", [])]
    child = helpers.load_yaml(matrix.gitlab_site_job())[".imgforge-site"]
    scripts += child["before_script"] + child["script"]
    scripts += helpers.load_yaml(matrix.gitlab_site_job())[".imgforge-candidate"]["script"]
    return [cmd for script in scripts for cmd in _imgforge_lines(script)]


def test_every_imgforge_command_in_ci_parses_against_the_real_cli(helpers):
    """CI must run what a person runs: each command and option has to exist in imgforge itself."""
    commands = all_commands(helpers)
    used = {tuple(c[1:2]) for c in commands}
    assert {("matrix",), ("build",), ("push",), ("update",), ("base",)} <= used
    root = typer.main.get_command(app)
    for words in commands:
        cmd, rest = root, words[1:]
        while hasattr(cmd, "commands"):  # descend groups: `base bootstrap`, …
            assert rest, f"{' '.join(words)}: no such command in imgforge"
            assert rest[0] in cmd.commands, f"{' '.join(words)}: no such command in imgforge"
            cmd, rest = cmd.commands[rest[0]], rest[1:]
        # Parse for real (extra arguments, missing required options); $VARS stand for one word.
        args = ["value" if "$" in w else w for w in rest]
        try:
            cmd.make_context(words[1], args)
        except TyperException as e:
            pytest.fail(f"{' '.join(words)}: {e}")


def _push_steps(gh: dict) -> list[dict]:
    return [s for job in gh["jobs"].values() for s in job["steps"] if "imgforge push" in s.get("run", "")]


def test_github_pull_requests_never_push(helpers):
    gh = read(helpers, GITHUB)
    steps = _push_steps(gh)
    assert len(steps) == 3  # release tags, dev-<sha8> from branch pushes, oci candidates
    for step in steps:
        assert "github.event_name == 'push'" in step["if"]
        assert "pull_request" not in step["if"]
    candidate = next(st for st in steps if "candidate-" in st["run"])
    assert candidate in gh["jobs"]["candidate"]["steps"]
    assert "matrix.builder == 'oci'" in candidate["if"]
    steps.remove(candidate)
    release, dev = sorted(steps, key=lambda st: "--tag" in st["run"])
    assert "github.ref_type == 'tag'" in release["if"]
    assert "--also-latest" in release["run"]
    assert "github.ref_type == 'branch'" in dev["if"]
    assert '--tag "dev-${GITHUB_SHA::8}"' in dev["run"]
    assert gh["jobs"]["gitops"]["if"].count("github.event_name == 'push'") == 1
    assert "ref_type == 'tag'" in gh["jobs"]["gitops"]["if"]


def test_github_secrets_only_where_they_are_needed(helpers):
    gh = read(helpers, GITHUB)
    for name, job in gh["jobs"].items():
        for step in job["steps"]:
            uses_secret = "secrets." in repr(step)
            run = step.get("run", "")
            # rebuild --verify and base check read the registry; base update pushes
            pushes = any(f"imgforge {c}" in run for c in ("push", "update", "rebuild", "base check", "base update"))
            checkout_gitops = step.get("with", {}).get("path") == "gitops"
            assert uses_secret == (pushes or checkout_gitops), f"{name}: {step.get('name') or step.get('uses')}"


def test_github_matrix_job_feeds_the_site_job(helpers):
    gh = read(helpers, GITHUB)
    site = gh["jobs"]["site"]
    assert site["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.matrix) }}"
    # An empty include list is an error on GitHub; the site job also runs when candidate jobs were skipped.
    assert "needs.matrix.outputs.count != '0'" in site["if"]
    assert "needs.matrix.result == 'success'" in site["if"]
    candidate = gh["jobs"]["candidate"]
    assert candidate["strategy"]["matrix"] == site["strategy"]["matrix"]
    assert candidate["container"] == "python:3.12"  # no Docker socket: the candidate is built unprivileged
    assert not any("docker" in str(step.get("run", "")).split() for step in candidate["steps"])
    assert site["strategy"]["fail-fast"] is False
    assert gh["jobs"]["matrix"]["steps"][0]["with"]["fetch-depth"] == 0
    build = [s["run"] for s in site["steps"] if "imgforge build" in s.get("run", "")]
    assert build == ['imgforge build "$SITE" --test']
    assert "DOCKER_HOST" in gh["env"]


def _glob_to_regex(pattern: str) -> str:
    """GitHub's filter syntax, the subset the workflow uses: [0-9], + (one or more), literal dots."""
    return "^" + pattern.replace(".", r"\.") + "$"


def test_tag_filters_follow_the_fleet_convention(helpers):
    gh = read(helpers, GITHUB)
    gh_tags = [_glob_to_regex(p) for p in gh["on"]["push"]["tags"]]
    gl_text = (helpers.repo / GITLAB).read_text(encoding="utf-8")
    gl_regexes = set(re.findall(r"\$CI_COMMIT_TAG =~ /(.+?)/\s*$", gl_text, re.M))
    assert gl_regexes == {r"^v?\d+\.\d+\.\d+$"}
    good, bad = TAG_CONVENTION
    for tag in good:
        assert any(re.match(r, tag) for r in gh_tags), tag
    for tag in bad:
        assert not any(re.match(r, tag) for r in gh_tags), tag


def test_gitlab_push_only_from_release_tags_and_the_default_branch(helpers):
    gl = read(helpers, GITLAB)
    rules = gl["sites"]["rules"]
    pushing = {r["variables"]["IMGFORGE_PUSH"]: r["if"] for r in rules if "variables" in r}
    assert set(pushing) == {"release", "dev"}
    assert pushing["release"] == r"$CI_COMMIT_TAG =~ /^v?\d+\.\d+\.\d+$/"
    assert pushing["dev"] == '$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH'
    assert all("merge_request" not in cond for cond in pushing.values())
    assert gl["sites"]["trigger"]["include"] == [{"artifact": "sites-pipeline.yml", "job": "plan"}]
    assert gl["plan"]["variables"]["GIT_DEPTH"] == "0"
    assert gl["gitops"]["rules"] == [{"if": r"$CI_COMMIT_TAG =~ /^v?\d+\.\d+\.\d+$/"}]
    child = helpers.load_yaml(matrix.gitlab_site_job())[".imgforge-site"]
    push_line = next(line for line in child["script"] if "imgforge push" in line)
    assert "release:*)" in push_line
    assert "*) echo" in push_line
    assert 'dev:*) imgforge push "$SITE" --tag "dev-$CI_COMMIT_SHORT_SHA"' in push_line


def test_generated_report_jobs_print_the_reasons_verbatim(helpers):
    """The problem and no-op jobs' shell lines, run by bash: quotes in reasons survive intact."""
    reason = "it's gone: 'main' $HOME \"quoted\""
    result = matrix.MatrixResult(
        (),
        (
            matrix.Problem("x", "r.example/x:v1", "unreachable", reason, False),
            matrix.Problem("y", "r.example/y:v1", "unavailable", reason, True),
        ),
        changed_since="HEAD",
        base_commit="f" * 40,
    )
    doc = helpers.load_yaml(matrix.format_gitlab(result))
    for job, site in (("problems", "x"), ("problem:y", "y")):
        lines = doc[job]["script"]
        assert lines[-1] == "exit 1"
        assert doc[job].get("allow_failure", False) is (job == "problems")
        proc = subprocess.run(["bash", "-c", "\n".join(lines[:-1])], capture_output=True, text=True, check=False)
        assert proc.stderr == f"{site}: {reason}\n"
    doc = helpers.load_yaml(matrix.format_gitlab(matrix.MatrixResult((), changed_since="HEAD", base_commit="f" * 40)))
    proc = subprocess.run(
        ["bash", "-c", "\n".join(doc["nothing-to-do"]["script"])], capture_output=True, text=True, check=False
    )
    assert proc.stdout == "no site inputs changed since HEAD (ffffffff): nothing to build\n"


# --- the shell that picks the revision to compare with, run in a real repository ----------------


@pytest.fixture
def released_repo(catalog_repo):
    """main: v1.0.0, a change to alpha, v1.1.0 (HEAD), as a tag pipeline would see it."""
    catalog_repo.git("tag", "v1.0.0")
    catalog_repo.commit("alpha", {"content/alpha/www-data/index.html": "<h1>new</h1>\n"})
    catalog_repo.git("tag", "-a", "v1.1.0", "-m", "release")
    return catalog_repo


def github_since(helpers, repo, tmp_path, **env: str) -> str:
    step = next(s for s in read(helpers, GITHUB)["jobs"]["matrix"]["steps"] if s.get("id") == "since")
    output = tmp_path / "out"
    output.write_text("")
    full_env = {
        **os.environ,
        "GITHUB_OUTPUT": str(output),
        "EVENT": "",
        "BEFORE": "",
        "BASE_REF": "",
        "REF_TYPE": "",
        **env,
    }
    subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]], cwd=repo.path, env=full_env, check=True, capture_output=True
    )
    return output.read_text().removeprefix("since=").strip()


def test_github_tag_pipeline_compares_with_the_previous_release(helpers, released_repo, tmp_path):
    assert github_since(helpers, released_repo, tmp_path, EVENT="push", REF_TYPE="tag") == "v1.0.0"


def test_github_branch_push_compares_with_the_previous_head(helpers, released_repo, tmp_path):
    before = released_repo.git("rev-parse", "v1.0.0")
    assert github_since(helpers, released_repo, tmp_path, EVENT="push", REF_TYPE="branch", BEFORE=before) == before
    # a new branch (before = zeros) or a force push to a lost commit: no base, every site
    assert github_since(helpers, released_repo, tmp_path, EVENT="push", REF_TYPE="branch", BEFORE="0" * 40) == ""
    assert github_since(helpers, released_repo, tmp_path, EVENT="pull_request", BASE_REF="main") == "origin/main"
    assert github_since(helpers, released_repo, tmp_path, EVENT="schedule") == ""


def test_gitlab_plan_job_writes_the_child_pipeline_for_a_tag(helpers, released_repo, tmp_path):
    script = [line for line in read(helpers, GITLAB)["plan"]["script"] if not line.startswith("pip install")]
    env = {
        **os.environ,
        "CI_COMMIT_TAG": "v1.1.0",
        "CI_PIPELINE_SOURCE": "push",
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
    }
    proc = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", "\n".join(script)],
        cwd=released_repo.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "comparing with: v1.0.0" in proc.stdout
    child = helpers.load_yaml((released_repo.path / "sites-pipeline.yml").read_text())
    assert [k for k in child if k.startswith("site:")] == ["site:alpha"]
    assert schema_errors(helpers, released_repo.path / "sites-pipeline.yml", "vendor.gitlab-ci") is None


def test_site_jobs_sign_and_the_gitops_job_verifies(helpers):
    """Pushes carry the signing key (a secret written to a 0600 file, never echoed); `update` gets
    the public key, so the requests CI opens on a fresh runner are verified."""
    gh = read(helpers, GITHUB)
    # The oci candidate is pushed untested and is never released as it is: the site job rebuilds it,
    # proves it bit for bit, tests it and promotes it with a signing push. The candidate job, which
    # runs without any engine, never holds the key.
    [candidate] = [s for s in gh["jobs"]["candidate"]["steps"] if "imgforge push" in s.get("run", "")]
    assert "SIGNING" not in json.dumps(candidate)
    signing = [s for name, job in gh["jobs"].items() if name != "candidate" for s in job["steps"]]
    for step in [s for s in signing if "imgforge push" in s.get("run", "")]:
        assert step["env"]["SIGNING_KEY"] == "${{ secrets.IMGFORGE_SIGNING_KEY }}"
        assert step["env"]["IMGFORGE_SIGNING_PASSWORD"] == "${{ secrets.IMGFORGE_SIGNING_PASSWORD }}"
        assert '(umask 077 && printf \'%s\\n\' "$SIGNING_KEY" > "$RUNNER_TEMP/cosign.key")' in step["run"]
        assert 'export IMGFORGE_SIGNING_KEY="$RUNNER_TEMP/cosign.key"' in step["run"]
        assert "echo" not in step["run"]
    [update] = [s for s in gh["jobs"]["gitops"]["steps"] if "imgforge update" in s.get("run", "")]
    assert update["env"]["SIGNING_KEY_PUB"] == "${{ vars.IMGFORGE_SIGNING_KEY_PUB }}"
    assert 'export IMGFORGE_SIGNING_KEY_PUB="$RUNNER_TEMP/cosign.pub"' in update["run"]
    assert "--allow-unverified" not in update["run"]
    gitlab = (helpers.repo / GITLAB).read_text(encoding="utf-8")
    assert "IMGFORGE_SIGNING_KEY_PUB" in gitlab
    assert "--allow-unverified" not in gitlab
    assert "IMGFORGE_SIGNING_KEY" in matrix.gitlab_site_job()
