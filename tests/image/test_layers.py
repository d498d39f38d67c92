"""Layer application by the OCI image spec (layer.md), on hand-made layouts: whiteouts, opaque
folders, replacement rules, hard links, compression, verification, and the second pass for bytes.
The spec's own examples are used where it gives them.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import tarfile

import pytest
from image_fixtures import LayoutWriter, sha, single, tar_of

from imgforge.image import EntryType, ImageInvalid, ImageNotFound, LimitExceeded, Limits, OciLayout, read_fs, resolve


def _fs(writer: LayoutWriter, *tars: bytes, **kw):
    single(writer, *tars, **kw)
    return read_fs(resolve(OciLayout.open_dir(writer.root)))


def _paths(fs) -> list[str]:
    return [e.path for e in fs if e.path != "/"]


BASE = tar_of(("dir", "a/"), ("dir", "a/b/"), ("dir", "a/b/c/"), ("file", "a/b/c/bar", b"bar"))


@pytest.mark.parametrize("marker_first", [True, False])
def test_spec_opaque_example_in_any_order(layout, marker_first):
    """layer.md: "a/.wh..wh..opq is applied first … regardless of the ordering"."""
    marker = [("file", "a/.wh..wh..opq", b"")]
    rest = [("dir", "a/"), ("dir", "a/b/"), ("dir", "a/b/c/"), ("file", "a/b/c/foo", b"foo")]
    top = tar_of(*(marker + rest if marker_first else rest + marker))
    fs = _fs(layout, BASE, top)
    assert _paths(fs) == ["/a", "/a/b", "/a/b/c", "/a/b/c/foo"]


def test_spec_explicit_whiteouts_equal_opaque(tmp_path):
    base = tar_of(
        ("dir", "etc/"),
        ("file", "etc/my-app-config", b"c"),
        ("dir", "bin/"),
        ("file", "bin/my-app-binary", b"b"),
        ("file", "bin/my-app-tools", b"t"),
        ("dir", "bin/tools/"),
        ("file", "bin/tools/my-app-tool-one", b"1"),
    )
    explicit = tar_of(
        ("dir", "bin/"),
        ("file", "bin/.wh.my-app-binary", b""),
        ("file", "bin/.wh.my-app-tools", b""),
        ("file", "bin/.wh.tools", b""),
    )
    opaque = tar_of(("dir", "bin/"), ("file", "bin/.wh..wh..opq", b""))
    a = _fs(LayoutWriter(tmp_path / "a"), base, explicit)
    b = _fs(LayoutWriter(tmp_path / "b"), base, opaque)
    assert _paths(a) == _paths(b) == ["/bin", "/etc", "/etc/my-app-config"]


def test_spec_changeset_example(layout):
    """layer.md "Representing Changes": parents not listed keep their attributes."""
    base = tar_of(
        ("dir", "./", 0o755),
        ("dir", "./etc/", 0o750),
        ("file", "./etc/my-app-config", b"old"),
        ("dir", "./bin/"),
        ("file", "./bin/my-app-binary", b"bin", 0o755),
        ("file", "./bin/my-app-tools", b"tools-1", 0o755),
    )
    change = tar_of(
        ("dir", "./etc/my-app.d/"),
        ("file", "./etc/my-app.d/default.cfg", b"cfg"),
        ("file", "./bin/my-app-tools", b"tools-2", 0o700),
        ("file", "./etc/.wh.my-app-config", b""),
    )
    fs = _fs(layout, base, change)
    assert _paths(fs) == [
        "/bin",
        "/bin/my-app-binary",
        "/bin/my-app-tools",
        "/etc",
        "/etc/my-app.d",
        "/etc/my-app.d/default.cfg",
    ]
    assert fs.get("/etc").mode == 0o750
    assert fs.get("/etc").layer == 0
    tools = fs.get("/bin/my-app-tools")
    assert (tools.mode, tools.size, tools.layer) == (0o700, 7, 1)
    assert fs.read_bytes("/bin/my-app-tools") == b"tools-2"


def test_whiteout_applies_only_to_lower_layers(layout):
    fs = _fs(layout, tar_of(("file", "x", b"lower")), tar_of(("file", ".wh.x", b""), ("file", "x", b"same layer")))
    assert fs.read_bytes("/x") == b"same layer"
    fs2 = _fs(
        LayoutWriter(layout.root.parent / "2"),
        tar_of(("file", "keep", b"1")),
        tar_of(("dir", "d/"), ("file", "d/new", b"n"), ("file", "d/.wh..wh..opq", b"")),
    )
    assert _paths(fs2) == ["/d", "/d/new", "/keep"]


def test_replacement_rules(layout):
    lower = tar_of(
        ("dir", "d/", 0o700),
        ("file", "d/child", b"c"),
        ("file", "f", b"file"),
        ("dir", "g/"),
        ("file", "g/inner", b"i"),
        ("symlink", "s", "d"),
    )
    upper = tar_of(
        ("dir", "d/", 0o755),
        ("dir", "f/"),
        ("file", "f/now-a-dir", b"x"),
        ("file", "g", b"now a file"),
        ("file", "s", b"not a link any more"),
    )
    fs = _fs(layout, lower, upper)
    assert fs.get("/d").mode == 0o755
    assert fs.get("/d/child") is not None
    assert fs.get("/f").is_dir
    assert fs.children("/f") == ["/f/now-a-dir"]
    assert fs.get("/g").type is EntryType.FILE
    assert fs.get("/g/inner") is None
    assert fs.get("/s").type is EntryType.FILE


def test_paths_are_applied_literally_never_through_a_lower_symlink(layout):
    """As Docker's overlay2 applies them: an entry under a lower symlink makes a real folder there."""
    fs = _fs(layout, tar_of(("dir", "real/"), ("symlink", "link", "real")), tar_of(("file", "link/f", b"f")))
    assert fs.get("/link").is_dir
    assert fs.get("/link").implicit
    assert fs.children("/real") == []
    assert fs.get("/link/f").size == 1


