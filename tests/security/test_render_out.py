"""Attacks on where render writes: nothing imgforge writes may destroy a folder it did not make.

Each test runs the real CLI (or the library call build uses) against a folder that must survive,
and compares every file, byte and mode before and after.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from imgforge import config, render
from imgforge.errors import EXIT_REFUSED
from tests.conftest import run_process

MARKER = ".imgforge-render"


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every entry under ``folder`` (itself included): mode and bytes, link target or nothing."""
    shot: dict[str, tuple[int, bytes | str | None]] = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        st = path.lstat()
        data: bytes | str | None = None
        if stat.S_ISREG(st.st_mode):
            data = path.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            data = os.readlink(path)
        shot[path.relative_to(folder).as_posix()] = (st.st_mode, data)
    return shot


def _site(make_catalog, build_file_tree, tmp_path: Path) -> tuple[Path, Path]:
    """A catalog root and the site repo holding its content (``www-data``)."""
    repo = build_file_tree(tmp_path / "site-repo", {"www-data/index.html": "<h1>hi</h1>\n", "README.md": "the site\n"})
    return make_catalog({"s": {"source": {"path": str(repo)}}}), repo


def _plant_marker(folder: Path) -> None:
    """What a previous render leaves behind: the marker that lets a new render replace the folder."""
    (folder / MARKER).write_text(render.MARKER_TEXT, encoding="utf-8")


