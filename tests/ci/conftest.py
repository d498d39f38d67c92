"""Real git repositories holding small catalogs, for ``imgforge matrix --changed-since``.

Commit dates are set explicitly (one hour apart) because the git-source check compares commit
dates with the merge base's date, and commits made within one second would tie.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
_EPOCH = 1_780_000_000


class GitRepo:
    """A work tree with helpers to write files and commit them at a controlled time."""

    def __init__(self, path: Path, build_file_tree: Callable, start: int = 0):
        self.path = path
        self._tree = build_file_tree
        self._tick = start  # hours after _EPOCH of the next git call
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        self._tick += 1
        when = f"{_EPOCH + 3600 * self._tick} +0000"
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid",
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_DATE": when,
        }
        return subprocess.run(
            ["git", *args], cwd=self.path, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def jump(self, hours: int) -> None:
        """Move this repository's clock, e.g. ahead of another repository's commits."""
        self._tick += hours

    def write(self, files: dict[str, str]) -> None:
        self._tree(self.path, files)

    def commit(self, message: str, files: dict[str, str] | None = None) -> str:
        if files:
            self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def site_toml(name: str, source: str) -> str:
    return f'image = "registry.example.invalid/sites/{name}"\ntag = "v1.0.0"\nprofile = "prebuilt"\n{source}'


def local_source(name: str) -> str:
    return f'[source]\npath = "content/{name}"\n'


def load_yaml(text: str):
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def check_schema(path: Path, schema: str) -> subprocess.CompletedProcess:
    """check-jsonschema against one of its vendored schemas (offline: no schema download)."""
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, "--no-cache", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def helpers():
    """The helper functions above, for test modules (importlib mode gives them no import path)."""
    return SimpleNamespace(
        site_toml=site_toml, local_source=local_source, load_yaml=load_yaml, check_schema=check_schema, repo=REPO
    )


@pytest.fixture
def git_repo(tmp_path, build_file_tree) -> Callable[[str], GitRepo]:
    return lambda name="repo", start=0: GitRepo(tmp_path / name, build_file_tree, start)


@pytest.fixture
def catalog_repo(git_repo) -> GitRepo:
    """Three local sites (alpha, beta, gamma) with their content, committed once."""
    repo = git_repo("catalog")
    files = {"imgforge.toml": "[defaults]\nport = 8080\n", "templates/nginx.conf.j2": "server {}\n"}
    for name in ("alpha", "beta", "gamma"):
        files[f"sites/{name}.toml"] = site_toml(name, local_source(name))
        files[f"content/{name}/www-data/index.html"] = f"<h1>{name}</h1>\n"
    repo.commit("catalog", files)
    return repo