def test_implicit_parents_and_aufs_metadata(layout):
    fs = _fs(layout, tar_of(("file", "x/y/z", b"z"), ("file", ".wh..wh.plnk", b""), ("dir", ".wh..wh.aufs/")))
    assert _paths(fs) == ["/x", "/x/y", "/x/y/z"]
    assert all((fs.get(p).mode, fs.get(p).uid, fs.get(p).implicit) == (0o755, 0, True) for p in ("/x", "/x/y"))


def test_hard_links_within_and_across_layers(layout):
    lower = tar_of(("file", "bin/perl", b"#!perl", 0o4755, 0, 0))
    upper = tar_of(("hardlink", "bin/perl5", "bin/perl"), ("file", "etc/a", b"a"), ("hardlink", "etc/b", "/etc/a"))
    fs = _fs(layout, lower, upper)
    perl5 = fs.get("/bin/perl5")
    assert (perl5.type, perl5.link_target, perl5.mode, perl5.size, perl5.layer) == (
        EntryType.HARDLINK,
        "/bin/perl",
        0o4755,
        6,
        1,
    )
    assert fs.read_files(["/bin/perl5", "/bin/perl", "/etc/b"]) == {
        "/bin/perl5": b"#!perl",
        "/bin/perl": b"#!perl",
        "/etc/b": b"a",
    }


def test_hard_link_to_nothing_is_invalid(layout):
    with pytest.raises(ImageInvalid, match="hard link /b to /missing, which does not exist"):
        _fs(layout, tar_of(("hardlink", "b", "missing")))


def test_special_bits_owners_devices_and_xattrs(layout):
    fifo = tarfile.TarInfo("run/fifo")
    fifo.type = tarfile.FIFOTYPE
    dev = tarfile.TarInfo("dev/null")
    dev.type, dev.devmajor, dev.devminor, dev.mode = tarfile.CHRTYPE, 1, 3, 0o666
    cap = tarfile.TarInfo("usr/sbin/nginx")
    cap.size, cap.mode = 3, 0o755
    cap.pax_headers = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}
    fs = _fs(
        layout,
        tar_of(
            ("file", "suid", b"s", 0o4755, 0, 0),
            ("file", "sgid", b"s", 0o2711, 0, 50),
            ("dir", "tmp/", 0o1777),
            ("file", "owned", b"o", 0o664, 101, 101),
            ("raw", fifo, None),
            ("raw", dev, None),
            ("raw", cap, b"bin"),
        ),
    )
    assert fs.get("/suid").setuid
    assert fs.get("/sgid").setgid
    assert fs.get("/sgid").gid == 50
    assert fs.get("/tmp").mode == 0o1777
    assert (fs.get("/owned").uid, fs.get("/owned").gid) == (101, 101)
    assert fs.get("/run/fifo").type is EntryType.FIFO
    assert (fs.get("/dev/null").type, fs.get("/dev/null").devmajor, fs.get("/dev/null").devminor) == (
        EntryType.CHAR,
        1,
        3,
    )
    assert fs.get("/usr/sbin/nginx").xattrs == (("security.capability", "\x01\x00\x00\x02"),)


