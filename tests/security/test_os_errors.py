"""Attacks through the operating system: every OS error is one ``error:`` line and its exit code.

The tests run as root, so a mode-000 file proves nothing; each one builds a real condition a
root process meets too: a FIFO, a dangling or looping link, a folder deeper than PATH_MAX, a file
name that is not UTF-8, a file that changes or disappears between listing and tarring, an
``--out`` under a file or on a filesystem that refuses writes.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgforge import config, render
from imgforge.errors import EXIT_NOT_FOUND, EXIT_USAGE, ContentMissing
from imgforge.gitops import branch
from tests.conftest import run_process


def _one_error_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def _catalog(
    make_catalog, build_file_tree, tmp_path: Path, files: dict[str, str | bytes] | None = None
) -> tuple[Path, Path]:
    """A catalog root and its site's content folder."""
    repo = build_file_tree(
        tmp_path / "repo",
        {"www-data/index.html": "<h1>hi</h1>\n", **{f"www-data/{k}": v for k, v in (files or {}).items()}},
    )
    return make_catalog({"s": {"source": {"path": str(repo)}}}), repo / "www-data"


def test_fifo_in_the_content_folder_is_an_error_not_a_hang(make_catalog, build_file_tree, tmp_path):
    root, content = _catalog(make_catalog, build_file_tree, tmp_path)
    os.mkfifo(content / "feed.xml")
    proc = run_process("render", "s", "--root", str(root), "--out", str(tmp_path / "ctx"))
    _one_error_line(proc, EXIT_NOT_FOUND, f"'{content / 'feed.xml'}'", "FIFO")
    assert not (tmp_path / "ctx").exists()


def test_dangling_symlink_is_an_error_naming_it(make_catalog, build_file_tree, tmp_path):
    root, content = _catalog(make_catalog, build_file_tree, tmp_path)
    (content / "about.html").symlink_to("pages/about.html")
    proc = run_process("render", "s", "--root", str(root), "--out", str(tmp_path / "ctx"))
    _one_error_line(proc, EXIT_NOT_FOUND, f"'{content / 'about.html'}' is a dangling symlink")


def test_symlink_loop_is_an_error_naming_it(make_catalog, build_file_tree, tmp_path):
    root, content = _catalog(make_catalog, build_file_tree, tmp_path)
    (content / "a.html").symlink_to("b.html")
    (content / "b.html").symlink_to("a.html")
    proc = run_process("render", "s", "--root", str(root), "--out", str(tmp_path / "ctx"))
    _one_error_line(proc, EXIT_NOT_FOUND, f"'{content / 'a.html'}'")


