"""The catalog: the real one loads as documented, and every kind of mistake gets one clear line."""

from __future__ import annotations

import pytest

from imgforge import config
from imgforge.errors import EXIT_CATALOG, EXIT_NOT_FOUND, CatalogError, UnknownSite

REPO = config.Path(__file__).resolve().parents[2]

# ../shared/context/sites.md: the nine images that still run as root, as the catalog must hold them.
REAL_SITES = {
    "astralfocal": ("cr.pcfae.com/prplanit/astralfocal.com", "v0.0.2", "astralfocal-site"),
    "enamorafoto": ("cr.pcfae.com/prplanit/enamorafoto.com", "v0.0.2", "enamorafoto-site"),
    "etherealclique": ("cr.pcfae.com/prplanit/etherealclique.com", "v0.0.2", "etherealclique-site"),
    "homelabhelpdesk": ("cr.pcfae.com/prplanit/homelabhelpdesk.com", "v0.0.2", "homelabhelpdesk-site"),
    "kai-hamilton": ("cr.pcfae.com/prplanit/kai-hamilton.com", "v0.0.2", "kai-hamilton-site"),
    "sofmeright": ("cr.pcfae.com/prplanit/sofmeright.com", "v0.0.5", "sofmeright-site"),
    "precisionplanit": ("cr.pcfae.com/prplanit/precisionplanit.com", "v0.0.2", "precisionplanit-site"),
    "yesimvegan": ("cr.pcfae.com/prplanit/yesimvegan.com", "v0.0.2", "yesimvegan-site"),
    "fairer-pages": ("docker.io/prplanit/fairer-pages", "v0.0.11", "fairer-pages"),
}


def test_real_catalog_holds_the_nine_sites_and_the_example():
    catalog = config.load_catalog(REPO)
    assert set(catalog.sites) == set(REAL_SITES) | {"example"}
    for name, (image, tag, app) in REAL_SITES.items():
        site = catalog.site(name)
        assert (site.image, site.tag, site.app) == (image, tag, app), name
    assert catalog.site("sofmeright").gitops.namespace == "lost-woods"
    assert (catalog.site("fairer-pages").uid, catalog.site("fairer-pages").gid) == (10000, 10001)
    example = catalog.site("example")
    assert example.source
    assert example.source.path == "examples/example-site"
    assert example.fallback == "spa"


