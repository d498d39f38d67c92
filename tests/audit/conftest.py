"""Fixtures of the audit tests; the fixture repos' files live in ``audit_fixture_repos.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# --import-mode=importlib does not put test folders on sys.path; the data module is imported by name.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def site_repo(tmp_path, build_file_tree):
    """``site_repo(FIXED, {"Dockerfile": None, ...})``: a fixture repo with files changed or removed."""
    counter = iter(range(1000))

    def make(base: dict, changes: dict | None = None) -> Path:
        files = {**base, **(changes or {})}
        root = tmp_path / f"repo{next(counter)}"
        root.mkdir()
        return build_file_tree(root, {k: v for k, v in files.items() if v is not None})

    return make