def test_folder_deeper_than_path_max_is_an_error_not_a_silent_gap(make_catalog, build_file_tree, tmp_path):
    """os.walk skips a folder it cannot list unless told otherwise: its pages would just be missing."""
    root, content = _catalog(make_catalog, build_file_tree, tmp_path)
    fd = os.open(content, os.O_RDONLY)
    try:
        for _ in range(20):  # 20 x 250 characters: past PATH_MAX (4096), built one level at a time
            os.mkdir("d" * 250, dir_fd=fd)
            deeper = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        with open(os.open("page.html", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as fh:
            fh.write("<p>deep</p>\n")
    finally:
        os.close(fd)
    proc = run_process("render", "s", "--root", str(root), "--out", str(tmp_path / "ctx"))
    _one_error_line(proc, EXIT_NOT_FOUND, "cannot read folder", "File name too long")


def test_file_name_that_is_not_utf8_is_rejected_naming_it_escaped(make_catalog, build_file_tree, tmp_path):
    root, content = _catalog(make_catalog, build_file_tree, tmp_path)
    (content / os.fsdecode(b"caf\xe9.html")).write_bytes(b"<p>menu</p>\n")
    proc = run_process("render", "s", "--root", str(root), "--out", str(tmp_path / "ctx"))
    _one_error_line(proc, EXIT_NOT_FOUND, "caf\\xe9.html", "not valid UTF-8")
    assert not (tmp_path / "ctx").exists()


def test_file_name_with_a_newline_keeps_the_error_on_one_line(make_catalog, build_file_tree, tmp_path):
    root, content = _catalog(make_catalog, build_file_tree, tmp_path)
    os.mkfifo(content / "x\nerror: forged second line.html")
    proc = run_process("render", "s", "--root", str(root), "--out", str(tmp_path / "ctx"))
    _one_error_line(proc, EXIT_NOT_FOUND, "x\\nerror: forged second line.html")
    catalog = config.load_catalog(root)  # the library's message itself is one line, not only the CLI's
    with pytest.raises(ContentMissing) as err:
        render.prepare(catalog, catalog.site("s"))
    assert "\n" not in str(err.value)
    assert "x\\nerror: forged second line.html" in str(err.value)


@pytest.mark.parametrize("change", ["vanishes", "grows", "becomes-a-fifo"])
def test_content_file_that_changes_between_listing_and_tarring_is_an_error(
    make_catalog, build_file_tree, tmp_path, change
):
    root, content = _catalog(make_catalog, build_file_tree, tmp_path, {"news.html": "<p>old</p>\n"})
    catalog = config.load_catalog(root)
    rendered = render.prepare(catalog, catalog.site("s"))
    page = content / "news.html"
    page.unlink()
    if change == "vanishes":
        with pytest.raises(ContentMissing, match="news.html"):
            rendered.digest()
    elif change == "grows":
        page.write_text("<p>new and longer</p>\n")
    else:
        os.mkfifo(page)
    with _released_if_blocked(page):  # a reader blocked on the FIFO would hang the test: fail instead
        with pytest.raises(ContentMissing, match="news.html"):
            b"".join(render.context_stream(rendered))
        with pytest.raises(ContentMissing, match="news.html"):
            rendered.write(tmp_path / "ctx", catalog.root)
    assert not (tmp_path / "ctx").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@contextlib.contextmanager
def _released_if_blocked(fifo: Path, seconds: float = 10) -> Iterator[None]:
    """Open the FIFO's write end if the body is still running after ``seconds``, then fail the test."""
    done, released = threading.Event(), threading.Event()

    def release() -> None:
        while not done.wait(seconds):
            if stat.S_ISFIFO(os.lstat(fifo).st_mode):
                released.set()
                with open(fifo, "wb"):
                    pass

    threading.Thread(target=release, daemon=True).start()
    try:
        yield
    finally:
        done.set()
    assert not released.is_set(), "reading the content blocked on a FIFO"


def test_content_file_swapped_for_a_link_out_after_listing_sends_none_of_its_bytes(
    make_catalog, build_file_tree, tmp_path
):
    """The engine may be remote: bytes of a file that was not listed must never reach the stream."""
    root, content = _catalog(make_catalog, build_file_tree, tmp_path, {"news.html": "<p>old</p>\n"})
    host_file = build_file_tree(tmp_path, {"host-secret.txt": b"TOPSECRET!\n"}) / "host-secret.txt"  # same size
    catalog = config.load_catalog(root)
    rendered = render.prepare(catalog, catalog.site("s"))
    (content / "news.html").unlink()
    (content / "news.html").symlink_to(host_file)
    sent: list[bytes] = []
    with pytest.raises(ContentMissing, match="news.html"):
        for piece in render.context_stream(rendered):
            sent.append(piece)
    assert b"TOPSECRET" not in b"".join(sent)


def test_content_file_changed_in_place_after_listing_is_an_error(make_catalog, build_file_tree, tmp_path):
    """Same inode, same size, new bytes: the digest would not describe what the image holds."""
    root, content = _catalog(make_catalog, build_file_tree, tmp_path, {"news.html": "<p>old</p>\n"})
    catalog = config.load_catalog(root)
    rendered = render.prepare(catalog, catalog.site("s"))
    page = content / "news.html"
    with open(page, "r+b") as fh:
        fh.write(b"<p>new</p>\n")
    os.utime(page, ns=(0, page.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(ContentMissing, match="changed"):
        b"".join(render.context_stream(rendered))


def test_content_file_rewritten_while_it_is_tarred_is_an_error(make_catalog, build_file_tree, tmp_path):
    """The engine reads the stream slowly: a file rewritten halfway would ship half old, half new."""
    old = b"A" * 5000
    root, content = _catalog(make_catalog, build_file_tree, tmp_path, {"big.html": old})
    catalog = config.load_catalog(root)
    rendered = render.prepare(catalog, catalog.site("s"))
    stream = render.context_stream(rendered, chunk=1000)
    with pytest.raises(ContentMissing, match="big.html"):
        for piece in stream:
            if piece == old[:1000]:  # the first chunk of big.html is out: now the file changes
                with open(content / "big.html", "r+b") as fh:
                    fh.write(b"B" * 5000)
                os.utime(content / "big.html", ns=(0, rendered.listed["big.html"].st_mtime_ns + 1_000_000))


def test_out_below_a_file_is_an_error_line(make_catalog, build_file_tree, tmp_path):
    root, _ = _catalog(make_catalog, build_file_tree, tmp_path)
    build_file_tree(tmp_path, {"notes.txt": "mine\n"})
    proc = run_process("render", "s", "--root", str(root), "--out", str(tmp_path / "notes.txt" / "ctx"))
    _one_error_line(proc, EXIT_USAGE, "cannot write", f"'{tmp_path / 'notes.txt' / 'ctx'}'")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_out_too_deep_for_the_content_is_an_error_line_and_leaves_nothing(make_catalog, build_file_tree, tmp_path):
    """The content lists fine, but under a deep --out its paths pass PATH_MAX while being written."""
    deep_page = "/".join(["p" * 240] * 5) + "/page.html"  # about 1,200 characters
    root, _ = _catalog(make_catalog, build_file_tree, tmp_path, {deep_page: "<p>deep</p>\n"})
    parent = tmp_path.joinpath(*["o" * 240] * 12)  # about 2,900 characters: together past 4,096
    parent.mkdir(parents=True)
    proc = run_process("render", "s", "--root", str(root), "--out", str(parent / "ctx"))
    _one_error_line(proc, EXIT_USAGE, "cannot write", "File name too long")
    assert os.listdir(parent) == []  # the staging folder is gone


def test_out_on_a_filesystem_that_refuses_writes_is_an_error_line(make_catalog, build_file_tree, tmp_path):
    """sysfs refuses new folders even to root."""
    root, _ = _catalog(make_catalog, build_file_tree, tmp_path)
    proc = run_process("render", "s", "--root", str(root), "--out", "/sys/imgforge-test-ctx")
    _one_error_line(proc, EXIT_USAGE, "cannot write", "'/sys/imgforge-test-ctx'")


def test_out_path_with_markup_and_emoji_codes_is_printed_exactly(make_catalog, build_file_tree, tmp_path):
    root, _ = _catalog(make_catalog, build_file_tree, tmp_path, {".notes [/] :cd: [red]x": "left out\n"})
    out = tmp_path / "[bold]x[/] :cd: [/]"
    proc = run_process("render", "s", "--root", str(root), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout
    assert ".notes [/] :cd: [red]x" in proc.stderr  # the left-out list
    refused = run_process("render", "s", "--root", str(root), "--out", str(out.parent))  # the folder holds files
    assert str(out.parent) in refused.stderr
    assert refused.returncode == 10


def test_error_line_holds_a_path_with_a_newline_on_one_line(tmp_path):
    root = tmp_path / "cat\nerror: forged"
    proc = run_process("sites", "--root", str(root))
    _one_error_line(proc, 3, "cat\\nerror: forged")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_adds_the_traceback_and_keeps_the_exit_code(make_catalog, build_file_tree, tmp_path, how):
    root, content = _catalog(make_catalog, build_file_tree, tmp_path)
    os.mkfifo(content / "feed.xml")
    args = ["render", "s", "--root", str(root), "--out", str(tmp_path / "ctx")]
    proc = run_process("--debug", *args) if how == "flag" else run_process(*args, env={"IMGFORGE_DEBUG": "1"})
    assert proc.returncode == EXIT_NOT_FOUND, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ContentMissing" in proc.stderr
    assert proc.stderr.rstrip("\n").splitlines()[-1].startswith("error: ")


def test_dirty_work_tree_message_names_each_file_whole(tmp_path):
    """``git status --porcelain`` starts with a space for an unstaged change: no character may be lost."""

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "values.yaml").write_text("a: 1\n")
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "init")
    (tmp_path / "values.yaml").write_text("a: 2\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [x]\n")
    with pytest.raises(branch.DirtyWorkTree) as err:
        branch.require_clean(branch.Git(tmp_path))
    assert "(kustomization.yaml, values.yaml)" in str(err.value)