def test_defaults_apply_and_sites_override(make_catalog):
    root = make_catalog(
        {"a": {}, "b": {"uid": 10000, "gid": 10001, "port": 9000}}, settings='[defaults]\nfallback = "spa"\nuid = 200\n'
    )
    catalog = config.load_catalog(root)
    assert (catalog.site("a").uid, catalog.site("a").gid, catalog.site("a").fallback) == (200, 101, "spa")
    assert (catalog.site("b").uid, catalog.site("b").port) == (10000, 9000)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"uid": "nginx"}, 'sites/bad.toml: uid: expected an integer ≥ 1, got "nginx"'),
        ({"uid": 0}, "sites/bad.toml: uid: expected an integer ≥ 1, got 0"),
        ({"gid": True}, "sites/bad.toml: gid: expected an integer ≥ 1, got true"),
        ({"port": 80}, "sites/bad.toml: port: expected an integer from 1024 to 65535, got 80"),
        ({"profile": "ubuntu"}, 'sites/bad.toml: profile: expected one of alpine, debian, prebuilt, got "ubuntu"'),
        ({"fallback": "index"}, 'sites/bad.toml: fallback: expected one of spa, 404, got "index"'),
        ({"ipv6": True}, "sites/bad.toml: ipv6: expected one of auto, on, off, got true"),
        ({"prot": 8080}, "sites/bad.toml: prot: unknown key; did you mean 'port'?"),
        ({"image": "Cr.Example.com/Site:v1"}, "sites/bad.toml: image: expected an image repository without tag"),
        ({"tag": "v 1"}, 'sites/bad.toml: tag: expected an image tag like v1.2.3, got "v 1"'),
        ({"read_only_root": "yes"}, 'sites/bad.toml: read_only_root: expected true or false, got "yes"'),
        (
            {"headers": {"X-Test": "a\nb"}},
            "sites/bad.toml: headers: X-Test: expected a non-empty value of printable ASCII",
        ),
        (
            {"source": {"path": ".", "git": "https://example.invalid/x.git"}},
            "sites/bad.toml: source: set one of path, git or image, not several",
        ),
        (
            {"source": {"image": "127.0.0.1:5000/w15/site:v1", "git": "https://example.invalid/x.git"}},
            "sites/bad.toml: source: set one of path, git or image, not several",
        ),
        (
            {"source": {"image": "127.0.0.1:5000/w15/site:v1"}},
            "sites/bad.toml: source: content_dir: an image source needs the absolute folder in the image, "
            'like /usr/share/nginx/html, got "www-data"',
        ),
        (
            {"source": {"path": ".", "content_dir": "/usr/share/nginx/html"}},
            "sites/bad.toml: source: content_dir: expected a folder inside the source (a relative path without ..), "
            'got "/usr/share/nginx/html"',
        ),
        (
            {"source": {"image": "127.0.0.1:5000/w15/site:v1", "content_dir": "/var/www/../../etc"}},
            "sites/bad.toml: source.content_dir: expected a folder inside the source (a relative path without ..), "
            'got "/var/www/../../etc"',
        ),
        (
            {"source": {"image": "127.0.0.1:5000/w15/site:v1\nRUN id", "content_dir": "/var/www/html"}},
            "sites/bad.toml: source.image: expected an image reference like registry.example.com/team/nginx:1.27, "
            'got "127.0.0.1:5000/w15/site:v1\\nRUN id"',
        ),
        (
            {"source": {"path": ".", "content_dir": "../etc"}},
            "sites/bad.toml: source.content_dir: expected a folder inside the source",
        ),
        ({"gitops": {"ap": "x"}}, "sites/bad.toml: gitops.ap: unknown key; did you mean 'app'?"),
    ],
)
def test_invalid_site_fields_name_file_field_and_expectation(make_catalog, fields, message):
    root = make_catalog({"bad": fields})
    with pytest.raises(CatalogError) as err:
        config.load_catalog(root)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_malformed_toml_reports_line_and_column(make_catalog):
    root = make_catalog({"ok": {}})
    (root / "sites" / "broken.toml").write_text('image = "x/y"\ntag = \n', encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        config.load_catalog(root)
    assert str(err.value).startswith("sites/broken.toml: invalid TOML:")
    assert "line 2" in str(err.value)


def test_bad_default_is_reported_against_imgforge_toml(make_catalog):
    root = make_catalog({"a": {}}, settings="[defaults]\nuid = -1\n")
    with pytest.raises(CatalogError, match=r"^imgforge.toml: defaults.uid: expected an integer ≥ 1, got -1$"):
        config.load_catalog(root)


def test_unknown_profile_override_is_rejected(make_catalog):
    root = make_catalog({"a": {}}, settings='[profiles.ubuntu]\nbase_image = "ubuntu:24.04"\n')
    with pytest.raises(CatalogError, match=r"profiles.ubuntu: unknown profile"):
        config.load_catalog(root)


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match=r"imgforge.toml: not found"):
        config.load_catalog(tmp_path)


def test_unknown_site_suggests_a_close_match():
    catalog = config.load_catalog(REPO)
    with pytest.raises(UnknownSite, match=r"unknown site 'sofmeright.com'; did you mean 'sofmeright'\?"):
        catalog.site("sofmeright.com")


