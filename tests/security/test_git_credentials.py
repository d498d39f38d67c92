"""Credentials in git URLs never travel: refused in the catalog, stripped from labels, redacted in errors.

A token pasted into ``source.git`` would otherwise be printed by ``imgforge sites --json``, written
into the CI matrix, and baked into the image's ``org.opencontainers.image.source`` label for
everyone who pulls it. The catalog repository's own remote may hold one too (a CI clone over
``https://oauth2:TOKEN@``): the label is made from it without the userinfo.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the helpers by name
from catalog_attack_helpers import (
    EXAMPLE_SITE,
    assert_one_error_line,
    cli,
    edit_toml,
    golden_catalog,
    old_site_repo,
)

from imgforge import _git, build, config, render
from imgforge.audit import migrate_repo
from imgforge.errors import GitopsError
from imgforge.gitops import branch

SECRET = "s3cr3t-Tok3n"
SITE = "prebuilt-spa"
URLS_WITH_SECRETS = [
    (f"https://user:{SECRET}@git.example.com/g/site.git", "https://***@git.example.com/g/site.git"),
    (f"https://{SECRET}@git.example.com/g/site.git", "https://***@git.example.com/g/site.git"),
    (f"https://oauth2:{SECRET}@git.example.com:8443/g/site.git", "https://***@git.example.com:8443/g/site.git"),
    (f"ssh://git:{SECRET}@git.example.com/g/site.git", "ssh://***@git.example.com/g/site.git"),
    (f"git:{SECRET}@git.example.com:g/site.git", "***@git.example.com:g/site.git"),
]


@pytest.mark.parametrize(("url", "shown"), URLS_WITH_SECRETS, ids=[u for u, _ in URLS_WITH_SECRETS])
@pytest.mark.parametrize(
    "command",
    [
        ["sites", "--json"],
        ["matrix", "--format", "json"],
        ["matrix", "--format", "github"],
        ["matrix", "--format", "gitlab"],
        ["render", SITE],
    ],
)
def test_a_catalog_git_url_with_credentials_is_refused_without_echoing_them(tmp_path, url, shown, command):
    root = golden_catalog(tmp_path / "catalog")
    edit_toml(root / "sites" / f"{SITE}.toml", "source.path", None)
    edit_toml(root / "sites" / f"{SITE}.toml", "source.git", url)
    code, out, err = cli(*command, "--root", str(root))
    assert_one_error_line(code, out, err)
    assert err == (
        f"error: sites/{SITE}.toml: source.git: the URL holds credentials; use a credential helper "
        f'(git config credential.helper) or an SSH key instead, got "{shown}"\n'
    )
    assert SECRET not in out + err


def _sh_git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.parametrize(
    ("remote", "label"),
    [
        (
            f"https://oauth2:{SECRET}@gitlab.example.com/sites/catalog.git",
            "https://gitlab.example.com/sites/catalog.git",
        ),
        (f"https://{SECRET}@github.com/org/catalog.git", "https://github.com/org/catalog.git"),
        (f"http://user:{SECRET}@git.internal:8080/catalog.git", "http://git.internal:8080/catalog.git"),
        (f"ssh://git:{SECRET}@git.example.com:2222/org/catalog.git", "ssh://git.example.com:2222/org/catalog.git"),
        (f"git:{SECRET}@git.example.com:org/catalog.git", "git.example.com:org/catalog.git"),
    ],
)
def test_the_source_label_of_a_local_site_never_holds_the_remotes_userinfo(tmp_path, remote, label):
    """The label comes from the catalog clone's ``remote.origin.url``: a CI clone often carries a token."""
    clone = tmp_path / "clone"
    shutil.copytree(EXAMPLE_SITE / "www-data", clone / "site" / "www-data")
    _sh_git("init", "-q", str(clone), cwd=tmp_path)
    _sh_git("remote", "add", "origin", remote, cwd=clone)
    root = golden_catalog(tmp_path / "catalog")
    edit_toml(root / "sites" / f"{SITE}.toml", "source.path", str(clone / "site"))
    catalog = config.load_catalog(root)
    rendered = render.prepare(catalog, catalog.site(SITE))
    assert build.build_args(rendered, "sha256:" + "0" * 64)["IMGFORGE_SOURCE"] == label


def test_migrate_does_not_copy_the_old_repos_token_into_the_catalog(tmp_path):
    old = old_site_repo(tmp_path / "old-site")
    _sh_git("remote", "add", "origin", f"https://oauth2:{SECRET}@gitlab.example.com/sites/old-site.git", cwd=old)
    root = golden_catalog(tmp_path / "catalog")
    text, _ = migrate_repo(old, "old-site", root, image="cr.example.com/sites/old-site")
    assert "gitlab.example.com/sites/old-site.git" in text
    assert SECRET not in text


def test_git_errors_never_show_credentials(tmp_path):
    """A remote's own messages are not ours to trust: a hook that prints a URL with a token
    reaches the error only with the userinfo redacted."""
    remote = tmp_path / "remote.git"
    _sh_git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\necho 'rejected, push to https://ci:{SECRET}@git.example.com/x.git'\nexit 1\n")
    hook.chmod(0o755)
    work = tmp_path / "work"
    _sh_git("init", "-q", str(work), cwd=tmp_path)
    _sh_git(
        "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "--allow-empty", "-m", "x", cwd=work
    )
    with pytest.raises(GitopsError) as failure:
        branch.Git(work).run("push", operands=[str(remote), "HEAD:refs/heads/x"])
    assert SECRET not in str(failure.value)
    assert "https://***@git.example.com/x.git" in str(failure.value)
    assert "\n" not in str(failure.value)


def test_has_credentials_and_strip_userinfo_agree_on_every_form():
    for url, _ in URLS_WITH_SECRETS:
        assert _git.has_credentials(url)
        assert SECRET not in _git.strip_userinfo(url)
        assert SECRET not in _git.redact(url)
    for url in (
        "https://git.example.com/g/s.git",
        "ssh://git@git.example.com/g/s.git",
        "git@github.com:o/r.git",
        "file:///srv/git/site.git",
        "/srv/git/site.git",
    ):
        assert not _git.has_credentials(url)
        assert _git.url_problem(url) is None


def test_a_git_url_without_credentials_is_listed_as_written(tmp_path):
    root = golden_catalog(tmp_path / "catalog")
    edit_toml(root / "sites" / f"{SITE}.toml", "source.path", None)
    edit_toml(root / "sites" / f"{SITE}.toml", "source.git", "https://git.example.com/g/site.git")
    code, out, err = cli("sites", "--json", "--root", str(root))
    assert code == 0, err
    assert "https://git.example.com/g/site.git@main:www-data" in out
