"""``migrate_repo``: the catalog entry keeps the old site's behaviour and names what it drops."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import crossplane
import pytest
from audit_fixture_repos import FIXED, ROOT_DEFAULT_CONF, ROOT_SITE

from imgforge import config
from imgforge.audit import audit_repo, migrate_repo, write_site
from imgforge.audit.migrate import nginx_behaviour
from imgforge.errors import CatalogError, Refused, UsageError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def catalog(tmp_path) -> Path:
    """A catalog like the owner's: the real imgforge.toml and one existing site."""
    root = tmp_path / "catalog"
    (root / "sites").mkdir(parents=True)
    shutil.copy(REPO / "imgforge.toml", root)
    (root / "sites" / "sofmeright.toml").write_text(
        'image = "cr.pcfae.com/prplanit/sofmeright.com"\ntag = "v0.0.5"\n', encoding="utf-8"
    )
    return root


@pytest.fixture
def old_site(tmp_path, build_file_tree):
    def make(changes: dict | None = None, name: str = "astralfocal.com") -> Path:
        files = {k: v for k, v in {**ROOT_SITE, **(changes or {})}.items() if v is not None}
        return build_file_tree(tmp_path / name, files)

    return make


def test_root_site_becomes_an_entry(old_site, catalog):
    repo = old_site()
    text, notes = migrate_repo(repo, "astralfocal", catalog)
    data = tomllib.loads(text)
    assert data["image"] == "cr.pcfae.com/prplanit/astralfocal.com"  # the catalog's registry path + folder
    assert data["tag"] == "v0.0.1"
    assert data["fallback"] == "spa"
    assert data["ipv6"] == "auto"
    assert data["gzip"] is True
    assert data["cache_assets"] is True
    assert data["headers"] == {"X-Frame-Options": "SAMEORIGIN", "Referrer-Policy": "strict-origin-when-cross-origin"}
    assert data["source"]["content_dir"] == "www-data"
    assert data["source"]["path"] == str(repo.resolve())  # outside the catalog: absolute
    assert "profile" not in data
    assert "uid" not in data
    assert notes == [
        "nginx.conf:13: gzip_types text/css application/javascript: imgforge compresses its own list of types"
    ]


def test_404_site_without_gzip_ipv6_or_caching(old_site, catalog):
    conf = """
        server {
            listen 80;
            root /usr/share/nginx/html;
            location / {
                try_files $uri $uri/ =404;
            }
        }
    """
    nginx = ROOT_SITE["nginx.conf"].replace("gzip on;", "gzip off;")
    data = tomllib.loads(migrate_repo(old_site({"default.conf": conf, "nginx.conf": nginx}), "a", catalog)[0])
    assert (data["fallback"], data["ipv6"], data["gzip"], data["cache_assets"]) == ("404", "off", False, False)
    assert "headers" not in data


def test_what_cannot_be_carried_is_listed_with_its_line(old_site, catalog):
    conf = (
        ROOT_DEFAULT_CONF.replace(
            "index index.html;",
            """index index.html;
        error_page 404 /404.html;
        location /api/ {
            proxy_pass http://backend:3000;
        }
        location ~* \\.(pdf)$ {
            expires 30d;
            add_header Access-Control-Allow-Origin "*";
        }""",
        )
        + """
    server {
        listen 80;
        server_name www.example.com;
        return 301 https://example.com$request_uri;
    }
    """
    )
    _, notes = migrate_repo(old_site({"default.conf": conf}), "a", catalog)
    assert "default.conf:7: error_page 404 /404.html" in notes
    assert "default.conf:8: location /api/ {...}" in notes
    assert "default.conf:12: expires 30d: assets are cached for one year (immutable)" in notes
    assert (
        "default.conf:13: add_header Access-Control-Allow-Origin *: "
        "assets get the site's headers and Cache-Control only" in notes
    )
    assert any(n.startswith("default.conf:29: server www.example.com {...}") for n in notes)
    assert not any("proxy_pass" in n or "return 301" in n for n in notes)  # reported with their block


def test_existing_site_is_not_overwritten(old_site, catalog):
    before = (catalog / "sites" / "sofmeright.toml").read_text()
    with pytest.raises(Refused, match=r"sites/sofmeright\.toml already exists"):
        migrate_repo(old_site(), "sofmeright", catalog)
    with pytest.raises(Refused):
        write_site(catalog, "sofmeright", "image = 'x/y'\ntag = 'v1'\n")
    assert (catalog / "sites" / "sofmeright.toml").read_text() == before


def test_invalid_entry_is_not_left_behind(catalog):
    with pytest.raises(CatalogError, match="fallback"):
        write_site(catalog, "bad", 'image = "x/y"\ntag = "v1"\nfallback = "maybe"\n')
    assert not (catalog / "sites" / "bad.toml").exists()


def test_image_from_ci_file_and_option(old_site, catalog):
    ci = "build:\n  script:\n    - docker build -t cr.example.com/team/astral:$CI_COMMIT_TAG .\n"
    repo = old_site({".gitlab-ci.yml": ci})
    assert tomllib.loads(migrate_repo(repo, "a", catalog)[0])["image"] == "cr.example.com/team/astral"
    text = migrate_repo(repo, "a", catalog, image="cr.example.com/other/x", tag="v2.0.0")[0]
    assert tomllib.loads(text)["image"] == "cr.example.com/other/x"
    assert tomllib.loads(text)["tag"] == "v2.0.0"


