"""Attacks through links in the content folder: a link to a left-out file must not ship its bytes.

The left-out rule (``render.is_hidden``: dotfiles, server-side source and secrets) applies to what a
content path is. Each test checks both places bytes can leave by: the folder ``render`` writes and
the tar stream ``build`` hands the engine.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from imgforge import config, render
from imgforge.errors import ContentMissing

SECRET = b"SMTP_PASSWORD=hunter2-do-not-ship"


def _render(make_catalog, content: Path, out: Path) -> tuple[render.Context, bytes]:
    """Render the site into ``out``; return the listing and every byte the image could get."""
    catalog = config.load_catalog(
        make_catalog({"s": {"source": {"path": str(content.parent), "content_dir": content.name}}})
    )
    rendered, written = render.render_site(catalog, catalog.site("s"), out)
    on_disk = b"".join(p.read_bytes() for p in written.rglob("*") if p.is_file())
    return rendered, on_disk + b"".join(render.context_stream(rendered))


def _content(build_file_tree, tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    return build_file_tree(tmp_path / "repo" / "www-data", {"index.html": "<h1>hi</h1>\n", **files})


@pytest.mark.parametrize(
    ("name", "target"),
    [("page.html", ".env"), ("a.txt", "config.php"), ("robots.txt", ".git/config"), ("img/logo.png", "../deploy.key")],
)
def test_symlink_to_a_left_out_file_is_left_out(make_catalog, build_file_tree, tmp_path, name, target):
    content = _content(
        build_file_tree,
        tmp_path,
        {".env": SECRET, "config.php": SECRET, ".git/config": SECRET, "deploy.key": SECRET, "img/real.png": b"\x89PNG"},
    )
    (content / name).symlink_to(target)
    rendered, shipped = _render(make_catalog, content, tmp_path / "ctx")
    assert name in rendered.left_out
    assert name not in rendered.content_files
    assert SECRET not in shipped


def test_symlink_chain_ending_at_a_dotfile_is_left_out(make_catalog, build_file_tree, tmp_path):
    content = _content(build_file_tree, tmp_path, {".env": SECRET})
    (content / "b.html").symlink_to(".env")
    (content / "a.html").symlink_to("b.html")
    rendered, shipped = _render(make_catalog, content, tmp_path / "ctx")
    assert {"a.html", "b.html"} <= set(rendered.left_out)
    assert SECRET not in shipped


@pytest.mark.parametrize("hidden", [".env", "mail/send.php", ".git/objects/ab/cdef"])
def test_hard_link_to_a_left_out_file_is_left_out(make_catalog, build_file_tree, tmp_path, hidden):
    content = _content(build_file_tree, tmp_path, {hidden: SECRET})
    os.link(content / hidden, content / "innocent.html")
    rendered, shipped = _render(make_catalog, content, tmp_path / "ctx")
    assert "innocent.html" in rendered.left_out
    assert "innocent.html" not in rendered.content_files
    assert SECRET not in shipped


def test_symlink_to_a_served_file_is_still_served(make_catalog, build_file_tree, tmp_path):
    """The rule looks at what a path is: an alias of an ordinary page stays an ordinary page."""
    content = _content(build_file_tree, tmp_path, {"docs/guide.html": "<p>guide</p>\n"})
    (content / "guide.html").symlink_to("docs/guide.html")
    os.link(content / "index.html", content / "home.html")
    (content / ".preview.html").symlink_to("index.html")  # a hidden link does not hide its target
    rendered, _ = _render(make_catalog, content, tmp_path / "ctx")
    assert rendered.content_files == ["docs/guide.html", "guide.html", "home.html", "index.html"]
    assert rendered.left_out == [".preview.html"]


def test_symlink_to_a_host_file_stays_an_error(make_catalog, build_file_tree, tmp_path):
    content = _content(build_file_tree, tmp_path, {})
    (content / "passwd.txt").symlink_to("/etc/passwd")
    root = make_catalog({"s": {"source": {"path": str(content.parent)}}})
    proc = subprocess.run(
        [sys.executable, "-m", "imgforge", "render", "s", "--root", str(root), "--out", str(tmp_path / "ctx")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 4
    assert proc.stderr.count("\n") == 1
    assert "links outside the content folder" in proc.stderr
    assert "passwd.txt" in proc.stderr
    assert not (tmp_path / "ctx").exists()


def test_hidden_symlink_to_a_host_file_stays_an_error(make_catalog, build_file_tree, tmp_path):
    """Left out or not, a link out of the folder is a mistake (or an attack) the author must see."""
    content = _content(build_file_tree, tmp_path, {})
    (content / ".ssh-key").symlink_to("/etc/shadow")
    with pytest.raises(ContentMissing, match="links outside the content folder"):
        _render(make_catalog, content, tmp_path / "ctx")


def test_symlinked_folder_into_a_dot_folder_is_refused(make_catalog, build_file_tree, tmp_path):
    content = _content(build_file_tree, tmp_path, {".git/config": SECRET})
    (content / "assets").symlink_to(".git")
    with pytest.raises(ContentMissing, match="symlinked folder"):
        _render(make_catalog, content, tmp_path / "ctx")


def test_left_out_links_are_listed_by_the_cli(make_catalog, build_file_tree, tmp_path):
    content = _content(build_file_tree, tmp_path, {".env": SECRET})
    (content / "page.html").symlink_to(".env")
    root = make_catalog({"s": {"source": {"path": str(content.parent)}}})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "imgforge",
            "render",
            "s",
            "--root",
            str(root),
            "--json",
            "--out",
            str(tmp_path / "ctx"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    assert json.loads(proc.stdout)["left_out"] == [".env", "page.html"]
    with tarfile.open(fileobj=io.BytesIO(b"".join(_tar_of(root)))) as tar:
        assert "html/page.html" not in tar.getnames()


def _tar_of(root: Path) -> list[bytes]:
    catalog = config.load_catalog(root)
    return list(render.context_stream(render.prepare(catalog, catalog.site("s"))))