def test_profile_overrides_and_site_base_image(make_catalog):
    root = make_catalog(
        {
            "a": {"profile": "alpine", "base_image": None},
            "b": {"profile": "debian", "base_image": "mirror.local/debian:12"},
        },
        settings='[profiles.alpine]\nbase_image = "mirror.local/alpine:3.21"\nnginx_version = "1.26"\n',
    )
    catalog = config.load_catalog(root)
    assert catalog.profile(catalog.site("a")).base_image == "mirror.local/alpine:3.21"
    assert catalog.profile(catalog.site("b")).base_image == "mirror.local/debian:12"
    assert catalog.profile(catalog.site("b")).nginx_version == "1.22.*"


def test_set_site_tag_keeps_comments_and_layout(tmp_path):
    (tmp_path / "sites").mkdir()
    (tmp_path / "imgforge.toml").write_text("[defaults]\n")
    original = (
        '# my site\nimage = "cr.example.com/a/b"   # the repo\ntag = "v0.0.5"  # bumped by CI\n\n[source]\npath = "."\n'
    )
    (tmp_path / "sites" / "s.toml").write_text(original)
    catalog = config.load_catalog(tmp_path)
    config.set_site_tag(catalog, catalog.site("s"), "v0.0.6")
    assert (tmp_path / "sites" / "s.toml").read_text() == original.replace('"v0.0.5"', '"v0.0.6"')
    with pytest.raises(CatalogError, match=r"tag: expected an image tag"):
        config.set_site_tag(catalog, catalog.site("s"), "bad tag")


def test_cli_errors_are_one_line_with_documented_exit_codes(make_catalog, cli_process):
    root = make_catalog({"bad": {"uid": "nginx"}})
    proc = cli_process("sites", "--root", str(root))
    assert proc.returncode == EXIT_CATALOG
    assert proc.stderr == 'error: sites/bad.toml: uid: expected an integer ≥ 1, got "nginx"\n'
    assert "Traceback" not in proc.stderr
    proc = cli_process("render", "nope", "--root", str(REPO))
    assert proc.returncode == EXIT_NOT_FOUND
    assert proc.stderr.startswith("error: unknown site 'nope'")


def test_sites_json_lists_the_catalog(cli_process):
    import json

    proc = cli_process("sites", "--json", "--root", str(REPO))
    assert proc.returncode == 0, proc.stderr
    rows = {r["site"]: r for r in json.loads(proc.stdout)}
    assert rows["sofmeright"]["image"] == "cr.pcfae.com/prplanit/sofmeright.com:v0.0.5"
    assert rows["example"]["content"] == "examples/example-site/www-data"
    assert rows["sofmeright"]["content"] is None


@pytest.mark.parametrize(
    "fields",
    [
        {"base_image": "registry.example.com:5000/mirror/nginx:1.27-alpine@sha256:" + "a" * 64},
        {"base_image": "imgforge/nginx-debian:bookworm", "description": 'Quotes " and $HOME, ünïcode — fine'},
        {"source": {"git": "https://gitlab.example.com/group/site.git", "ref": "refs/tags/v1.2.3"}},
        {"source": {"git": "ssh://git@gitlab.example.com:2222/group/site.git", "ref": "a" * 40}},
        {"source": {"git": "git@github.com:org/site.git", "ref": "release/2024.1", "content_dir": "public/www"}},
        {"source": {"git": "file:///srv/git/site.git"}},
        {"source": {"path": "../my site", "content_dir": "."}},
        {"headers": {"Content-Security-Policy": "default-src 'self'; img-src * data:", "X-Note": 'say "hi" \\ $5'}},
        {
            "gitops": {
                "app": "my.site-site",
                "namespace": "lost-woods",
                "overlay": "apps/prod/my-site",
                "container": "web",
            }
        },
    ],
)
def test_real_world_values_stay_valid(make_catalog, fields):
    """Strict, not stingy: the forms people really write pass validation."""
    root = make_catalog(
        {"ok": fields},
        settings='vendor = "Org & Co. $"\noverlay_root = "clusters/prod/apps"\n'
        '[profiles.debian]\nbase_image = "debian:12"\n'
        'nginx_version = "1:1.22.1-9+deb12u1~bpo"\n',
    )
    assert config.load_catalog(root).site("ok")
