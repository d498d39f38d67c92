"""Render: golden files per profile and fallback, determinism, hadolint, and safe content copying."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from imgforge import config, render
from imgforge.content_manifest import IMAGE_PATH, ContentManifest
from imgforge.errors import ContentMissing
from imgforge.hashcache import HashCache

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[2]
PROFILES = ("alpine", "debian", "prebuilt")
GOLDEN_CATALOG = GOLDEN / "catalog"  # the inputs of the golden files: one site per profile and fallback


def _golden_catalog() -> config.Catalog:
    return config.load_catalog(GOLDEN_CATALOG)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("fallback", ["spa", "404"])
def test_rendered_files_match_golden(profile, fallback):
    catalog = _golden_catalog()
    _, files = render.render_templates(catalog, catalog.site(f"{profile}-{fallback}"))
    folder = GOLDEN / f"{profile}-{fallback}"
    if os.environ.get("IMGFORGE_UPDATE_GOLDEN") == "1":
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
    expected = {
        p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8") for p in folder.rglob("*") if p.is_file()
    }
    assert files == expected


def test_hardening_contract_holds_for_every_profile():
    catalog = _golden_catalog()
    for name, site in catalog.sites.items():
        _, files = render.render_templates(catalog, site)
        nginx = files["nginx.conf"]
        assert "\nuser " not in nginx
        assert not nginx.startswith("user ")
        assert "pid /tmp/nginx.pid;" in nginx
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            assert f"{kind}_temp_path /tmp/" in nginx, (name, kind)
        assert "error_log stderr" in nginx
        assert "access_log /dev/stdout combined buffer=64k flush=1s;" in nginx
        assert "server_tokens off;" in nginx
        docker = files["Dockerfile"]
        assert f"\nUSER {site.uid}:{site.gid}\n" in docker
        assert f"ENV LISTEN_PORT={site.port}" in docker
        assert f"EXPOSE {site.port}" in docker
        assert "STOPSIGNAL SIGQUIT" in docker
        assert "include /tmp/imgforge/listen.conf;" in files["imgforge/site.conf"]
        assert "location = /healthz" in files["imgforge/site.conf"]


def test_ipv6_setting_reaches_the_entrypoint(make_catalog):
    catalog = config.load_catalog(
        make_catalog({"on": {"ipv6": "on"}, "off": {"ipv6": "off"}, "auto": {"ipv6": "auto"}})
    )
    entry = {
        n: render.render_templates(catalog, catalog.site(n))[1]["imgforge-entrypoint"] for n in ("on", "off", "auto")
    }
    assert "listen [::]" in entry["on"]
    assert "if_inet6" not in entry["on"]
    assert "listen [::]" not in entry["off"]
    assert "[ -s /proc/net/if_inet6 ]" in entry["auto"]


def test_site_headers_replace_defaults_of_the_same_name(make_catalog):
    catalog = config.load_catalog(make_catalog({"s": {"headers": {"referrer-policy": "no-referrer", "X-Extra": "1"}}}))
    headers = render.headers_for(catalog.site("s"))
    assert headers == [
        ("X-Content-Type-Options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("X-Frame-Options", "SAMEORIGIN"),
        ("X-Extra", "1"),
    ]


def test_same_inputs_give_byte_identical_contexts(make_catalog, tmp_path):
    catalog = config.load_catalog(make_catalog({"s": {}}))
    site = catalog.site("s")
    first_r, first = render.render_site(catalog, site, tmp_path / "one")
    second_r, second = render.render_site(catalog, site, tmp_path / "two")
    assert first_r.digest() == second_r.digest()
    assert _tree(first) == _tree(second)
    entry = first / "imgforge-entrypoint"
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755
    assert stat.S_IMODE((first / "html" / "index.html").stat().st_mode) == 0o644


def test_digest_follows_content_and_settings(make_catalog, build_file_tree, tmp_path):
    content = build_file_tree(tmp_path / "src", {"www-data/index.html": "<h1>one</h1>\n"})
    root = make_catalog({"s": {"source": {"path": str(content)}}})
    catalog = config.load_catalog(root)
    before = render.prepare(catalog, catalog.site("s")).digest()
    (content / "www-data" / "index.html").write_text("<h1>two</h1>\n")
    after_content = render.prepare(catalog, catalog.site("s")).digest()
    root = make_catalog({"s": {"source": {"path": str(content)}, "port": 9001}})
    catalog = config.load_catalog(root)
    after_setting = render.prepare(catalog, catalog.site("s")).digest()
    assert len({before, after_content, after_setting}) == 3


def test_every_catalog_dockerfile_passes_hadolint_on_every_profile(tmp_path):
    """The real catalog, each site on each profile: no hadolint finding at warning level or above."""
    catalog = config.load_catalog(REPO)
    hadolint = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "hadolint"
    hadolint = str(hadolint) if hadolint.exists() else "hadolint"
    for site in catalog.sites.values():
        for profile in PROFILES:
            variant = site.model_copy(update={"profile": profile})
            _, files = render.render_templates(catalog, variant)
            dockerfile = tmp_path / f"{site.name}-{profile}.Dockerfile"
            dockerfile.write_text(files["Dockerfile"])
            proc = subprocess.run(
                [hadolint, "--no-color", "--failure-threshold", "warning", str(dockerfile)],
                check=False,
                capture_output=True,
                text=True,
            )
            assert proc.returncode == 0, f"{site.name}/{profile}: {proc.stdout}{proc.stderr}"


def test_hadolint_would_catch_a_regression(tmp_path):
    """The lint test above can fail: a root USER at the end is a DL3002 warning."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM debian:bookworm-slim\nUSER root\nCMD ["nginx"]\n')
    hadolint = REPO / ".venv" / "bin" / "hadolint"
    proc = subprocess.run(
        [
            str(hadolint) if hadolint.exists() else "hadolint",
            "--no-color",
            "--failure-threshold",
            "warning",
            str(dockerfile),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "DL3002" in proc.stdout


def test_dotfiles_and_server_side_source_stay_out_of_the_image(make_catalog, build_file_tree, tmp_path):
    content = build_file_tree(
        tmp_path / "src",
        {
            "www-data/index.html": "hi\n",
            "www-data/.git/config": "[core]\n",
            "www-data/.htaccess": "x\n",
            "www-data/css/send-mail.php": "<?php define('SMTP_PASSWORD', 'hunter2');\n",
            "www-data/img/kai.PSD": b"8BPS",
            "www-data/img/kai.png": b"\x89PNG",
            "www-data/.env": "A=1\n",
            "www-data/deploy.key": "-----BEGIN-----\n",
            "www-data/phpinfo.html": "fine\n",
        },
    )
    (content / "www-data" / ".git" / "HEAD").symlink_to("refs/heads/main")  # dangling, but never read
    catalog = config.load_catalog(make_catalog({"s": {"source": {"path": str(content)}}}))
    rendered, out = render.render_site(catalog, catalog.site("s"), tmp_path / "ctx")
    assert rendered.content_files == ["img/kai.png", "index.html", "phpinfo.html"]
    assert rendered.left_out == [
        ".env",
        ".git/HEAD",
        ".git/config",
        ".htaccess",
        "css/send-mail.php",
        "deploy.key",
        "img/kai.PSD",
    ]
    assert (
        sorted(p.relative_to(out / "html").as_posix() for p in (out / "html").rglob("*") if p.is_file())
        == rendered.content_files
    )
    assert b"hunter2" not in b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_symlink_escaping_the_content_folder_is_refused(make_catalog, build_file_tree, tmp_path):
    content = build_file_tree(tmp_path / "src", {"www-data/index.html": "hi\n"})
    (content / "www-data" / "passwd").symlink_to("/etc/passwd")
    catalog = config.load_catalog(make_catalog({"s": {"source": {"path": str(content)}}}))
    with pytest.raises(ContentMissing, match="links outside the content folder"):
        render.prepare(catalog, catalog.site("s"))


def test_failed_render_leaves_no_partial_output(make_catalog, build_file_tree, tmp_path, cli_process):
    content = build_file_tree(tmp_path / "src", {"www-data/index.html": "hi\n"})
    root = make_catalog(
        {"s": {"source": {"path": str(content)}}, "gone": {"source": {"path": str(tmp_path / "missing")}}}
    )
    out = tmp_path / "out"
    proc = cli_process("render", "gone", "--out", str(out), "--root", str(root))
    assert proc.returncode == 4
    assert "content folder" in proc.stderr
    assert "does not exist" in proc.stderr
    assert not out.exists()
    # An existing context is replaced whole or not at all.
    assert cli_process("render", "s", "--out", str(out), "--root", str(root)).returncode == 0
    before = _tree(out)
    (content / "www-data" / "escape").symlink_to("/etc/hostname")
    proc = cli_process("render", "s", "--out", str(out), "--root", str(root))
    assert proc.returncode == 4
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog", "out", "src"]


def _tree(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(folder).as_posix(): (stat.S_IMODE(p.stat().st_mode), p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_build_tar_holds_exactly_what_render_writes(make_catalog, tmp_path):
    import io
    import tarfile

    catalog = config.load_catalog(make_catalog({"s": {}}))
    rendered, out = render.render_site(catalog, catalog.site("s"), tmp_path / "ctx")
    stream = io.BytesIO(b"".join(render.context_stream(rendered, chunk=1000)))  # small chunks: files span several
    with tarfile.open(fileobj=stream) as tar:
        members = {m.name: m for m in tar.getmembers()}
        in_tar = {name: (m.mode, tar.extractfile(m).read()) for name, m in members.items() if m.isfile()}
        assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members.values())
        assert all(m.mode == 0o755 for m in members.values() if m.isdir())
    on_disk = _tree(out)
    assert on_disk.pop(render.MARKER) == (0o644, render.MARKER_TEXT.encode())  # the folder's, not the image's
    assert in_tar == on_disk


def test_default_out_dir_replaces_a_context_an_older_imgforge_wrote(make_catalog, cli_process, tmp_path):
    """Contexts under imgforge's own cache are its own, marker or not (older versions wrote none)."""
    root = make_catalog({"s": {}})
    env = {"IMGFORGE_CACHE_DIR": str(tmp_path / "cache")}
    old = tmp_path / "cache" / "contexts" / "s"
    (old / "html").mkdir(parents=True)
    (old / "Dockerfile").write_text("FROM old\n")
    proc = cli_process("render", "s", "--root", str(root), env=env)
    assert proc.returncode == 0, proc.stderr
    assert (old / render.MARKER).is_file()
    assert (old / "Dockerfile").read_text() != "FROM old\n"
    assert os.listdir(old.parent) == ["s"]


def test_digest_never_remembers_bytes_read_from_a_file_that_changed(make_catalog, build_file_tree, tmp_path):
    """A file rewritten between listing and hashing must not leave its new hash under its old stamp.

    Otherwise restoring the old bytes with the old mtime (``cp -p``, an rsync) would be digested as
    the new ones, and a build would be skipped that should not be.
    """
    content = build_file_tree(tmp_path / "src", {"www-data/index.html": "old-1\n"})
    page = content / "www-data" / "index.html"
    listed_mtime = page.stat().st_mtime_ns
    catalog = config.load_catalog(make_catalog({"s": {"source": {"path": str(content)}}}))
    cache = HashCache(tmp_path / "hashes.json")
    rendered = render.prepare(catalog, catalog.site("s"), cache)
    page.write_text("new-2\n")  # same size, same inode
    os.utime(page, ns=(0, listed_mtime + 1_000_000_000))
    rendered.digest()
    cache.save()
    page.write_text("old-1\n")
    os.utime(page, ns=(0, listed_mtime))
    digest = render.prepare(catalog, catalog.site("s"), HashCache(tmp_path / "hashes.json")).digest()
    assert digest == render.prepare(catalog, catalog.site("s")).digest()  # no cache: every byte hashed


def test_the_hash_cache_is_the_callers_never_opened_behind_its_back(make_catalog, build_file_tree, tmp_path):
    """Digest, manifest, folder and stream write no cache file; one passed in is used and saved by its owner."""
    content = build_file_tree(tmp_path / "src", {"www-data/index.html": "<h1>hi</h1>\n", "www-data/a.css": "a{}\n"})
    catalog = config.load_catalog(make_catalog({"s": {"source": {"path": str(content)}}}))
    user_cache = Path(os.environ["IMGFORGE_CACHE_DIR"]) / "file-hashes.json"
    user_cache.unlink(missing_ok=True)
    context, _out = render.render_site(catalog, catalog.site("s"), tmp_path / "ctx")
    context.digest()
    b"".join(context.tar_stream())
    assert not user_cache.exists()  # nothing written
    page = content / "www-data" / "index.html"
    st = page.stat()
    user_cache.parent.mkdir(parents=True, exist_ok=True)
    user_cache.write_text(json.dumps({str(page): [st.st_size, st.st_mtime_ns, st.st_ino, "00" * 32]}))
    assert render.prepare(catalog, catalog.site("s")).manifest() == context.manifest()  # nor read
    mine = tmp_path / "mine.json"
    cache = HashCache(mine)
    with_cache = render.prepare(catalog, catalog.site("s"), cache)
    assert with_cache.digest() == context.digest()
    assert not mine.exists()  # saved only when its owner says so
    cache.save()
    assert set(json.loads(mine.read_text())) == {
        str(content / "www-data" / "index.html"),
        str(content / "www-data" / "a.css"),
    }
    assert json.loads(user_cache.read_text())[str(page)][3] == "00" * 32  # the user's cache untouched


def test_the_context_carries_the_content_manifest_the_image_gets(make_catalog, build_file_tree, tmp_path):
    """Every served file with its sha256 and size, the left-out paths and the settings, canonical JSON."""
    content = build_file_tree(
        tmp_path / "src",
        {
            "www-data/index.html": "<h1>hi</h1>\n",
            "www-data/img/a b.png": b"\x89PNG",
            "www-data/.env": "SMTP_PASSWORD=x\n",
            "www-data/mail.php": "<?php\n",
        },
    )
    settings = {"port": 9001, "uid": 10000, "gid": 10001, "fallback": "spa", "ipv6": "off", "gzip": False}
    root = make_catalog(
        {"s": {"source": {"path": str(content)}, **settings, "cache_assets": False, "headers": {"X-Extra": "1"}}}
    )
    catalog = config.load_catalog(root)
    context, out = render.render_site(catalog, catalog.site("s"), tmp_path / "ctx")
    data = (out / render.MANIFEST_FILE).read_bytes()
    assert json.loads(data) == {
        "schema": "imgforge.content-manifest",
        "version": 1,
        "site": "s",
        "content_root": "/usr/share/nginx/html",
        "served": {
            "img/a b.png": {"sha256": hashlib.sha256(b"\x89PNG").hexdigest(), "size": 4},
            "index.html": {"sha256": hashlib.sha256(b"<h1>hi</h1>\n").hexdigest(), "size": 12},
        },
        "left_out": [".env", "mail.php"],
        "headers": [
            ["X-Content-Type-Options", "nosniff"],
            ["Referrer-Policy", "strict-origin-when-cross-origin"],
            ["X-Frame-Options", "SAMEORIGIN"],
            ["X-Extra", "1"],
        ],
        **settings,
        "cache_assets": False,
    }
    assert data == (json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")) + "\n").encode()
    assert b"SMTP_PASSWORD" not in data  # left-out files are named, never copied
    assert context.manifest().digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert ContentManifest.parse(data, "here") == context.manifest()
    with tarfile.open(fileobj=io.BytesIO(b"".join(context.tar_stream()))) as tar:
        member = tar.getmember(render.MANIFEST_FILE)
        assert (member.mode, member.uid, member.gid) == (0o644, 0, 0)
        assert tar.extractfile(member).read() == data
    assert f"\nCOPY {render.MANIFEST_FILE} {IMAGE_PATH}\n" in context.files["Dockerfile"]
    assert not IMAGE_PATH.startswith(render.CONTENT_ROOT + "/")  # never served by nginx


def test_the_manifest_follows_content_and_settings_and_is_in_the_digest(make_catalog, build_file_tree, tmp_path):
    content = build_file_tree(tmp_path / "src", {"www-data/index.html": "<h1>one</h1>\n"})
    catalog = config.load_catalog(make_catalog({"s": {"source": {"path": str(content)}}}))
    first = render.prepare(catalog, catalog.site("s"))
    again = render.prepare(catalog, catalog.site("s"))
    assert first.manifest().to_bytes() == again.manifest().to_bytes()
    (content / "www-data" / "index.html").write_text("<h1>two</h1>\n")
    changed = render.prepare(catalog, catalog.site("s"))
    assert changed.manifest().digest != first.manifest().digest
    assert changed.digest() != first.digest()
    moved = config.load_catalog(make_catalog({"s": {"source": {"path": str(content)}, "fallback": "spa"}}))
    assert render.prepare(moved, moved.site("s")).manifest().fallback == "spa"


def test_a_damaged_cache_entry_is_hashed_anew_never_trusted(make_catalog, build_file_tree, tmp_path):
    content = build_file_tree(tmp_path / "src", {"www-data/index.html": "<h1>hi</h1>\n"})
    page = content / "www-data" / "index.html"
    st = page.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    catalog = config.load_catalog(make_catalog({"s": {"source": {"path": str(content)}}}))
    honest = render.prepare(catalog, catalog.site("s")).digest()
    for damaged in (["not hex"], [None], ["ab" * 31], []):
        (tmp_path / "hashes.json").write_text(json.dumps({str(page): stamp + damaged}))
        cache = HashCache(tmp_path / "hashes.json")
        assert render.prepare(catalog, catalog.site("s"), cache).digest() == honest
