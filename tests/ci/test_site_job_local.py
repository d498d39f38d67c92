"""The per-site CI job, run here for the example site: the commands are read from the CI files.

Nothing is retyped: the GitHub job's unconditional ``run:`` steps and the GitLab child job's
script lines are taken from the files CI runs and executed with bash, as the runner would, with
the variables CI would set. apt-get, debootstrap and sudo are replaced by refusing stand-ins, so
a job that wrongly decided to bootstrap a base image fails here instead of going to a mirror.
Only ``pip install .`` is left out: imgforge is installed already, and reinstalling it would
change the shared virtualenv. GitHub's push step is gated on a tag push
(an ``if:``) and is not run; the GitLab job runs as in a release pipeline (``IMGFORGE_PUSH=release``)
and must still refuse to push the example's loopback-registry image.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgforge import matrix
from imgforge.config import load_catalog

pytestmark = pytest.mark.docker


def github_site_commands(helpers) -> list[str]:
    job = helpers.load_yaml((helpers.repo / ".github/workflows/sites.yml").read_text())["jobs"]["site"]
    runs = [s["run"] for s in job["steps"] if "run" in s and "if" not in s]
    return [r for r in runs if not r.startswith("pip install")]


def gitlab_site_commands(helpers) -> list[str]:
    job = helpers.load_yaml(matrix.gitlab_site_job())[".imgforge-site"]
    assert [line for line in job["before_script"] if not line.startswith("pip install")] == []
    return list(job["script"])


def run_job(commands: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    script = "set -eo pipefail\n" + "\n".join(commands) + "\n"  # the shell options both runners use
    return subprocess.run(
        ["bash", "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def guard_path(tmp_path: Path) -> Path:
    """apt-get, debootstrap and sudo that refuse: a job bootstrapping here would leave loopback."""
    bin_dir = tmp_path / "guard-bin"
    bin_dir.mkdir()
    for name in ("apt-get", "debootstrap", "sudo"):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\necho 'test guard: the site job ran {name}' >&2\nexit 97\n")
        tool.chmod(0o755)
    return bin_dir


def test_the_site_job_builds_and_tests_the_example_site(helpers, docker_client, debian_base, nginx_base, tmp_path):
    from imgforge.verify.state import last_result

    catalog = load_catalog(helpers.repo)
    site = catalog.site("example")
    env = {
        **os.environ,
        "PATH": f"{guard_path(tmp_path)}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SITE": site.name,
        "IMAGE": site.reference,
        "BASE": catalog.profile(site).base_image,
    }
    env.pop("IMGFORGE_PUSH", None)
    # The bases exist (fixtures above), so the job's own check must agree and skip the bootstrap.
    status = subprocess.run(["imgforge", "base", "status", "--quiet"], env=env, capture_output=True, text=True)
    assert status.returncode == 0, status.stdout + status.stderr

    github = github_site_commands(helpers)
    assert github == ['imgforge build "$SITE" --test']
    proc = run_job(github, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    image = docker_client.images.get(site.reference)
    record = last_result(image.id)
    assert record is not None and record["ok"] is True, record

    gitlab = gitlab_site_commands(helpers)
    assert 'imgforge build "$SITE" --test' in gitlab
    proc = run_job(gitlab, {**env, "IMGFORGE_PUSH": "release"})  # as in a release tag's pipeline
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert f"{site.reference} is a local-only image: not pushed" in proc.stdout
