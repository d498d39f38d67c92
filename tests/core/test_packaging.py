"""The wheel ships the top-level templates/ and renders from them when installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_templates_and_renders_from_them(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("imgforge-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    shipped = {n.split("/")[-1] for n in names if n.startswith("imgforge/_templates/")}
    assert shipped == {p.name for p in (REPO / "templates").iterdir() if p.is_file()}
    # Rendered from the installed copy (no templates/ folder next to it) it matches the checkout's.
    script = (
        "import sys; from imgforge import matrix, render; d = render.templates_dir(); "
        "from imgforge._resources import templates_dir; job = matrix.gitlab_site_job(); "
        "print(d); sys.exit(0 if '_templates' in str(d) and '_templates' in str(templates_dir()) "
        "and '.imgforge-site:' in job else 1)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in shipped:
        assert (tmp_path / "site" / "imgforge" / "_templates" / name).read_bytes() == (
            REPO / "templates" / name
        ).read_bytes()
