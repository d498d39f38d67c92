"""The layering of the package, checked on its import graph: data flows one way.

Foundations (one of each tool) < the catalog and formats < libraries (datasource, manager,
platform, build, verify, audit) < workers (the loops that combine libraries) < the CLI. A module
may import its own rank or lower; nothing imports the CLI; the datasource (registry), the manager
(gitops) and the platform (forge) never import each other. CONTRIBUTING.md draws the same picture.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "imgforge"

RANKS = {
    # foundations: one of each tool
    "errors": 0, "_fs": 0, "_git": 0, "_http": 0, "_scrub": 0, "image_ref": 0, "engine": 0, "_resources": 0,
    "_deadline": 0, "_stream": 0,
    # the catalog, content and the file formats we read and write
    "config": 1, "content": 1, "listing": 1, "hashcache": 1, "image": 1, "signing": 1,
    "content_manifest": 1, "templating": 1, "build_context": 1,
    # libraries: datasource (registry), manager (gitops), platform (forge), build, verify, audit, CI
    "render": 2, "build": 2, "oci": 2, "baseimage": 2, "verify": 2, "registry": 2, "gitops": 2, "forge": 2,
    "audit": 2, "matrix": 2, "content_image": 2,
    # workers: the loops that combine the libraries
    "release": 3, "release_oci": 3, "base_update": 3, "evidence": 3, "pr_body": 3, "update": 3, "adopt": 3,
    "proof": 3,
    # the command line
    "cli": 4, "__main__": 5,
}  # fmt: skip
APART = ({"registry", "gitops", "forge"}, {"verify", "registry"}, {"verify", "gitops"}, {"verify", "forge"})


def _top(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def _imports() -> list[tuple[str, str, str]]:
    """(importing file, its top-level module, imported top-level module) for every imgforge import."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "imgforge":
                targets = [f"imgforge.{a.name}" for a in node.names] if node.module == "imgforge" else [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "imgforge"]
            out += [(str(rel), _top(module), _top(t)) for t in targets if _top(t) != _top(module)]
    return out


def test_every_module_has_a_rank():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    tops -= {"__init__", "__pycache__", "_templates"}
    assert sorted(tops - set(RANKS)) == [], "give the new module a rank here and in CONTRIBUTING.md"


def test_data_flows_one_way():
    upward = [f"{f} imports {t} (rank {RANKS[t]} > {RANKS[m]})" for f, m, t in _imports() if RANKS[t] > RANKS[m]]
    assert upward == []


def test_datasource_manager_and_platform_stay_apart():
    crossing = [f"{f} imports {t}" for f, m, t in _imports() for pair in APART if {m, t} <= pair]
    assert crossing == []


@pytest.mark.parametrize(
    ("module", "never"),
    [
        ("imgforge.gitops", ("imgforge.registry", "imgforge.forge", "imgforge.release", "imgforge.verify")),
        ("imgforge.registry", ("imgforge.gitops", "imgforge.forge", "imgforge.config", "docker")),
        ("imgforge.forge", ("imgforge.gitops", "imgforge.registry", "imgforge.config")),
        ("imgforge.cli", ("docker", "testcontainers", "jinja2", "ruamel", "imgforge.registry", "imgforge.gitops")),
    ],
)
def test_importing_a_package_loads_nothing_above_or_beside_it(module, never):
    """What ``import`` really loads (package faces re-export; a stray import there would show)."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert (
        sorted(
            m
            for m in loaded
            if m.split(".")[0] in {n.split(".")[0] for n in never}
            and any(m == n or m.startswith(n + ".") for n in never)
        )
        == []
    )


def test_every_error_class_lives_in_errors_py():
    """Error classes are found in one place: an ImgforgeError subclass defined elsewhere is a second tree."""
    import imgforge.errors as errors

    known = {name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, Exception)}
    elsewhere = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id in known for b in node.bases):
                elsewhere.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    assert elsewhere == []


def test_the_cli_resolves_no_digest_itself():
    """Asking the registry for a tag's digest and planning with it is work (``update.plan_deploy``);
    a command parses flags, makes one call and prints."""
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in sorted((PACKAGE / "cli").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if (isinstance(node, ast.Attribute) and node.attr == "resolve_digest")
        or (isinstance(node, ast.Name) and node.id == "resolve_digest")
        or (isinstance(node, ast.ImportFrom) and any(a.name == "resolve_digest" for a in node.names))
    ]
    assert found == []
