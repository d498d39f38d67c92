"""Attacks through catalog values: each is refused with one line, or reaches the output as written.

The catalog is edited through merge requests by site authors; CI renders and builds it holding
registry and forge credentials. A value must never become a Dockerfile instruction, a shell word,
an nginx directive or an nginx variable.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker.errors
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the helpers by name
from catalog_attack_helpers import assert_one_error_line, cli, edit_toml, golden_catalog, old_site_repo

from imgforge import config, render, templating
from imgforge.audit import migrate_repo

SITE = "prebuilt-spa"
SITE_FILE = f"sites/{SITE}.toml"


@pytest.fixture
def catalog(tmp_path) -> Path:
    return golden_catalog(tmp_path / "catalog")


def test_a_tag_with_a_trailing_newline_cannot_add_a_dockerfile_instruction(catalog):
    """``$`` in Python's re matches before a final newline: "v1\\n" passed the old tag check."""
    edit_toml(catalog / SITE_FILE, "tag", "v1\nRUN touch /pwned")
    code, out, err = cli("render", SITE, "--root", str(catalog), "--out", str(catalog.parent / "out"))
    assert_one_error_line(code, out, err)
    assert err == f'error: {SITE_FILE}: tag: expected an image tag like v1.2.3, got "v1\\nRUN touch /pwned"\n'
    assert not (catalog.parent / "out").exists()
    edit_toml(catalog / SITE_FILE, "tag", "v1\n")
    assert_one_error_line(*cli("sites", "--root", str(catalog)))


# (file, key path, hostile value, the start of the expected message after "error: ")
LINE_BREAKS = [
    (SITE_FILE, "image", "127.0.0.1:5000/x\n", "image: expected an image repository without tag"),
    (SITE_FILE, "tag", "v1\n", "tag: expected an image tag"),
    (SITE_FILE, "description", "ok\nRUN touch /pwned", "description: expected one line of text"),
    (SITE_FILE, "base_image", "nginx:1\nRUN touch /pwned", "base_image: expected an image reference"),
    (SITE_FILE, "base_image", "nginx:1 AS build", "base_image: expected an image reference"),
    (SITE_FILE, "profile", "prebuilt\n", "profile: expected one of alpine, debian, prebuilt"),
    (SITE_FILE, "fallback", "spa\n", "fallback: expected one of spa, 404"),
    (SITE_FILE, "ipv6", "auto\n", "ipv6: expected one of auto, on, off"),
    (
        SITE_FILE,
        "headers.Permissions-Policy",
        "camera=()\nadd_header X-Evil 1",
        "headers: Permissions-Policy: expected",
    ),
    (SITE_FILE, "headers.X-Evil\nadd_header", "1", "headers: expected header names of letters, digits and dashes"),
    (SITE_FILE, "source.path", "/srv/site\n", "source.path: expected a folder path"),
    (SITE_FILE, "source.content_dir", "www-data\n", "source.content_dir: expected a folder inside the source"),
    (SITE_FILE, "source.ref", "main\n", "source.ref: expected a branch, tag or full 40-hex commit"),
    (SITE_FILE, "gitops.app", "site\n", "gitops.app: expected a folder name"),
    (SITE_FILE, "gitops.namespace", "web\n", "gitops.namespace: expected a Kubernetes namespace"),
    (SITE_FILE, "gitops.overlay", "apps/site\n", "gitops.overlay: expected a folder of the GitOps repo"),
    (SITE_FILE, "gitops.container", "nginx\n", "gitops.container: expected a container name"),
    ("imgforge.toml", "vendor", "Org\nRUN touch /pwned", "vendor: expected one line of text"),
    ("imgforge.toml", "overlay_root", "apps\n", "overlay_root: expected a folder of the GitOps repo"),
    (
        "imgforge.toml",
        "profiles.prebuilt.base_image",
        "nginx\nRUN id",
        "profiles.prebuilt.base_image: expected an image",
    ),
    (
        "imgforge.toml",
        "profiles.alpine.nginx_version",
        '1.26" && touch /pwned "',
        "profiles.alpine.nginx_version: expected a package version",
    ),
    ("imgforge.toml", "defaults.description", "x\u2028RUN id", "defaults.description: expected one line of text"),
]


@pytest.mark.parametrize(("file", "key", "value", "message"), LINE_BREAKS, ids=[f"{c[0]}:{c[1]}" for c in LINE_BREAKS])
def test_every_string_field_refuses_what_could_break_out(catalog, file, key, value, message):
    if key.startswith("headers.") and "\n" in key:  # a hostile header *name*
        edit_toml(catalog / file, "headers", {key.removeprefix("headers."): value})
    else:
        edit_toml(catalog / file, key, value)
    code, out, err = cli("sites", "--json", "--root", str(catalog))
    assert_one_error_line(code, out, err)
    assert err.startswith(f"error: {file}: {message}"), err


def test_a_git_source_url_with_a_line_break_is_refused(catalog):
    edit_toml(catalog / SITE_FILE, "source.path", None)
    edit_toml(catalog / SITE_FILE, "source.git", "https://git.example.invalid/site.git\n")
    code, out, err = cli("sites", "--root", str(catalog))
    assert_one_error_line(code, out, err)
    assert err.startswith(f"error: {SITE_FILE}: source.git: expected an https://, ssh:// or git@host:path URL")


@pytest.mark.parametrize("key", ["gitops.overlay", "overlay_root"])
@pytest.mark.parametrize("value", ["../../etc", "/etc", "fluxcd/../../..", "apps/./../x"])
def test_gitops_paths_stay_inside_the_gitops_repo(catalog, key, value):
    file = SITE_FILE if key.startswith("gitops") else "imgforge.toml"
    edit_toml(catalog / file, key, value)
    code, out, err = cli("sites", "--root", str(catalog))
    assert_one_error_line(code, out, err)
    assert f"{key}: expected a folder of the GitOps repo (a relative path without ..)" in err