def test_uncompressed_gzip_and_zstd_layers_read_alike(tmp_path):
    pytest.importorskip("zstandard", reason="zstd layers need the zstandard package (see docs/image.md)")
    tar = tar_of(("dir", "srv/"), ("file", "srv/index.html", b"<h1>x</h1>" * 500))
    plain = _fs(LayoutWriter(tmp_path / "plain"), tar, compress="none")
    gz = _fs(LayoutWriter(tmp_path / "gz"), tar)
    zst_writer = LayoutWriter(tmp_path / "zst")
    (tmp_path / "layer.tar").write_bytes(tar)  # compressed by the zstd tool, not by our code
    subprocess.run(
        ["zstd", "-q", "-19", str(tmp_path / "layer.tar"), "-o", str(tmp_path / "layer.tar.zst")], check=True
    )
    zst_writer.image_of_blob(
        (tmp_path / "layer.tar.zst").read_bytes(),
        diff_id=sha(tar),
        media_type="application/vnd.oci.image.layer.v1.tar+zstd",
    )
    zst = read_fs(resolve(OciLayout.open_dir(zst_writer.root)))
    assert [(e.path, e.size) for e in plain] == [(e.path, e.size) for e in gz] == [(e.path, e.size) for e in zst]
    assert zst.read_bytes("/srv/index.html") == gz.read_bytes("/srv/index.html") == b"<h1>x</h1>" * 500


def test_zstd_layout_written_by_skopeo(tmp_path):
    """skopeo recompresses a layout to zstd (its own manifest, +zstd media types): same tree, same bytes."""
    pytest.importorskip("zstandard", reason="zstd layers need the zstandard package (see docs/image.md)")
    gz = _fs(
        LayoutWriter(tmp_path / "gz"), BASE, tar_of(("file", "a/.wh..wh..opq", b""), ("file", "a/new", b"n" * 5000))
    )
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-compress-format",
            "zstd",
            f"oci:{tmp_path / 'gz'}:latest",
            f"oci:{tmp_path / 'zst'}:latest",
        ],
        check=True,
    )
    image = resolve(OciLayout.open_dir(tmp_path / "zst"))
    assert {layer.media_type for layer in image.manifest.layers} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    zst = read_fs(image)
    assert [(e.path, e.type, e.size) for e in zst] == [(e.path, e.type, e.size) for e in gz]
    assert _paths(zst) == [
        "/a",
        "/a/new",
    ]
    assert zst.read_bytes("/a/new") == b"n" * 5000


def test_layer_blob_digest_and_diff_id_are_verified(tmp_path):
    tar = tar_of(("file", "f", b"original"))
    bad_diff = LayoutWriter(tmp_path / "diff")
    with pytest.raises(ImageInvalid, match=r"\(uncompressed\): content digest is"):
        _fs(bad_diff, tar, diff_ids=[sha(b"not the tar")])
    tampered = LayoutWriter(tmp_path / "blob")
    single(tampered, tar)
    image = resolve(OciLayout.open_dir(tampered.root))
    blob = tampered.root / "blobs" / "sha256" / image.manifest.layers[0].digest.split(":")[1]
    blob.write_bytes(
        gzip.compress(tar_of(("file", "f", b"replaced")), mtime=0)[: image.manifest.layers[0].size].ljust(
            image.manifest.layers[0].size, b"\0"
        )
    )
    with pytest.raises(ImageInvalid):
        read_fs(image)


