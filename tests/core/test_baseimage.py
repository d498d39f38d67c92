"""The local bases are hardened at the source (the bootstrap itself runs in ./test.sh's set-up)."""

from __future__ import annotations

import stat

from imgforge import baseimage


def test_harden_strips_setuid_and_package_lists(tmp_path, build_file_tree):
    root = build_file_tree(tmp_path / "rootfs", {
        "usr/bin/su": b"\x7fELF", "usr/bin/ls": b"\x7fELF",
        "var/lib/apt/lists/deb.debian.org_dists_bookworm_Release": "x\n",
        "var/cache/apt/archives/nginx.deb": b"!<arch>", "var/log/nginx/error.log": "old\n",
        "var/cache/apt/pkgcache.bin": b"\0", "var/cache/apt/srcpkgcache.bin": b"\0"})
    (root / "var/lib/apt/lists/partial").mkdir()
    (root / "usr/bin/su").chmod(0o4755)
    (root / "usr/bin/ls").chmod(0o2755)
    baseimage._harden(root)
    assert stat.S_IMODE((root / "usr/bin/su").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "usr/bin/ls").stat().st_mode) == 0o755
    assert [p.name for p in (root / "var/lib/apt/lists").iterdir()] == ["partial"]
    assert list((root / "var/cache/apt/archives").iterdir()) == []
    assert sorted(p.name for p in (root / "var/cache/apt").iterdir()) == ["archives"]
    assert list((root / "var/log/nginx").iterdir()) == []


def test_status_lists_both_local_bases(docker_client):
    names = {s.name: s for s in baseimage.status()}
    assert set(names) == {baseimage.DEBIAN, baseimage.NGINX_DEBIAN}
    assert all(s.to_dict()["present"] == (s.id is not None) for s in names.values())
