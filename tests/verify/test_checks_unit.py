"""The check functions on hand-made observations: no engine needed, every branch reachable."""

from __future__ import annotations

import hashlib

import pytest

from imgforge import render
from imgforge.config import Site
from imgforge.content_manifest import ContentManifest, ServedFile
from imgforge.verify import checks
from imgforge.verify.checks import CheckResult, Expect, Response, VerifyReport
from imgforge.verify.image_files import WebFile

FILES = {"index.html": b"<h1>hi</h1>\n", "css/a.css": b"a{}\n", "img/x.png": b"\x89PNG"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def expect() -> Expect:
    """A manifest as a build of this site would write it (headers from render, like the build's)."""
    site = Site(
        name="s",
        file="sites/s.toml",
        image="x/s",
        tag="v1",
        uid=10000,
        gid=10001,
        port=8081,
        fallback="spa",
        headers={"Permissions-Policy": "camera=()"},
    )
    manifest = ContentManifest.of(
        {
            "site": site.name,
            "content_root": render.CONTENT_ROOT,
            "served": {rel: ServedFile(sha256=_sha(data), size=len(data)) for rel, data in FILES.items()},
            "left_out": ("mail.PHP", ".git-keep"),
            "port": site.port,
            "fallback": site.fallback,
            "headers": tuple(render.headers_for(site)),
            "uid": site.uid,
            "gid": site.gid,
            "ipv6": site.ipv6,
            "gzip": site.gzip,
            "cache_assets": site.cache_assets,
        }
    )
    return Expect.from_manifest(manifest)


def test_hidden_follows_the_template_rule(expect):
    assert expect.hidden == ("mail.PHP", ".git-keep")
    assert checks.is_hidden("a/.well-known/x")
    assert checks.is_hidden("backup.sql")
    assert not checks.is_hidden("php/index.html")
    assert not checks.is_hidden("a.phpx")


def test_image_config_names_every_problem(expect):
    good = {
        "User": "10000:10001",
        "ExposedPorts": {"8081/tcp": {}},
        "Env": ["LISTEN_PORT=8081"],
        "StopSignal": "SIGQUIT",
    }
    assert checks.image_config(good, expect).ok
    bad = checks.image_config({"User": "nginx", "ExposedPorts": {"80/tcp": {}}, "Env": []}, expect)
    assert not bad.ok
    for words in ("'nginx' not numeric", "8081/tcp not in ExposedPorts", "LISTEN_PORT=(unset)", "SIGTERM"):
        assert words in bad.detail
    assert "expected 10000:10001" in checks.image_config({**good, "User": "100:101"}, expect).detail


def test_processes_reject_root_and_extra_groups(expect):
    row = (
        dict(zip(("RUID", "EUID", "SUID", "FSUID"), ["10000"] * 4, strict=False))
        | dict(zip(("RGID", "EGID", "SGID", "FSGID"), ["10001"] * 4, strict=False))
        | {"PID": "1", "COMMAND": "nginx", "SUPGID": "10001"}
    )
    assert checks.processes([row], expect).ok
    assert not checks.processes([row | {"EUID": "0"}], expect).ok
    assert "supplementary groups ['0']" in checks.processes([row | {"SUPGID": "0,10001"}], expect).detail
    assert "Kubernetes adds them" in checks.processes([row], expect, {"0"}).detail
    assert not checks.processes([], expect).ok


def test_implicit_groups_come_from_the_user_name_of_the_uid():
    passwd = "root:x:0:0::/root:/bin/sh\nweb:x:10000:10001::/:/sbin/nologin\n"
    group = "root:x:0:web\nadm:x:4:syslog\nweb:x:10001:\nwheel:x:10:other,web\n"
    assert checks.implicit_groups(passwd, group, 10000) == {"0", "10"}
    assert checks.implicit_groups(passwd, group, 4242) == set()


def test_content_and_types(expect):
    got = {
        "/index.html": Response(200, {"content-type": "text/html; charset=utf-8"}, b"<h1>hi</h1>\n"),
        "/css/a.css": Response(200, {"content-type": "application/octet-stream"}, b"a{}\n"),
        "/img/x.png": Response(200, {"content-type": "image/png"}, b"\x89PNG"),
    }
    assert checks.content_served(got, expect).ok
    types = checks.content_types(got, expect)
    assert not types.ok
    assert "/css/a.css" in types.detail
    assert "text/css" in types.detail
    got["/img/x.png"] = Response(200, {"content-type": "image/png"}, b"other")
    assert "/img/x.png: served bytes differ" in checks.content_served(got, expect).detail
    got["/img/x.png"] = ConnectionResetError("reset")
    assert "ConnectionResetError" in checks.content_served(got, expect).detail


def test_headers_server_and_stop(expect):
    headers = {
        "x-content-type-options": "nosniff",
        "referrer-policy": "strict-origin-when-cross-origin",
        "x-frame-options": "SAMEORIGIN",
        "permissions-policy": "camera=()",
        "server": "nginx",
    }
    assert checks.security_headers({"/": Response(200, headers, b"")}, expect).ok
    lost = checks.security_headers({"/a.css": Response(200, {**headers, "permissions-policy": ""}, b"")}, expect)
    assert "Permissions-Policy: (missing)" in lost.detail
    assert checks.server_header({"/": Response(200, headers, b"")}).ok
    assert not checks.server_header({"/": Response(200, {"server": "nginx/1.22.1"}, b"")}).ok
    assert checks.stop(0.2, 0, 5).ok
    assert "exit code 137" in checks.stop(0.2, 137, 5).detail
    assert "still running 5 s after SIGQUIT" in checks.stop(None, None, 5).detail


def test_logs_and_listen_port():
    assert checks.startup_logs("2026/01/01 [notice] 1#1: start worker\n").ok
    assert "[emerg]" in checks.startup_logs('nginx: [emerg] mkdir() "/var/lib/nginx/body" failed\n').detail
    assert checks.listen_port(9090, True, None, 8080).ok
    assert "old port 8080 still answers" in checks.listen_port(9090, True, "HTTP 200", 8080).detail
    assert "no HTTP answer on 9090" in checks.listen_port(9090, False, None, 8080).detail


def test_report_shape():
    report = VerifyReport("s", "x/s:v1", "sha256:1", [CheckResult("a", True, "fine"), CheckResult("b", False, "no")])
    assert report.to_dict() == {
        "site": "s",
        "image": "x/s:v1",
        "image_id": "sha256:1",
        "ok": False,
        "checks": [{"name": "a", "ok": True, "detail": "fine"}, {"name": "b", "ok": False, "detail": "no"}],
    }
    assert [c.name for c in report.failed] == ["b"]
    assert not VerifyReport("s", "i", "id").ok  # no check run is never a pass


def _web(changes: dict[str, bytes | WebFile] | None = None) -> dict[str, WebFile]:
    """The web root as built, with ``changes`` (bytes: a file with those bytes)."""
    found = {rel: WebFile("file", _sha(data), len(data)) for rel, data in FILES.items()}
    for rel, what in (changes or {}).items():
        found[rel] = what if isinstance(what, WebFile) else WebFile("file", _sha(what), len(what))
    return found


def test_content_manifest_passes_only_on_exactly_the_built_files(expect):
    assert checks.content_manifest(_web(), expect, []).ok
    assert "exactly the 3 files" in checks.content_manifest(_web(), expect, []).detail
    found = _web()
    del found["index.html"]
    missing = checks.content_manifest(found, expect, [])
    assert missing.detail == "missing: '/index.html'"
    changed = checks.content_manifest(_web({"css/a.css": b"b{}\n"}), expect, [])
    assert changed.detail == "other bytes than the manifest's: '/css/a.css'"
    longer = WebFile("file", _sha(b"a{}\n"), 99)  # same hash claimed, other size: still other bytes
    assert not checks.content_manifest(_web({"css/a.css": longer}), expect, []).ok
    odd = checks.content_manifest(_web({"etc": WebFile("other", detail="a symlink to '/etc'")}), expect, [])
    assert odd.detail == "not a regular file: '/etc' (a symlink to '/etc')"
    present = checks.content_manifest(_web({"mail.PHP": b"<?php ?>"}), expect, [])
    assert present.detail == "left out by the build but present: '/mail.PHP'"
    extra = checks.content_manifest(_web({"a\nb.txt": b"x"}), expect, [])
    assert extra.detail == "not in the manifest: '/a\\nb.txt'"  # one line, the name escaped
    many = checks.content_manifest(_web({f"x{i}.txt": b"x" for i in range(10)}), expect, [])
    assert many.detail.endswith("(+2 more)")


def test_content_manifest_reports_the_runners_findings_and_an_unreadable_root(expect):
    label = checks.content_manifest(_web(), expect, ["manifest.json does not match its label"])
    assert not label.ok
    assert label.detail == "manifest.json does not match its label"
    gone = checks.content_manifest("/usr/share/nginx/html is not in the image", expect, [])
    assert gone.detail.startswith("/usr/share/nginx/html is not in the image; missing: '/css/a.css'")
    assert "holds no file" in checks.content_manifest({}, expect, []).detail