def test_second_pass_verifies_again(layout):
    """A source that serves other bytes after the first pass is caught when files are read, even
    when the wanted file comes first and the change is megabytes further on."""
    big = os.urandom(3 << 20)
    fs = _fs(layout, tar_of(("file", "etc/a", b"aaaa"), ("file", "opt/blob", big)), compress="none")
    desc = fs.image.manifest.layers[0]
    blob = layout.root / "blobs" / "sha256" / desc.digest.split(":")[1]
    blob.write_bytes(tar_of(("file", "etc/a", b"aaaa"), ("file", "opt/blob", big[:-1] + b"!")))
    with pytest.raises(ImageInvalid, match="content digest is"):
        fs.read_files(["/etc/a"])


def test_open_files_streams_and_shares_one_member(layout):
    fs = _fs(
        layout,
        tar_of(("file", "a", b"A" * 100_000), ("hardlink", "b", "a"), ("symlink", "c", "/b"), ("file", "d", b"D")),
    )
    got = {path: (entry.path, stream.read()) for path, entry, stream in fs.open_files(["/a", "/b", "/c", "/d"])}
    assert got["/a"][1] == got["/b"][1] == got["/c"][1] == b"A" * 100_000
    assert got["/c"][0] == "/b"
    assert got["/d"] == ("/d", b"D")
    assert set(fs.read_files(lambda e: e.size < 10)) == {"/d"}


def test_prefetch_keeps_wanted_bytes_from_the_first_pass(layout):
    single(
        layout,
        tar_of(
            ("file", "etc/nginx/nginx.conf", b"old"),
            ("file", "etc/nginx/gone.conf", b"g"),
            ("file", "usr/bin/big", b"B" * 1000),
        ),
        tar_of(
            ("file", "etc/nginx/nginx.conf", b"new"),
            ("file", "etc/nginx/.wh.gone.conf", b""),
            ("symlink", "etc/nginx/default", "nginx.conf"),
        ),
    )
    image = resolve(OciLayout.open_dir(layout.root))
    fs = read_fs(image, prefetch=lambda e: e.path.startswith("/etc/nginx/"))
    assert sorted(fs.prefetched.values()) == [b"new"]  # replaced and whited-out bytes dropped
    for layer in image.manifest.layers:  # no layer can be read again: only the prefetched bytes remain
        (layout.root / "blobs" / "sha256" / layer.digest.split(":")[1]).unlink()
    assert fs.read_files(["/etc/nginx/default", "/etc/nginx/nginx.conf"]) == {
        "/etc/nginx/default": b"new",
        "/etc/nginx/nginx.conf": b"new",
    }
    with pytest.raises(ImageNotFound, match="is missing"):
        fs.read_bytes("/usr/bin/big")


def test_prefetch_is_capped(layout):
    single(layout, tar_of(("file", "a", b"x" * 600), ("file", "b", b"y" * 600)))
    image = resolve(OciLayout.open_dir(layout.root), limits=Limits(max_read_bytes=1000))
    with pytest.raises(LimitExceeded, match="prefetched file bytes exceeds the limit max_read_bytes=1000"):
        read_fs(image, prefetch=lambda e: True)


def test_resolve_follows_links_like_the_kernel(layout):
    fs = _fs(
        layout,
        tar_of(
            ("dir", "a/"),
            ("dir", "a/b/"),
            ("file", "a/x", b"ax"),
            ("file", "top", b"top"),
            ("symlink", "link", "a/b"),
            ("symlink", "abs", "/a/b/../x"),
        ),
    )
    assert fs.resolve("/link/../x") == "/a/x"  # ".." after a link climbs from the link's target
    assert fs.resolve("/abs") == "/a/x"
    assert fs.lookup("/abs").size == 2
    assert fs.read_files(["/link/../x", "/abs"]) == {"/link/../x": b"ax", "/abs": b"ax"}


def test_symlink_hops_are_capped_like_linux(layout):
    chain = [("symlink", f"l{i}", f"l{i + 1}") for i in range(41)] + [("file", "l41", b"end")]
    fs = _fs(layout, tar_of(*chain))
    assert fs.lookup("/l1").path == "/l41"  # 40 links followed
    with pytest.raises(ImageInvalid, match="too many levels of symbolic links"):
        fs.resolve("/l0")  # 41
