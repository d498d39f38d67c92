"""Hostile layers and archives: each is refused or contained by the caps, and nothing is written
outside the folder a test hands the reader (every test snapshots the files around it)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
from image_fixtures import LayoutWriter, sha, single, tar_of

from imgforge.image import (
    DEFAULT_LIMITS,
    ImageInvalid,
    ImageRefused,
    LimitExceeded,
    Limits,
    OciLayout,
    read_fs,
    resolve,
)


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def watched(tmp_path):
    """tmp_path holds the layout and a sentinel folder; afterwards only ``allowed`` may have changed."""
    sentinel = tmp_path / "outside"
    sentinel.mkdir()
    before = _snapshot(tmp_path)

    def check(*allowed: str) -> None:
        after = {p for p in _snapshot(tmp_path) if not p.startswith(("layout", *allowed))}
        assert after == {p for p in before if not p.startswith("layout")}
        assert list(sentinel.iterdir()) == []

    return tmp_path, check


def _open(writer: LayoutWriter, *tars: bytes, limits: Limits = DEFAULT_LIMITS, **kw):
    single(writer, *tars, **kw)
    return read_fs(resolve(OciLayout.open_dir(writer.root), limits=limits))


def test_member_climbing_out_is_refused(watched, layout):
    tmp, check = watched
    climb = "../" * 12 + str(tmp / "outside" / "passwd").lstrip("/")
    with pytest.raises(ImageRefused, match=r"climbs out of the image root"):
        _open(layout, tar_of(("file", "etc/ok", b"ok"), ("file", climb, b"root::0:0::/:/bin/sh\n")))
    with pytest.raises(ImageRefused, match=r"climbs out"):
        _open(LayoutWriter(tmp / "layout2"), tar_of(("file", "a/../../x", b"x")))
    check()


def test_absolute_member_stays_inside_the_image(watched, layout):
    tmp, check = watched
    target = str(tmp / "outside" / "abs")
    fs = _open(layout, tar_of(("file", target, b"abs")))
    assert fs.get(target).size == 3
    assert fs.read_bytes(target) == b"abs"
    result = fs.extract("/", tmp / "dest")
    assert (tmp / "dest" / target.lstrip("/")).read_bytes() == b"abs"
    assert result.files == 1
    check("dest")


def test_hard_link_out_of_the_image_is_refused(layout):
    with pytest.raises(ImageRefused, match=r"climbs out"):
        _open(layout, tar_of(("hardlink", "etc/shadow-copy", "../../../../etc/shadow")))


def test_symlink_chain_escape_is_contained(watched, layout):
    tmp, check = watched
    outside = str(tmp / "outside")
    fs = _open(
        layout,
        tar_of(
            ("dir", "srv/"),
            ("dir", "srv/www/"),
            ("file", "srv/www/index.html", b"i"),
            ("symlink", "srv/www/up", "../../../../../../../.."),
            ("symlink", "srv/www/chain", "up" + outside),
            ("symlink", "srv/www/host", outside),
            ("symlink", "srv/www/loop-a", "loop-b"),
            ("symlink", "srv/www/loop-b", "loop-a"),
        ),
        tar_of(("file", "srv/www/host/planted", b"through the link")),
    )
    assert fs.resolve("/srv/www/chain") == outside  # ".." stops at the image root: the image's own path
    assert fs.lookup("/srv/www/chain") is None
    with pytest.raises(ImageRefused, match=r"outside /srv/www"):
        fs.resolve("/srv/www/chain", within="/srv/www")
    with pytest.raises(ImageInvalid, match=r"too many levels of symbolic links"):
        fs.resolve("/srv/www/loop-a")
    # A later layer writing under a lower symlink makes a folder in the image, never follows it.
    assert fs.get("/srv/www/host").is_dir
    assert fs.read_bytes("/srv/www/host/planted") == b"through the link"
    result = fs.extract("/srv/www", tmp / "dest")
    assert sorted(_snapshot(tmp / "dest")) == ["host", "host/planted", "index.html"]
    assert dict(result.skipped) == {
        "/srv/www/up": "link leads outside /srv/www",
        "/srv/www/chain": "link leads outside /srv/www",
        "/srv/www/loop-a": f"{fs.image.describe()}: /srv/www/loop-a: too many levels of symbolic links",
        "/srv/www/loop-b": f"{fs.image.describe()}: /srv/www/loop-b: too many levels of symbolic links",
    }
    check("dest")


def _raw_member(name: str, declared: int, data: bytes = b"") -> bytes:
    info = tarfile.TarInfo(name)
    info.size = declared
    return info.tobuf(format=tarfile.GNU_FORMAT) + data


def test_huge_declared_size_is_refused_before_reading(watched, layout):
    _, check = watched
    tar = _raw_member("big", 1 << 40, b"\0" * 512)  # claims 1 TiB, holds 512 bytes
    with pytest.raises(LimitExceeded, match=r"'big'.*declared size 1099511627776 exceeds the limit max_unpacked_bytes"):
        _open(layout, tar, compress="none", diff_ids=None)
    check()


def _gzip_bomb(path: Path, zeros: int, *, declared: bool) -> bytes:
    """A gzip layer inflating to ``zeros`` bytes (~1000:1), written in chunks so the test stays small."""
    with gzip.open(path, "wb", compresslevel=9) as out:
        if declared:
            out.write(_raw_member("bomb", zeros))
        else:
            out.write(tar_of(("file", "small", b"s")))
        chunk = b"\0" * (1 << 20)
        for _ in range(zeros >> 20):
            out.write(chunk)
    return path.read_bytes()


@pytest.mark.parametrize("declared", [True, False], ids=["file-member", "trailing-padding"])
def test_gzip_bomb_is_stopped_by_the_unpacked_cap(watched, layout, declared):
    tmp, check = watched
    blob = _gzip_bomb(tmp / "outside.gz", 64 << 20, declared=declared)
    (tmp / "outside.gz").unlink()
    assert len(blob) < 1 << 20
    layout.image_of_blob(blob, diff_id=sha(b"never reached"))
    image = resolve(OciLayout.open_dir(layout.root), limits=Limits(max_unpacked_bytes=16 << 20))
    with pytest.raises(LimitExceeded, match=r"max_unpacked_bytes=16777216"):
        read_fs(image)
    check()


def test_entry_count_cap(layout):
    many = tar_of(*[("file", f"f{i}", b"") for i in range(300)])
    with pytest.raises(LimitExceeded, match=r"tar entries exceeds the limit max_entries=200"):
        _open(layout, many, limits=Limits(max_entries=200))


def test_oversized_pax_header_is_refused(layout):
    info = tarfile.TarInfo("x")
    info.pax_headers = {"comment": "A" * (3 << 20)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(LimitExceeded, match=r"a tar member's headers exceeds the limit max_header_bytes=1048576"):
        _open(layout, buf.getvalue())


def test_overlong_path_is_refused(layout):
    with pytest.raises(LimitExceeded, match=r"max_path_bytes=4096"):
        _open(layout, tar_of(("file", "d/" * 2100 + "f", b"")))


def test_blob_longer_than_its_descriptor_is_cut_off(layout):
    tar = tar_of(("file", "f", b"x" * 5000))
    single(layout, tar, compress="none")
    image = resolve(OciLayout.open_dir(layout.root))
    blob = layout.root / "blobs" / "sha256" / image.manifest.layers[0].digest.split(":")[1]
    with open(blob, "ab") as f:  # a source streaming more than the descriptor's size
        f.write(b"\0" * (1 << 20))
    with pytest.raises(ImageInvalid, match=r"more bytes served than the descriptor's size"):
        read_fs(image)


def test_not_a_tar(layout):
    with pytest.raises(ImageInvalid, match=r"(not a tar stream|broken layer stream)"):
        _open(layout, b"this is not a tar archive at all" * 40, compress="none")


def test_truncated_gzip_layer(layout):
    tar = tar_of(("file", "f", os.urandom(20_000)))
    whole = gzip.compress(tar)
    layout.image_of_blob(whole[: len(whole) // 2], diff_id=sha(tar))  # what a broken download looks like
    with pytest.raises(ImageInvalid, match=r"Compressed file ended before the end-of-stream marker"):
        read_fs(resolve(OciLayout.open_dir(layout.root)))


def test_extract_never_writes_outside_dest_even_with_dest_siblings(watched, layout):
    tmp, check = watched
    os.symlink(tmp / "outside", tmp / "dest-link")  # a planted link beside dest is left alone
    fs = _open(layout, tar_of(("dir", "www/"), ("file", "www/a", b"a"), ("symlink", "www/dest-link", "../x")))
    fs.extract("/www", tmp / "dest")
    assert _snapshot(tmp / "dest") == {"a"}
    check("dest")


def test_read_and_extract_caps_leave_nothing_behind(watched, layout):
    tmp, check = watched
    fs = _open(layout, tar_of(("dir", "www/"), ("file", "www/a", b"a" * 700), ("file", "www/b", b"b" * 700)))
    with pytest.raises(LimitExceeded, match=r"1400 bytes of selected files exceeds the limit max_read_bytes=1000"):
        fs.read_files(lambda e: True, max_bytes=1000)
    with pytest.raises(LimitExceeded, match=r"max_extract_bytes=1000"):
        fs.extract("/www", tmp / "dest", max_bytes=1000)
    assert not (tmp / "dest").exists()
    check()


def test_extract_that_fails_verification_leaves_no_partial_copy(watched, layout):
    tmp, check = watched
    fs = _open(layout, tar_of(("dir", "www/"), ("file", "www/a", b"aaaa"), ("file", "www/b", b"bbbb")), compress="none")
    (tmp / "dest").mkdir()
    (tmp / "dest" / "previous").write_text("kept")
    blob = layout.root / "blobs" / "sha256" / fs.image.manifest.layers[0].digest.split(":")[1]
    blob.write_bytes(tar_of(("dir", "www/"), ("file", "www/a", b"AAAA"), ("file", "www/b", b"BBBB")))
    with pytest.raises(ImageInvalid, match=r"content digest is"):
        fs.extract("/www", tmp / "dest")
    assert _snapshot(tmp / "dest") == {"previous"}  # the old copy is untouched, no staging folder left
    check("dest")