def test_no_image_anywhere_asks_for_one(old_site, tmp_path):
    empty = tmp_path / "empty-catalog"
    (empty / "sites").mkdir(parents=True)
    (empty / "imgforge.toml").write_text("[defaults]\n")
    with pytest.raises(UsageError, match="pass --image"):
        migrate_repo(old_site(), "a", empty)


def test_tag_follows_the_repos_newest_version(old_site, catalog):
    repo = old_site()
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "HOME": str(repo),
        "PATH": "/usr/bin:/bin",
    }
    for cmd in (
        ["init", "-q"],
        ["add", "."],
        ["commit", "-qm", "site"],
        ["tag", "v0.0.2"],
        ["tag", "v0.0.10"],
        ["tag", "dev-1234abcd"],
        ["remote", "add", "origin", "https://git.example.com/s/astral.git"],
    ):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=env, capture_output=True)
    text = migrate_repo(repo, "a", catalog)[0]
    assert tomllib.loads(text)["tag"] == "v0.0.11"
    assert '# git = "https://git.example.com/s/astral.git"' in text


def test_numeric_user_and_debian_base_are_carried(old_site, catalog):
    dockerfile = (
        ROOT_SITE["Dockerfile"]
        .replace("FROM alpine", "FROM debian:bookworm-slim")
        .replace("EXPOSE 80", "EXPOSE 80\nUSER 10000:10001")
    )
    data = tomllib.loads(migrate_repo(old_site({"Dockerfile": dockerfile}), "a", catalog)[0])
    assert (data["profile"], data["uid"], data["gid"]) == ("debian", 10000, 10001)


def test_repo_inside_the_catalog_gets_a_relative_path(tmp_path, build_file_tree, catalog):
    repo = build_file_tree(catalog / "repos" / "astralfocal.com", ROOT_SITE)
    assert tomllib.loads(migrate_repo(repo, "a", catalog)[0])["source"]["path"] == "repos/astralfocal.com"


def test_content_folder_from_copy(old_site, catalog):
    dockerfile = ROOT_SITE["Dockerfile"].replace(
        "COPY www-data/ /usr/share/nginx/html/", "COPY site/public /usr/share/nginx/html"
    )
    repo = old_site({"Dockerfile": dockerfile, "site/public/index.html": "<p>hi</p>\n"})
    assert tomllib.loads(migrate_repo(repo, "a", catalog)[0])["source"]["content_dir"] == "site/public"


def test_repo_without_nginx_config(old_site, catalog):
    repo = old_site({"nginx.conf": None, "default.conf": None})
    with pytest.raises(UsageError, match="no nginx config"):
        migrate_repo(repo, "a", catalog)


def _behaviour_of(files: dict[str, str], tmp: Path) -> dict:
    parsed = {}
    for name, text in files.items():
        path = tmp / name.replace("/", "_")
        path.write_text(text)
        parsed[name] = crossplane.parse(str(path), single=True, check_ctx=False, check_args=False)["config"][0][
            "parsed"
        ]
    return nginx_behaviour(parsed)


@pytest.mark.parametrize("fallback_line", ["try_files $uri $uri/ /index.html;", "try_files $uri $uri/ =404;"])
def test_render_of_migrated_site_differs_only_in_hardening(old_site, catalog, tmp_path, fallback_line):
    """migrate, then render: same fallback, gzip, caching and headers; hardening is all that changes."""
    from imgforge import render

    conf = ROOT_DEFAULT_CONF.replace("try_files $uri $uri/ /index.html;", fallback_line)
    repo = old_site({"default.conf": conf})
    text, _ = migrate_repo(repo, "astralfocal", catalog)
    write_site(catalog, "astralfocal", text)
    cat = config.load_catalog(catalog)
    _, files = render.render_templates(cat, cat.site("astralfocal"))
    old = _behaviour_of({"nginx.conf": ROOT_SITE["nginx.conf"], "default.conf": conf}, tmp_path)
    new = _behaviour_of({n: files[n] for n in ("nginx.conf", "imgforge/site.conf", "imgforge/headers.conf")}, tmp_path)
    for key in ("fallback", "gzip", "cache_assets"):
        assert new[key] == old[key], key
    assert old["headers"].items() <= new["headers"].items()
    assert set(new["headers"]) - set(old["headers"]) <= set(render.SECURITY_HEADERS)

    # The rendered context passes every audit rule: the old junk (php mailer, Thumbs.db, .psd)
    # is left out of the image by render, not only refused by nginx.
    rendered, out = render.render_site(cat, cat.site("astralfocal"), tmp_path / "context")
    assert rendered.left_out
    assert [f"{f.rule} {f.file}" for f in audit_repo(out)] == []


def test_fixed_repo_migrates_to_its_own_behaviour(tmp_path, build_file_tree, catalog):
    repo = build_file_tree(tmp_path / "fixed.example", FIXED)
    data = tomllib.loads(migrate_repo(repo, "fixed", catalog)[0])
    assert (data["fallback"], data["ipv6"], data["cache_assets"]) == ("404", "auto", False)
    assert (data.get("uid"), data.get("gid")) == (None, None)  # 100:101 is the catalog default
