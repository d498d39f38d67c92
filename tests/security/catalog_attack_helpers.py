"""Shared by the catalog and git attack tests: the real CLI run in-process, and catalogs to attack.

The catalog is a copy of the golden one (tests/core/golden/catalog) whose sites serve the example
content, so a value that gets through validation renders to files comparable with the golden ones.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import tomlkit

from tests.conftest import run_main

REPO = Path(__file__).resolve().parents[2]
cli = run_main  # the one in-process CLI runner (tests/conftest.py), under the name these tests use
GOLDEN = REPO / "tests" / "core" / "golden"
EXAMPLE_SITE = REPO / "examples" / "example-site"
VARIANTS = ("alpine-spa", "alpine-404", "debian-spa", "debian-404", "prebuilt-spa", "prebuilt-404")


def golden_catalog(dest: Path) -> Path:
    """A copy of the golden catalog at ``dest`` whose sites use the example content."""
    shutil.copytree(GOLDEN / "catalog", dest)
    for path in (dest / "sites").glob("*.toml"):
        edit_toml(path, "source.path", str(EXAMPLE_SITE))
    return dest


def edit_toml(path: Path, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a TOML file (tables are created); ``None`` deletes the key."""
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    *tables, key = dotted.split(".")
    node: Any = doc
    for name in tables:
        if name not in node:
            node[name] = tomlkit.table()
        node = node[name]
    if value is None:
        node.pop(key, None)
    else:
        node[key] = value
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")


def assert_one_error_line(code: int, out: str, err: str, exit_code: int = 3) -> None:
    """The documented failure shape: the exit code, nothing on stdout, one ``error:`` line."""
    assert code == exit_code, (code, out, err)
    assert out == "", out
    assert err.startswith("error: ") and err.endswith("\n"), err
    assert len(err.splitlines()) == 1 and "\x00" not in err, repr(err)


def old_site_repo(path: Path, server_lines: str = "") -> Path:
    """A root-nginx site repository as ``imgforge migrate`` reads one (a git work tree, no remote)."""
    (path / "www-data").mkdir(parents=True)
    (path / "www-data" / "index.html").write_text("hi\n")
    (path / "nginx.conf").write_text(
        "events {}\nhttp {\n  server {\n    listen 80;\n    root /usr/share/nginx/html;\n"
        f"    try_files $uri $uri/ =404;\n{server_lines}  }}\n}}\n"
    )
    (path / "Dockerfile").write_text(
        "FROM nginx\nCOPY nginx.conf /etc/nginx/nginx.conf\nCOPY www-data/ /usr/share/nginx/html/\n"
    )
    subprocess.run(["git", "init", "-q", str(path)], check=True, capture_output=True)
    return path