def _refused(proc: subprocess.CompletedProcess[str], why: str) -> None:
    assert proc.returncode == EXIT_REFUSED, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert why in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "contents", [{"notes.txt": "mine\n", "sub/photo.raw": b"\x00\x01"}, {}], ids=["with-files", "empty"]
)
def test_render_onto_a_folder_it_did_not_make_is_refused_and_untouched(
    make_catalog, build_file_tree, tmp_path, contents
):
    root, _ = _site(make_catalog, build_file_tree, tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    build_file_tree(victim, contents)
    before = _snapshot(victim)
    proc = run_process("render", "s", "--root", str(root), "--out", str(victim))
    _refused(proc, "imgforge did not render")
    assert f"'{victim}'" in proc.stderr  # the path exactly, quoted
    assert _snapshot(victim) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog", "site-repo", "victim"]  # no staging left


def test_build_with_out_dir_onto_a_folder_it_did_not_make_is_refused(make_catalog, build_file_tree, tmp_path):
    """``build_site(out_dir=...)`` keeps the same rule, and says so before asking the engine anything.

    It runs in a process whose DOCKER_HOST answers nothing: the refusal must come first.
    """
    root, _ = _site(make_catalog, build_file_tree, tmp_path)
    victim = build_file_tree(tmp_path / "victim", {"keep.txt": "mine\n"})
    before = _snapshot(victim)
    script = (
        "import sys\nfrom pathlib import Path\nfrom imgforge import build, config\n"
        "catalog = config.load_catalog(sys.argv[1])\n"
        "build.build_site(catalog, catalog.site('s'), out_dir=Path(sys.argv[2]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(root), str(victim)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
    )
    assert proc.returncode != 0
    assert proc.stderr.rstrip().splitlines()[-1].startswith("imgforge.errors.Refused: "), proc.stderr
    assert "imgforge did not render" in proc.stderr
    assert _snapshot(victim) == before


@pytest.mark.parametrize("fake", ["empty-file", "other-text", "symlink-to-a-marker", "folder"])
def test_render_onto_a_folder_with_a_fake_marker_is_refused(make_catalog, build_file_tree, tmp_path, fake):
    """Only the exact marker file a render writes counts; a name alone does not."""
    root, _ = _site(make_catalog, build_file_tree, tmp_path)
    victim = build_file_tree(tmp_path / "victim", {"keep.txt": "mine\n"})
    marker = victim / MARKER
    if fake == "empty-file":
        marker.write_text("")
    elif fake == "other-text":
        marker.write_text(render.MARKER_TEXT.upper())
    elif fake == "symlink-to-a-marker":
        real = tmp_path / "real-marker"
        real.write_text(render.MARKER_TEXT)
        marker.symlink_to(real)
    else:
        marker.mkdir()
    before = _snapshot(victim)
    _refused(run_process("render", "s", "--root", str(root), "--out", str(victim)), "imgforge did not render")
    assert _snapshot(victim) == before


def test_render_onto_an_existing_file_is_refused(make_catalog, build_file_tree, tmp_path):
    root, _ = _site(make_catalog, build_file_tree, tmp_path)
    victim = build_file_tree(tmp_path, {"report.pdf": b"%PDF-1.7 mine"}) / "report.pdf"
    proc = run_process("render", "s", "--root", str(root), "--out", str(victim))
    _refused(proc, "is a file, not a folder")
    assert victim.read_bytes() == b"%PDF-1.7 mine"


def test_render_into_the_content_folder_is_refused(make_catalog, build_file_tree, tmp_path):
    root, repo = _site(make_catalog, build_file_tree, tmp_path)
    before = _snapshot(repo)
    proc = run_process("render", "s", "--root", str(root), "--out", str(repo / "www-data" / "ctx"))
    _refused(proc, "content folder")
    assert _snapshot(repo) == before


def test_render_over_the_site_repo_holding_a_planted_marker_is_refused(make_catalog, build_file_tree, tmp_path):
    """A site author controls the repo around the content: a marker there must not make it ours."""
    root, repo = _site(make_catalog, build_file_tree, tmp_path)
    _plant_marker(repo)
    before = _snapshot(repo)
    proc = run_process("render", "s", "--root", str(root), "--out", str(repo))
    _refused(proc, "content folder")
    assert _snapshot(repo) == before


@pytest.mark.parametrize("where", ["root", "parent"])
def test_render_over_the_catalog_or_a_folder_above_it_is_refused(make_catalog, build_file_tree, tmp_path, where):
    """Even with a marker in it (copied from a render, say), the catalog is never replaced."""
    root, _ = _site(make_catalog, build_file_tree, tmp_path)
    target = root if where == "root" else root.parent
    _plant_marker(target)
    before = _snapshot(target)
    proc = run_process("render", "s", "--root", str(root), "--out", str(target))
    _refused(proc, "catalog")
    assert _snapshot(target) == before


def test_render_onto_the_filesystem_root_is_refused(make_catalog, build_file_tree, tmp_path):
    root, _ = _site(make_catalog, build_file_tree, tmp_path)
    before = sorted(os.listdir("/"))
    _refused(run_process("render", "s", "--root", str(root), "--out", "/"), "catalog")
    assert sorted(os.listdir("/")) == before


def test_a_previous_render_is_replaced_whole_and_nothing_is_left_beside_it(make_catalog, build_file_tree, tmp_path):
    root, repo = _site(make_catalog, build_file_tree, tmp_path)
    out = tmp_path / "out" / "ctx"
    assert run_process("render", "s", "--root", str(root), "--out", str(out)).returncode == 0
    assert (out / MARKER).read_text(encoding="utf-8") == render.MARKER_TEXT
    (out / "scratch.txt").write_text("added by hand\n")
    (repo / "www-data" / "index.html").write_text("<h1>two</h1>\n")
    proc = run_process("render", "s", "--root", str(root), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "html" / "index.html").read_text() == "<h1>two</h1>\n"
    assert not (out / "scratch.txt").exists()
    assert os.listdir(out.parent) == ["ctx"]  # no .staging-* or .old-* beside it


def test_a_failed_replace_keeps_the_previous_render(make_catalog, build_file_tree, tmp_path):
    root, repo = _site(make_catalog, build_file_tree, tmp_path)
    out = tmp_path / "out" / "ctx"
    assert run_process("render", "s", "--root", str(root), "--out", str(out)).returncode == 0
    before = _snapshot(out)
    os.mkfifo(repo / "www-data" / "feed.xml")  # the next render fails while it lists the content
    proc = run_process("render", "s", "--root", str(root), "--out", str(out))
    assert proc.returncode == 4
    assert "feed.xml" in proc.stderr
    assert _snapshot(out) == before
    assert os.listdir(out.parent) == ["ctx"]


def test_the_marker_never_reaches_the_image(make_catalog, build_file_tree, tmp_path):
    """The engine gets the tar stream: it holds no marker, and the digest does not count it."""
    import io
    import tarfile

    root, _ = _site(make_catalog, build_file_tree, tmp_path)
    catalog = config.load_catalog(root)
    rendered, out = render.render_site(catalog, catalog.site("s"), tmp_path / "ctx")
    assert (out / MARKER).is_file()
    with tarfile.open(fileobj=io.BytesIO(b"".join(render.context_stream(rendered)))) as tar:
        assert MARKER not in tar.getnames()
    assert MARKER not in rendered.files
