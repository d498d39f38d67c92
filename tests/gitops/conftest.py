"""Fixtures for the GitOps tests: a generated fixture repo (a real git repo) and a matching catalog.

The repo is generated once per session and copied per test, so each test may write to its copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _load_generator():
    spec = importlib.util.spec_from_file_location("imgforge_tests_gitops_repo_gen", HERE / "gitops_repo_gen.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="session")
def repo_gen():
    return gen


@pytest.fixture(scope="session")
def _template(tmp_path_factory) -> Path:
    if shutil.which("kubectl") is None:
        pytest.fail("the GitOps tests need kubectl (kubectl kustomize) on PATH")
    root = tmp_path_factory.mktemp("gitops-template")
    gen.make_repo(root)
    return root


@pytest.fixture
def gitops_repo(_template, tmp_path) -> Path:
    """A fresh copy of the fixture GitOps repo (with .git and its bare remote)."""
    root = tmp_path / "fx"
    shutil.copytree(_template, root, symlinks=True)
    repo = root / "gitops"
    subprocess.run(["git", "remote", "set-url", "origin", str(root / "gitops-remote.git")], cwd=repo, check=True)
    return repo


@pytest.fixture
def catalog(make_catalog):
    """A catalog with one site per fixture app (tag v0.0.3, the fixture repo runs v0.0.2)."""
    from imgforge.config import load_catalog

    sites = {
        app.removesuffix("-site"): {"image": gen.image_of(app), "tag": "v0.0.3", "gitops": {"app": app}}
        for app in gen.SHAPES
    }
    sites["nowhere"] = {"image": "cr.pcfae.com/prplanit/nowhere.com", "tag": "v0.0.3", "gitops": {"app": "alpha-sight"}}
    return load_catalog(make_catalog(sites=sites))


def snapshot(root: Path) -> dict[str, str]:
    """Hash of every file under ``root`` (work tree, .git index and the outside base included)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "objects" not in path.parts and "logs" not in path.parts:
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def git_status(repo: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=repo, check=True, capture_output=True, text=True).stdout


def render(overlay: Path) -> list[dict]:
    import yaml

    out = subprocess.run(["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def deployment(objects: list[dict], name: str) -> dict:
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def yamllint(repo: Path, paths: list[Path]) -> str:
    """yamllint --strict with the repo's own config; returns its report ('' when clean)."""
    proc = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(repo / ".yamllint"), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout + proc.stderr if proc.returncode else ""


@pytest.fixture(scope="session")
def fx():
    """The helpers above, for test modules (importlib import mode cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        snapshot=snapshot, git_status=git_status, render=render, deployment=deployment, yamllint=yamllint, gen=gen
    )