def test_a_site_file_name_and_a_key_with_line_breaks_are_shown_escaped(catalog):
    (catalog / SITE_FILE).rename(catalog / "sites" / "evil\nname.toml")
    code, out, err = cli("sites", "--root", str(catalog))
    assert_one_error_line(code, out, err)
    assert err == 'error: sites/"evil\\nname.toml": site file names must be lowercase letters, digits and dashes\n'
    (catalog / "sites" / "evil\nname.toml").unlink()
    edit_toml(catalog / "sites" / "alpine-spa.toml", "bad\nkey", "1")
    code, out, err = cli("sites", "--root", str(catalog))
    assert_one_error_line(code, out, err)
    assert err.startswith('error: sites/alpine-spa.toml: "bad\\nkey": unknown key')


@pytest.mark.parametrize(
    "update",
    [
        {"description": "a\nRUN touch /pwned"},
        {"tag": "v1\nRUN touch /pwned"},
        {"headers": {"X-Evil header": "1"}},
        {"headers": {"X-Ok": "1\nadd_header X-Evil 1"}},
        {"base_image": "nginx\nRUN touch /pwned"},
        {"name": "a\nb"},
    ],
    ids=["description", "tag", "header-name", "header-value", "base_image", "name"],
)
def test_templates_refuse_a_line_break_even_past_validation(catalog, update):
    """The second line: a value that skipped validation (model_copy does not validate) is refused
    by the template filters instead of being written."""
    loaded = config.load_catalog(catalog)
    site = loaded.site(SITE).model_copy(update=update)
    with pytest.raises(render.RenderError):
        render.render_templates(loaded, site)


def test_quoting_filters_keep_values_inside_their_quotes():
    value = 'a "q" \\ $HOME ${X} `id` ;{}#'
    assert templating.dockerfile_quoted(value) == '"a \\"q\\" \\\\ \\$HOME \\${X} `id` ;{}#"'
    assert templating.shell_quoted("nginx~1.26'; touch /pwned; '") == "'nginx~1.26'\"'\"'; touch /pwned; '\"'\"''"
    assert templating.nginx_quoted(value) == '"a \\"q\\" \\\\ ${imgforge_dollar}HOME ${imgforge_dollar}{X} `id` ;{}#"'


def test_migrate_does_not_turn_an_nginx_variable_into_a_literal_header(tmp_path):
    """The old config expanded ``$host``; the catalog sends values as written, so it is not carried."""
    old = old_site_repo(tmp_path / "old", '    add_header X-Served-By "$hostname";\n    add_header X-Plain "yes";\n')
    text, notes = migrate_repo(old, "old", golden_catalog(tmp_path / "catalog"), image="cr.example.com/s/old")
    assert 'X-Plain = "yes"' in text
    assert "X-Served-By" not in text
    assert any("X-Served-By" in note and "nginx variable" in note for note in notes), notes


# --- the real nginx and the real image: values arrive as written --------------------------------

HOSTILE_HEADER = 'v=1; $http_authorization "q" \\ {x} #y ${host}'
HOSTILE_TEXT = 'Quotes " back\\slash $HOME ${X} \\$ `id` end\\'


@pytest.mark.docker
@pytest.mark.slow
def test_header_values_and_labels_reach_clients_and_images_as_written(catalog, nginx_base, docker_client):
    """nginx would expand ``$http_authorization`` in add_header and reflect the caller's secret."""
    image = f"imgforge-security-test/quoting-{secrets.token_hex(4)}"
    edit_toml(catalog / SITE_FILE, "base_image", nginx_base)
    edit_toml(catalog / SITE_FILE, "image", image)
    edit_toml(catalog / SITE_FILE, "headers", {"X-Literal": HOSTILE_HEADER})
    edit_toml(catalog / SITE_FILE, "description", HOSTILE_TEXT)
    edit_toml(catalog / "imgforge.toml", "vendor", "Org $HOSTNAME")
    code, _, err = cli("build", SITE, "--root", str(catalog), "--json")
    try:
        assert code == 0, err
        labels = docker_client.images.get(f"{image}:v0.0.1").attrs["Config"]["Labels"]
        assert labels["org.opencontainers.image.description"] == HOSTILE_TEXT
        assert labels["org.opencontainers.image.vendor"] == "Org $HOSTNAME"
        headers = _fetch_headers(docker_client, f"{image}:v0.0.1", {"Authorization": "Bearer s3cret-token"})
        assert headers["X-Literal"] == HOSTILE_HEADER
        assert "s3cret-token" not in str(headers)
    finally:
        with contextlib.suppress(docker.errors.APIError):  # not built: the assertion above says why
            docker_client.images.remove(f"{image}:v0.0.1", force=True)


def _fetch_headers(client, image: str, request_headers: dict[str, str]) -> dict[str, str]:
    """Run the image as Kubernetes "restricted" would and return the response headers of ``/``."""
    container = client.containers.run(
        image,
        detach=True,
        read_only=True,
        tmpfs={"/tmp": "rw,size=16m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        ports={"8080/tcp": ("127.0.0.1", None)},
        labels={"io.imgforge.owner": "tests-security"},
    )
    try:
        container.reload()
        port = container.ports["8080/tcp"][0]["HostPort"]
        deadline = time.monotonic() + 15
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers=request_headers)
                with urllib.request.urlopen(request, timeout=2) as response:
                    return dict(response.headers.items())
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise AssertionError(container.logs().decode()) from None
                time.sleep(0.1)
    finally:
        container.remove(force=True)
