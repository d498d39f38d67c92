"""The local bases are hardened at the source (the bootstrap itself runs in ./test.sh's set-up)."""

from __future__ import annotations

import json
import stat
import uuid

import pytest

from imgforge import baseimage


def test_harden_strips_setuid_and_package_lists(tmp_path, build_file_tree):
    root = build_file_tree(
        tmp_path / "rootfs",
        {
            "usr/bin/su": b"\x7fELF",
            "usr/bin/ls": b"\x7fELF",
            "var/lib/apt/lists/deb.debian.org_dists_bookworm_Release": "x\n",
            "var/cache/apt/archives/nginx.deb": b"!<arch>",
            "var/log/nginx/error.log": "old\n",
            "var/cache/apt/pkgcache.bin": b"\0",
            "var/cache/apt/srcpkgcache.bin": b"\0",
        },
    )
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


def test_status_reports_what_the_engine_holds(docker_client, nginx_base, debian_base, monkeypatch, capsys):
    """Both bases exist here (./test.sh bootstraps them); a third, absent name is reported absent.

    Compared with the engine's own answer, through the CLI's JSON and exit code (./test.sh
    bootstraps when it is 1), so a status that always says "present" or gives another image's id fails.
    """
    from imgforge.cli import main

    absent = f"imgforge/absent-{uuid.uuid4().hex[:8]}:bookworm"
    monkeypatch.setitem(baseimage.LOCAL_BASES, absent, "a base nobody made")
    with pytest.raises(SystemExit) as done:
        main(["base", "status", "--json"])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert done.value.code == 1
    assert set(rows) == {debian_base, nginx_base, absent}
    for name in (debian_base, nginx_base):
        assert rows[name]["present"] is True
        assert rows[name]["id"] == docker_client.images.get(name).id
    assert rows[absent]["present"] is False
    assert rows[absent]["id"] is None
